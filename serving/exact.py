"""Exact search over the served table's vectors, held in memory.

Up to `max_rows` products (LENSFLOW_EXACT_SEARCH_MAX_ROWS; 0.5 GB of 512-d vectors at the default 250k), one
matrix product answers an unfiltered query faster than a LanceDB IVF_PQ probe, and with recall 1 instead of
~0.98 (BENCHMARKS.md, "Vector index"). The vectors and columns are read once from the same pinned table
version the service serves, so what is served does not change, only how it is scanned. Filtered queries keep
LanceDB's prefiltered search. Concurrent queries are scored by one matrix product (serving/batching.py), which
reads the vectors once for all of them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from lensflow.serving.batching import Batcher


@dataclass
class ExactIndex:
    vectors: np.ndarray  # [N, D] float32, unit rows, in table order
    rows: pa.Table  # the columns a ranking returns, same order
    order: np.ndarray  # [N] rank of each row's product_id in sorted order (ties break by product id)
    max_batch: int = 32  # concurrent queries scored in one matrix product (LENSFLOW_SERVE_MAX_BATCH)
    batcher: Batcher = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.batcher = Batcher(self.top_many, self.max_batch)

    @classmethod
    def of(cls, table, columns: tuple[str, ...], max_rows: int, max_batch: int = 32) -> ExactIndex | None:
        """The table's vectors and `columns` in memory, or None when it holds more than `max_rows` rows (or none)."""
        n = table.count_rows()
        if not n or n > max_rows:
            return None
        t = table.search().select(["vector", *columns]).limit(n).to_arrow()
        col = t.column("vector").combine_chunks()
        vectors = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(t), -1)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        ids = np.asarray(t.column("product_id").to_pylist(), dtype=object)
        order = np.empty(len(ids), np.int64)
        order[np.argsort(ids, kind="stable")] = np.arange(len(ids))
        return cls(np.ascontiguousarray(vectors), t.drop_columns(["vector"]), order, max_batch)

    def top(self, vectors: np.ndarray, k: int) -> list[dict]:
        """The k products nearest to one vector [D], or to the best of a photo's views [R, D], as
        `lensflow.core.index.best_of` ranks them: score = cosine similarity, ties by product id. Scored in one
        matrix product with the queries of other request threads arriving meanwhile."""
        return self.batcher((vectors, k))

    def top_many(self, queries: list[tuple[np.ndarray, int]]) -> list[list[dict]]:
        """`top` for several (vectors, k) queries at once: one matrix product over all their views."""
        dim = self.vectors.shape[1]
        qs = [np.asarray(v, dtype=np.float32).reshape(-1, dim) for v, _ in queries]
        q = np.concatenate(qs)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        scores = q @ self.vectors.T
        out, start = [], 0
        for views, (_, k) in zip(qs, queries):
            part = scores[start : start + len(views)]
            start += len(views)
            out.append(self._ranked(part.max(axis=0) if len(part) > 1 else part[0], k))
        return out

    def _ranked(self, best: np.ndarray, k: int) -> list[dict]:
        k = min(k, len(best))
        if k <= 0:
            return []
        top = np.argpartition(-best, k - 1)[:k] if k < len(best) else np.arange(len(best))
        top = top[np.lexsort((self.order[top], -best[top]))]
        rows = self.rows.take(pa.array(top)).to_pylist()
        for r, s in zip(rows, best[top]):
            r["score"] = float(s)
        return rows
