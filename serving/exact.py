"""Exact search over the served table's vectors, held in memory.

Up to `max_rows` products (LENSFLOW_EXACT_SEARCH_MAX_ROWS; 0.5 GB of 512-d vectors at the default 250k), one
matrix product answers an unfiltered query faster than a LanceDB IVF_PQ probe, and with recall 1 instead of
~0.98 (BENCHMARKS.md, "Vector index"). The vectors and columns are read once from the same pinned table
version the service serves, so what is served does not change, only how it is scanned. Filtered queries keep
LanceDB's prefiltered search. Concurrent queries are scored by one matrix product (serving/batching.py), which
reads the vectors once for all of them.

The scan may run in float16 (half the memory traffic): the kernel, numpy or torch, float32 or float16, is the
fastest one measured on this machine when the vectors load, for one query and for a batch (`Scan.fastest`). A
float16 score is within a proven bound of the float32 one, so every product that could be in the float32 top k is
kept as a candidate and re-scored in float32: the ranking is the float32 ranking, whatever the kernel. (bfloat16
is not offered: its bound, +-0.012, admitted 1,000-7,000 of 70,000 candidates for text queries, whose cosine
scores lie within a few hundredths of each other.)"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from lensflow.serving.batching import Batcher

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11}
KERNELS = {
    "numpy float32": ("numpy", "float32"),
    "torch float32": ("torch", "float32"),
    "torch float16": ("torch", "float16"),
}
SMALL = 3  # query rows up to which the `small` kernel scans (one text query, or one photo's views)


@dataclass
class Scan:
    """Coarse scores of unit queries against the unit vectors with one kernel, each within `delta` of its float32
    score: the inputs rounded (2u), the product rounded (u), float32 accumulation over D terms."""

    kernel: str  # a KERNELS name
    matrix: object  # [N, D]: the float32 numpy array itself, or a torch tensor (float32: sharing its memory)

    @classmethod
    def of(cls, vectors: np.ndarray, kernel: str) -> Scan:
        lib, dtype = KERNELS[kernel]
        if lib == "numpy":
            return cls(kernel, vectors)
        import torch

        return cls(kernel, torch.from_numpy(vectors).to(getattr(torch, dtype)).contiguous())

    @property
    def delta(self) -> float:
        u = UNIT_ROUNDOFF[KERNELS[self.kernel][1]]
        return 3 * u + u * u + self.matrix.shape[1] * UNIT_ROUNDOFF["float32"]

    def scores(self, q: np.ndarray) -> np.ndarray:
        """[B, N] float32 coarse scores of the unit queries q [B, D]."""
        if isinstance(self.matrix, np.ndarray):
            return q @ self.matrix.T
        import torch

        with torch.inference_mode():
            return (self.matrix @ torch.from_numpy(q).to(self.matrix.dtype).T).T.float().numpy()

    @staticmethod
    def fastest(vectors: np.ndarray, rows: int, reps: int = 3) -> Scan:
        """The kernel that scans `rows` queries fastest here, among those whose measured error stays inside their
        bound (a CPU whose float16 product accumulated in float16 would fail that check)."""
        q = vectors[np.linspace(0, len(vectors) - 1, rows).astype(int)]
        exact = q @ vectors.T
        timed = []
        for kernel in KERNELS:
            scan = Scan.of(vectors, kernel)
            if float(np.abs(scan.scores(q) - exact).max()) > scan.delta / 2:
                continue
            scan.scores(q)  # warm-up
            t0 = time.perf_counter()
            for _ in range(reps):
                scan.scores(q)
            timed.append((time.perf_counter() - t0, kernel, scan))
        return min(timed, key=lambda t: t[0])[2]


@dataclass
class ExactIndex:
    vectors: np.ndarray  # [N, D] float32, unit rows, in table order
    rows: pa.Table  # the columns a ranking returns, same order
    order: np.ndarray  # [N] rank of each row's product_id in sorted order (ties break by product id)
    max_batch: int = 32  # concurrent queries scored in one matrix product (LENSFLOW_SERVE_MAX_BATCH)
    scans: dict[str, Scan] = field(default_factory=dict)  # "small"/"batch" -> kernel; default: float32
    batcher: Batcher = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.batcher = Batcher(self.top_many, self.max_batch)
        float32 = Scan.of(self.vectors, "numpy float32")
        self.scans = {"small": self.scans.get("small", float32), "batch": self.scans.get("batch", float32)}

    def tuned(self) -> ExactIndex:
        """Scan with the fastest exact-preserving kernel measured here for one query and for a batch of 8."""
        self.scans = {"small": Scan.fastest(self.vectors, 1), "batch": Scan.fastest(self.vectors, 8)}
        return self

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
        return cls(np.ascontiguousarray(vectors), t.drop_columns(["vector"]), order, max_batch).tuned()

    def top(self, vectors: np.ndarray, k: int) -> list[dict]:
        """The k products nearest to one vector [D], or to the best of a photo's views [R, D], as
        `lensflow.core.index.best_of` ranks them: score = cosine similarity, ties by product id. Scored in one
        matrix product with the queries of other request threads arriving meanwhile."""
        return self.batcher((vectors, k))

    def top_many(self, queries: list[tuple[np.ndarray, int]]) -> list[list[dict]]:
        """`top` for several (vectors, k) queries at once: one coarse scan over all their views, then each query's
        candidates re-scored in float32."""
        dim = self.vectors.shape[1]
        qs = [np.asarray(v, dtype=np.float32).reshape(-1, dim) for v, _ in queries]
        q = np.concatenate(qs)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        scan = self.scans["small" if len(q) <= SMALL else "batch"]
        coarse = scan.scores(q)
        out, start = [], 0
        for views, (_, k) in zip(qs, queries):
            rows = slice(start, start + len(views))
            start += len(views)
            out.append(self._ranked(coarse[rows].max(axis=0), q[rows], k, scan.delta))
        return out

    def _ranked(self, coarse: np.ndarray, views: np.ndarray, k: int, delta: float) -> list[dict]:
        """The top k by float32 score among the candidates the coarse scores cannot rule out: a product whose
        coarse score is 2 x delta below the k-th best coarse score is below k products in float32 too."""
        n = len(coarse)
        k = min(k, n)
        if k <= 0:
            return []
        kth = np.partition(coarse, n - k)[n - k]
        cand = np.flatnonzero(coarse >= kth - 2 * delta)
        best = (self.vectors[cand] @ views.T).max(axis=1)
        pick = np.lexsort((self.order[cand], -best))[:k]
        top, best = cand[pick], best[pick]
        rows = self.rows.take(pa.array(top)).to_pylist()
        for r, s in zip(rows, best):
            r["score"] = float(s)
        return rows
