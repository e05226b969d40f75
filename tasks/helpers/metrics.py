"""Ranking metrics for retrieval evaluation, defined once and used everywhere.

Names follow `<queries>_<metric>_at_<k>`. With binary relevance:
- precision_at_k: relevant share of the top k;
- recall_at_k: share of queries with at least one relevant result in the top k (the Recall@K of
  product-retrieval benchmarks; with one relevant item per query, as for shopper photos, it is
  the usual recall);
- mrr_at_10: mean of 1/rank of the first relevant result (0 when none in the top 10);
- ndcg_at_10: DCG of the top 10 over the ideal DCG given how many relevant items exist.
A query with no relevant item in the gallery scores 0 on every metric (it is counted, not skipped).
Ties in score are broken by gallery order (lower index first), so results are deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

KS = (1, 5, 10)
CURVE_KS = tuple(range(1, 11))


def topk(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices of the k highest inner products per query, best first; ties go to the lower index."""
    k = min(k, len(gallery))
    if k == 0 or len(queries) == 0:
        return np.zeros((len(queries), k), dtype=np.int64)
    g = torch.from_numpy(np.require(gallery, np.float32, ["C", "W"]))
    extra = min(len(gallery), k + 8)
    out = []
    for i in range(0, len(queries), chunk):
        s = torch.from_numpy(np.require(queries[i : i + chunk], np.float32, ["C", "W"])) @ g.T
        vals, idx = torch.topk(s, extra, dim=1)
        # Order candidates by (-score, index); where the tie at rank k may reach past the
        # candidates, sort the whole row stably instead.
        vals, idx = vals.numpy(), idx.numpy()
        order = np.lexsort((idx, -vals), axis=1)
        idx = np.take_along_axis(idx, order, axis=1)[:, :k]
        spill = (vals[:, -1] == vals[:, k - 1]) if extra < len(gallery) else np.zeros(len(vals), bool)
        for r in np.flatnonzero(spill):
            idx[r] = torch.sort(-s[r], stable=True).indices[:k].numpy()
        out.append(idx)
    return np.concatenate(out)


def ranking_metrics(relevant: np.ndarray, n_relevant: np.ndarray, prefix: str) -> dict[str, float]:
    """relevant: bool [Q, >=10] of ranked results; n_relevant [Q]: relevant items per query in the gallery."""
    if len(relevant) == 0:
        raise ValueError(f"no {prefix} queries to evaluate")
    out = {}
    for k in KS:
        out[f"{prefix}_precision_at_{k}"] = float(relevant[:, :k].sum(axis=1).mean() / k)
        out[f"{prefix}_recall_at_{k}"] = float(relevant[:, :k].any(axis=1).mean())
    top = relevant[:, :10]
    first = np.where(top.any(axis=1), top.argmax(axis=1) + 1, np.inf)
    out[f"{prefix}_mrr_at_10"] = float(np.mean(1.0 / first))
    discounts = 1.0 / np.log2(np.arange(2, 12))
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)
    ideal = np.array([discounts[: min(int(n), 10)].sum() for n in n_relevant])
    out[f"{prefix}_ndcg_at_10"] = float(np.mean(np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)))
    return out


def recall_curve(relevant: np.ndarray) -> list[float]:
    """Recall@K for K = 1..10 (for plots)."""
    return [float(relevant[:, :k].any(axis=1).mean()) for k in CURVE_KS]


def label_relevance(
    ranked: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Relevance (same label) of ranked gallery indices, and the number of relevant items per query."""
    rel = gallery_labels[ranked] == query_labels[:, None]
    counts = pd.Series(gallery_labels).value_counts()
    return rel, np.array([counts.get(c, 0) for c in query_labels])


def grouped_metrics(
    relevant: np.ndarray, n_relevant: np.ndarray, groups: np.ndarray, prefix: str
) -> dict[str, dict[str, float]]:
    """`ranking_metrics` per group (e.g. per category of the query)."""
    return {g: ranking_metrics(relevant[groups == g], n_relevant[groups == g], prefix) for g in sorted(set(groups))}
