"""Offline retrieval evaluation on the test split, against the index that was built.

Relevance here is category-level: a result is relevant when it has the query's category.
precision_at_k = relevant share of the top k; recall_at_k = share of queries with at least one
relevant result in the top k (the Recall@K of product-retrieval benchmarks: with one relevant
item per query it is the usual recall); mrr_at_10 and ndcg_at_10 use binary relevance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tasks import stage

from models.encoder import DualEncoder
from tasks.catalog import category_text
from tasks.embed import embed_texts
from tasks.index import vector_search

KS = (1, 5, 10)
PROMPTS = ("{}", "a photo of a {}", "a product photo of a {}", "a {} for sale", "a close-up photo of a {}")


def topk(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices of the k highest inner products per query, best first (exact search)."""
    k = min(k, len(gallery))
    g = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32))
    out = []
    for i in range(0, len(queries), chunk):
        s = torch.from_numpy(np.ascontiguousarray(queries[i : i + chunk], dtype=np.float32)) @ g.T
        out.append(torch.topk(s, k, dim=1).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def ranking_metrics(relevant: np.ndarray, n_relevant: np.ndarray, prefix: str) -> dict[str, float]:
    """relevant: bool [Q, K>=10] of ranked results; n_relevant: relevant items per query in the gallery."""
    out = {}
    for k in KS:
        out[f"{prefix}_precision_at_{k}"] = float(relevant[:, :k].mean())
        out[f"{prefix}_recall_at_{k}"] = float(relevant[:, :k].any(axis=1).mean())
    top = relevant[:, :10]
    first = np.where(top.any(axis=1), top.argmax(axis=1) + 1, np.inf)
    out[f"{prefix}_mrr_at_10"] = float(np.mean(1.0 / first))
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = (top * discounts).sum(axis=1)
    ideal = np.array([discounts[: min(int(n), top.shape[1])].sum() for n in n_relevant])
    out[f"{prefix}_ndcg_at_10"] = float(np.mean(np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)))
    return out


def query_metrics(queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
                  prefix: str) -> tuple[dict, dict]:
    """Overall and per-category metrics for one query set."""
    idx = topk(queries, gallery, 10)
    rel = gallery_labels[idx] == query_labels[:, None]
    counts = pd.Series(gallery_labels).value_counts()
    n_rel = np.array([counts.get(c, 0) for c in query_labels])
    overall = ranking_metrics(rel, n_rel, prefix)
    per_cat = {c: ranking_metrics(rel[query_labels == c], n_rel[query_labels == c], prefix) for c in sorted(set(query_labels))}
    return overall, per_cat


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_category: dict[str, dict[str, float]]
    eval_set_md5: str
    queries: dict[str, int] = field(default_factory=dict)


def eval_set_md5(test_ids: list[str], gallery_ids: list[str], categories: list[str]) -> str:
    h = hashlib.md5()
    for part in (test_ids, gallery_ids, categories):
        h.update("\n".join(part).encode() + b"\0")
    return h.hexdigest()


def evaluate(encoder: DualEncoder, tbl, ann_sample: int = 200, seed: int = 0) -> EvalResult:
    """text->product (category prompts) and image->product (test photos) against the indexed gallery."""
    data = tbl.to_arrow().select(["product_id", "category", "split", "vector"])
    split = np.array(data["split"].to_pylist())
    cats = np.array(data["category"].to_pylist())
    ids = data["product_id"].to_pylist()
    vecs = data["vector"].combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
    test, gallery = split == "test", split != "test"
    if not test.any() or not gallery.any():
        raise ValueError(f"evaluation needs test and non-test rows; the index has {int(test.sum())} test and {int(gallery.sum())} other rows")
    categories = sorted(set(cats))
    with torch.inference_mode():
        prompts = embed_texts(encoder, [p.format(category_text(c)) for c in categories for p in PROMPTS])
    text_q = prompts.reshape(len(categories), len(PROMPTS), -1).mean(axis=1)
    text_q /= np.linalg.norm(text_q, axis=1, keepdims=True)
    metrics, per_cat = {}, {}
    for prefix, q, labels in (("image", vecs[test], cats[test]), ("text", text_q, np.array(categories))):
        overall, per = query_metrics(q, labels, vecs[gallery], cats[gallery], prefix)
        metrics |= overall
        for c, m in per.items():
            per_cat.setdefault(c, {}).update(m)
    zs = np.array(categories)[(vecs[test] @ text_q.T).argmax(axis=1)]
    metrics["zero_shot_accuracy"] = float((zs == cats[test]).mean())
    from tasks.index import table_metadata

    if table_metadata(tbl).get("ann"):
        rng = np.random.default_rng(seed)
        sample = rng.choice(np.flatnonzero(test), size=min(ann_sample, int(test.sum())), replace=False)
        gallery_ids = np.array(ids)[gallery]
        exact = topk(vecs[sample], vecs[gallery], 10)
        hits = [len(set(gallery_ids[e]) & {r["product_id"] for r in vector_search(tbl, vecs[s], 10, "split != 'test'", columns=("product_id",))}) / 10
                for s, e in zip(sample, exact)]
        metrics["index_recall_at_10"] = float(np.mean(hits))
    md5 = eval_set_md5([i for i, t in zip(ids, test) if t], [i for i, g in zip(ids, gallery) if g], categories)
    return EvalResult(metrics, per_cat, md5, {"image": int(test.sum()), "text": len(categories), "gallery": int(gallery.sum())})


evaluate_task = stage(evaluate, name="evaluate")
