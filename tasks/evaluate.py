"""Offline retrieval evaluation on the test split, against the gallery that is served.

Three query sets (metric definitions in tasks/helpers/metrics.py):
- text:    one query per category (a prompt ensemble of its name), relevant = products of that
           category among the non-test products;
- image:   each test product's catalog photo, relevant = same category among non-test products;
- shopper: each test product re-photographed (models/augment.py, fixed draws), relevant = that
           very product among all products (instance relevance); `shopper_category_precision_at_10`
           adds category relevance for the same queries.
Plus zero-shot category accuracy (test photos vs category texts) and, for an ANN index, its
recall@10 against exact search.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from lensflow.core.index import table_metadata, vector_search
from lensflow.models.encoder import DualEncoder
from lensflow.tasks.embed import embed_texts
from lensflow.tasks.helpers.catalog import category_text
from lensflow.tasks.helpers.metrics import grouped_metrics, label_relevance, ranking_metrics, recall_curve, topk

PROMPTS = ("{}", "a photo of a {}", "a product photo of a {}", "a {} for sale", "a close-up photo of a {}")


@dataclass
class ShopperQueries:
    """Embedded shopper photos: `product_ids[i]` is the product that `vectors[i]` shows."""

    product_ids: list[str]
    vectors: np.ndarray
    augment: dict
    seed: int


@dataclass
class Gallery:
    """The served rows: ids, categories, splits and their vectors (catalog order)."""

    ids: np.ndarray
    categories: np.ndarray
    split: np.ndarray
    vectors: np.ndarray

    @classmethod
    def from_table(cls, tbl) -> Gallery:
        data = tbl.to_arrow().select(["product_id", "category", "split", "vector"])
        ids = np.array(data["product_id"].to_pylist())
        vecs = data["vector"].combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
        return cls(ids, np.array(data["category"].to_pylist()), np.array(data["split"].to_pylist()), vecs)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_category: dict[str, dict[str, float]]
    eval_set_md5: str
    queries: dict[str, int] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)  # Recall@1..10 per query set
    worst: list[dict] = field(default_factory=list)  # shopper queries whose product was ranked lowest
    bounds: dict[str, dict[str, float]] = field(default_factory=dict)  # what P@10 can reach on this eval set

    def as_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "per_category": self.per_category,
            "eval_set_md5": self.eval_set_md5,
            "queries": self.queries,
            "curves": self.curves,
            "worst": self.worst,
            "bounds": self.bounds,
        }


def precision_bounds(n_relevant: np.ndarray, gallery_size: int, k: int = 10) -> dict[str, float]:
    """What precision@k can reach given each query's number of relevant gallery items (label_relevance):
    `ceiling` with a perfect ranking (a category with fewer than k gallery products caps it) and `chance`
    with a random one. A small catalog's floors are read against these."""
    return {
        "ceiling": round(float(np.minimum(n_relevant, k).mean() / k), 4),
        "chance": round(float(n_relevant.mean() / gallery_size), 4),
    }


def eval_set_md5(gallery: Gallery, shopper: ShopperQueries | None) -> str:
    """Identity of the evaluation set: queries, gallery, prompts and the shopper-photo recipe."""
    h = hashlib.md5()
    rows = sorted(zip(gallery.ids.tolist(), gallery.split.tolist(), gallery.categories.tolist()))
    for part in (["\t".join(r) for r in rows], list(PROMPTS)):
        h.update("\n".join(part).encode() + b"\0")
    if shopper is not None:
        h.update(json.dumps([shopper.augment, shopper.seed, shopper.product_ids], sort_keys=True).encode())
    return h.hexdigest()


def category_queries(encoder: DualEncoder, categories: list[str]) -> np.ndarray:
    """One L2-normalised query per category: the mean of its prompt embeddings."""
    with torch.inference_mode():
        prompts = embed_texts(encoder, [p.format(category_text(c)) for c in categories for p in PROMPTS])
    q = prompts.reshape(len(categories), len(PROMPTS), -1).mean(axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def evaluate_vectors(
    encoder: DualEncoder | None, gallery: Gallery, shopper: ShopperQueries | None = None, worst: int = 8
) -> EvalResult:
    """All offline metrics for the encoder whose image vectors are `gallery.vectors` (without an
    encoder, e.g. raw image features, the text and zero-shot metrics are left out)."""
    test, rest = gallery.split == "test", gallery.split != "test"
    if not test.any() or not rest.any():
        raise ValueError(
            f"evaluation needs test and non-test rows; the gallery has {int(test.sum())} test and {int(rest.sum())} "
            "other rows"
        )
    vecs, cats = gallery.vectors, gallery.categories
    categories = sorted(set(cats))
    query_sets = [("image", vecs[test], cats[test])]
    if encoder is not None:
        text_q = category_queries(encoder, categories)
        query_sets.append(("text", text_q, np.array(categories)))
    metrics, per_cat, curves, bounds = {}, {}, {}, {}
    for prefix, q, labels in query_sets:
        rel, n_rel = label_relevance(topk(q, vecs[rest], 10), labels, cats[rest])
        metrics |= ranking_metrics(rel, n_rel, prefix)
        bounds[f"{prefix}_precision_at_10"] = precision_bounds(n_rel, int(rest.sum()))
        curves[prefix] = recall_curve(rel)
        for c, m in grouped_metrics(rel, n_rel, labels, prefix).items():
            per_cat.setdefault(c, {}).update(m)
    if encoder is not None:
        metrics["zero_shot_accuracy"] = float(
            (np.array(categories)[(vecs[test] @ text_q.T).argmax(axis=1)] == cats[test]).mean()
        )
    bad = []
    if shopper is not None and len(shopper.product_ids):
        row_of = {pid: i for i, pid in enumerate(gallery.ids)}
        missing = [p for p in shopper.product_ids if p not in row_of]
        if missing:
            raise ValueError(
                f"{len(missing)} shopper queries show products that are not in the gallery, e.g. {missing[:3]}"
            )
        truth = np.array([row_of[p] for p in shopper.product_ids])
        ranked = topk(shopper.vectors, vecs, 10)
        rel = ranked == truth[:, None]
        metrics |= ranking_metrics(rel, np.ones(len(truth)), "shopper")
        metrics["shopper_category_precision_at_10"] = float((cats[ranked] == cats[truth][:, None]).mean())
        curves["shopper"] = recall_curve(rel)
        for c, m in grouped_metrics(rel, np.ones(len(truth)), cats[truth], "shopper").items():
            per_cat.setdefault(c, {}).update(m)
        # The worst queries: their product is missing from the top 10 (or ranked lowest), true score lowest first.
        true_score = (shopper.vectors * vecs[truth]).sum(axis=1)
        rank = np.where(rel.any(axis=1), rel.argmax(axis=1), 10)
        for i in np.lexsort((true_score, -rank))[:worst]:
            bad.append(
                {
                    "product_id": shopper.product_ids[i],
                    "category": str(cats[truth[i]]),
                    "rank": int(rank[i]) + 1 if rank[i] < 10 else None,
                    "results": [str(gallery.ids[j]) for j in ranked[i, :3]],
                }
            )
    md5 = eval_set_md5(gallery, shopper)
    queries = {
        "image": int(test.sum()),
        "text": len(categories) if encoder is not None else 0,
        "gallery": int(rest.sum()),
        "shopper": len(shopper.product_ids) if shopper is not None else 0,
    }
    return EvalResult(metrics, per_cat, md5, queries, curves, bad, bounds)


def ann_recall(tbl, gallery: Gallery, sample: int = 200, seed: int = 0) -> float:
    """Recall@10 of the table's ANN index against exact search, for test photos over the non-test rows."""
    test, rest = gallery.split == "test", gallery.split != "test"
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(test), size=min(sample, int(test.sum())), replace=False)
    rest_ids = gallery.ids[rest]
    exact = topk(gallery.vectors[rows], gallery.vectors[rest], 10)
    hits = [
        len(
            set(rest_ids[e])
            & {
                r["product_id"]
                for r in vector_search(tbl, gallery.vectors[s], 10, "split != 'test'", columns=("product_id",))
            }
        )
        / 10
        for s, e in zip(rows, exact)
    ]
    return float(np.mean(hits))


def evaluate(
    encoder: DualEncoder,
    tbl,
    shopper: ShopperQueries | None = None,
    ann_sample: int = 200,
    seed: int = 0,
    gallery: Gallery | None = None,
) -> EvalResult:
    """Evaluate against the index that was built (its rows and vectors, read once into `gallery` when not
    given), including its ANN recall."""
    gallery = gallery or Gallery.from_table(tbl)
    result = evaluate_vectors(encoder, gallery, shopper)
    if table_metadata(tbl).get("ann"):
        result.metrics["index_recall_at_10"] = ann_recall(tbl, gallery, ann_sample, seed)
    return result
