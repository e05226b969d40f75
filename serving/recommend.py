"""Beyond the search box, on the served (encoder, index) pair: recommendations from a shopper's session and
"complete the look". No HTTP here (serving/routes.py), no model call: both work on the index's vectors.

Recommendations (Rocchio-style, as Qdrant's and Marqo's recommend): a session vector from the viewed
products (recency-weighted: the newest counts most, halving every `half_life` views) and the liked ones,
pushed away from the disliked ones; the nearest products, minus everything the shopper already saw, are then
re-ranked by maximal marginal relevance (Carbonell & Goldstein 1998) so that near-duplicates do not fill the list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lensflow.core.index import best_of
from lensflow.core.storage import sql_list, sql_quote
from lensflow.serving.search import BadQuery, Catalog, Filters, facet_counts, product_vector, result_row, where_clause
from lensflow.serving.served import Served


@dataclass(frozen=True)
class RecommendConfig:
    """How a session becomes a query, and how diverse the list is (one home for these defaults)."""

    half_life: float = 3.0  # views: the view `half_life` steps before the newest counts half as much
    like_weight: float = 2.0  # a like counts as much as two newest views
    dislike_weight: float = 0.5  # Rocchio's gamma: how hard dislikes push away
    mmr_lambda: float = 0.7  # 1: relevance only; 0: diversity only
    pool: int = 4  # candidates fetched per result shown, for MMR to choose from


def product_vectors(served: Served, ids: list[str]) -> dict[str, np.ndarray]:
    """The index vectors of `ids`; BadQuery (404) naming every id the catalog does not have."""
    unique = list(dict.fromkeys(ids))
    rows = (
        served.table.search()
        .where(f"product_id IN ({sql_list(unique)})")
        .select(["product_id", "vector"])
        .limit(len(unique))
        .to_list()
    )
    found = {r["product_id"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}
    if missing := [i for i in unique if i not in found]:
        raise BadQuery(f"unknown product ids: {', '.join(map(repr, missing))}", 404)
    return found


def session_vector(
    vectors: dict[str, np.ndarray], viewed: list[str], liked: list[str], disliked: list[str], cfg: RecommendConfig
) -> np.ndarray:
    """The unit query vector of a session (viewed oldest first)."""
    n = len(viewed)
    weights = [(pid, 0.5 ** ((n - 1 - i) / cfg.half_life)) for i, pid in enumerate(viewed)]
    weights += [(pid, cfg.like_weight) for pid in liked]
    dim = next(iter(vectors.values())).shape[0]
    pos = sum((w * vectors[p] for p, w in weights), np.zeros(dim, np.float32))
    if weights:
        pos /= sum(w for _, w in weights)
    if disliked:
        pos = pos - cfg.dislike_weight * np.mean([vectors[p] for p in disliked], axis=0)
    norm = np.linalg.norm(pos)
    return pos / norm if norm > 0 else pos


def mmr(vectors: np.ndarray, scores: np.ndarray, k: int, lam: float) -> list[int]:
    """Indices of `k` candidates chosen greedily by lam * relevance - (1 - lam) * max similarity to the chosen."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    chosen: list[int] = []
    best_sim = np.full(len(scores), -np.inf)
    for _ in range(min(k, len(scores))):
        gain = lam * scores - (1 - lam) * np.where(np.isfinite(best_sim), best_sim, 0.0)
        gain[chosen] = -np.inf
        i = int(np.argmax(gain))
        chosen.append(i)
        best_sim = np.maximum(best_sim, unit @ unit[i])
    return chosen


def recommend(
    served: Served,
    catalog: Catalog,
    viewed: list[str],
    liked: list[str],
    disliked: list[str],
    limit: int,
    offset: int,
    filters: Filters,
    cfg: RecommendConfig = RecommendConfig(),
    diversify: bool = True,
) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """Products for this session: never one it viewed, liked or disliked; diversified by MMR. Also the facet
    counts over the candidates."""
    seen = list(dict.fromkeys([*viewed, *liked, *disliked]))
    if not seen:
        raise BadQuery("give at least one product id in viewed, liked or disliked")
    vectors = product_vectors(served, seen)
    query = session_vector(vectors, viewed, liked, disliked, cfg)
    where = " AND ".join(p for p in (where_clause(filters, catalog), f"product_id NOT IN ({sql_list(seen)})") if p)
    want = offset + limit
    rows = best_of(
        served.table, query, want * (cfg.pool if diversify else 1), where, columns=(*catalog.ranked_columns, "vector")
    )
    if diversify and rows:
        vecs, scores = np.asarray([r["vector"] for r in rows], np.float32), np.array([r["score"] for r in rows])
        order = mmr(vecs, scores, want, cfg.mmr_lambda)
        rows = [rows[i] for i in order]
    return [result_row(r) for r in rows[offset:want]], facet_counts(rows, catalog.facet_columns)


def complete_the_look(
    served: Served, catalog: Catalog, complements: dict[str, list[str]], product_id: str, limit: int
) -> list[dict]:
    """For each category that complements the product's, the products nearest to it in that category."""
    vec = product_vector(served, product_id)
    category = catalog.category_of[product_id]
    groups = []
    for other in complements.get(category, []):
        rows = best_of(served.table, vec, limit, f"category = {sql_quote(other)}", columns=catalog.result_columns)
        groups.append({"category": other, "results": [result_row(r) for r in rows]})
    return groups
