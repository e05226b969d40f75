"""Catalog rows whose photo disagrees with their category: each product's nearest other products (cosine over
the index vectors) vote on its category; a confident vote for another category flags the row for review. Flagged
rows are reported with the evaluation (mislabelled.csv), never quarantined: a person decides."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.core.index import category_vote

NEIGHBOURS = 20
MIN_CONFIDENCE = 0.9  # share of the vote the other category must reach


def neighbours(vectors: np.ndarray, k: int = NEIGHBOURS, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(indices [N, k], cosine scores [N, k]) of each row's k nearest other rows, exact (chunked matmul)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    unit = unit.astype(np.float32)
    k = min(k, len(unit) - 1)
    idx = np.empty((len(unit), k), np.int64)
    sim = np.empty((len(unit), k), np.float32)
    for a in range(0, len(unit), chunk):
        s = unit[a : a + chunk] @ unit.T
        s[np.arange(len(s)), np.arange(a, a + len(s))] = -np.inf  # not itself
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1)
        idx[a : a + chunk] = np.take_along_axis(top, order, 1)
        sim[a : a + chunk] = np.take_along_axis(s, idx[a : a + chunk], 1)
    return idx, sim


def likely_mislabelled(
    ids: np.ndarray, categories: np.ndarray, vectors: np.ndarray, min_confidence: float = MIN_CONFIDENCE
) -> pd.DataFrame:
    """[product_id, category, predicted, confidence] of the rows whose neighbours vote for another category
    with at least `min_confidence` of the vote, most confident first."""
    if len(ids) < 2:
        return pd.DataFrame(columns=["product_id", "category", "predicted", "confidence"])
    idx, sim = neighbours(vectors)
    rows = []
    for i in range(len(ids)):
        predicted, share = category_vote(categories[idx[i]].tolist(), sim[i].tolist())[0]
        if predicted != categories[i] and share >= min_confidence:
            rows.append((ids[i], categories[i], predicted, round(share, 4)))
    out = pd.DataFrame(rows, columns=["product_id", "category", "predicted", "confidence"])
    return out.sort_values(["confidence", "product_id"], ascending=[False, True]).reset_index(drop=True)
