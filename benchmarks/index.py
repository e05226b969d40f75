"""Vector search: LanceDB as lensflow builds and queries it vs numpy brute force and faiss-cpu.

For each set (the champion's real embeddings when the project has one; clustered synthetic unit
vectors of the model's dimension at 100k and 1M), in one run: build time, single-query p50/p99
latency and recall@10 against exact search, for
- numpy brute force (exact; the baseline), faiss IndexFlatIP (exact) and IndexIVFFlat;
- LanceDB IVF_PQ sized by lensflow's `IndexConfig.ann` and queried through lensflow's `vector_search`
  at several nprobes/refine_factor settings, and IVF_PQ with half the sub-vectors.
The defaults in lensflow/core/configs/index.json (IndexConfig) are chosen from this table.
Prints a table; writes benchmarks/results/index-<time>.json. Needs faiss-cpu (`make bench` installs it).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe, save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings

K = 10


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, seed: int, centres: int = 2000, spread: float = 1.5) -> np.ndarray:
    """Unit vectors around `centres` random directions (cosine to their centre ~0.55), in chunks."""
    c = unit(np.random.default_rng(1234).standard_normal((centres, dim)))
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        out[i : i + m] = unit(c[rng.integers(0, centres, m)] + spread * rng.standard_normal((m, dim)) / np.sqrt(dim))
    return out


def resampled(real: np.ndarray, n: int, seed: int, noise: float = 0.5) -> np.ndarray:
    """n vectors drawn from real embeddings plus Gaussian noise (cosine ~0.9 to their source): the real
    structure (categories, near-duplicates) at a size the project does not have."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        out[i : i + m] = unit(
            real[rng.integers(0, len(real), m)]
            + noise * rng.standard_normal((m, real.shape[1])) / np.sqrt(real.shape[1])
        )
    return out


def champion_vectors() -> np.ndarray | None:
    """The served index's vectors, when this project has a champion."""
    try:
        from lensflow.serving.served import load_champion

        served = load_champion(get_settings())
        return np.stack(served.table.to_arrow().column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    except Exception as exc:  # no champion yet: synthetic sets only
        print(f"no champion embeddings ({type(exc).__name__}: {str(exc)[:120]}); synthetic sets only")
        return None


def exact_top(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), K), np.int64)
    for i in range(0, len(queries), 100):
        scores = queries[i : i + 100] @ base.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        out[i : i + 100] = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
    return out


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K].tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def latencies(search, queries: np.ndarray) -> tuple[dict, list[np.ndarray]]:
    for q in queries[:5]:
        search(q)  # warm-up
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - t0) * 1000)
    t = np.asarray(times)
    return {"p50_ms": round(float(np.percentile(t, 50)), 2), "p99_ms": round(float(np.percentile(t, 99)), 2)}, found


def bench_set(name: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path) -> list[dict]:
    import faiss
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfPq

    from lensflow.core.index import META_KEY, IndexConfig, vector_search

    n, dim = base.shape
    rows = []

    def add(method: str, settings: str, build_s: float, search, qs=queries, tr=truth, default: bool = False):
        lat, found = latencies(search, qs)
        r = {
            "set": name,
            "n": n,
            "dim": dim,
            "method": method,
            "settings": settings,
            "build_s": round(build_s, 1),
            **lat,
            "recall_at_10": round(recall(found, tr), 4),
            "lensflow_default": default,
        }
        rows.append(r)
        print(
            f"  {method:24s} {settings:38s} build {r['build_s']:7.1f} s  p50 {r['p50_ms']:7.2f} ms  "
            f"p99 {r['p99_ms']:7.2f} ms  recall@10 {r['recall_at_10']:.3f}",
            flush=True,
        )

    def np_search(q):
        s = base @ q
        top = np.argpartition(-s, K)[:K]
        return top[np.argsort(-s[top])]

    add("numpy brute force", "exact, one query", 0.0, np_search, queries[:100], truth[:100])

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    add(
        "faiss IndexFlatIP",
        "exact",
        time.perf_counter() - t0,
        lambda q: flat.search(q[None], K)[1][0],
        queries[:100],
        truth[:100],
    )
    flat = None

    nlist = int(4 * np.sqrt(n))
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(base[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)])
    ivf.add(base)
    build = time.perf_counter() - t0
    for nprobe in (8, 32):
        ivf.nprobe = nprobe
        add("faiss IndexIVFFlat", f"nlist {nlist}, nprobe {nprobe}", build, lambda q: ivf.search(q[None], K)[1][0])
    ivf = None
    gc.collect()

    db_dir = Path(tempfile.mkdtemp(prefix="index-bench-", dir=work))
    try:
        default_q = IndexConfig.preset()
        ann = default_q.ann(max(n, default_q.min_rows), dim)
        at = [(default_q.nprobes, default_q.refine_factor), (10, 10), (20, 20), (40, 20)]
        subs = {ann["num_sub_vectors"], dim // 16, dim // 32} | (
            {dim // 8} if n <= 200_000 else set()
        )  # dim/8: slow to build at 1M
        subs = sorted(subs, reverse=True)
        variants = [(sub, at) for sub in subs]
        for sub, queries_at in variants:
            cfg = {**ann, "num_sub_vectors": sub}
            name_t = f"t{sub}"
            t0 = time.perf_counter()  # table write + IVF_PQ exactly as tasks.index.build_index does (no FTS here)
            data = pa.table(
                {
                    "product_id": pa.array([str(i) for i in range(n)]),
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(base.ravel()), dim),
                }
            )
            data = data.replace_schema_metadata({META_KEY: json.dumps({"ann": cfg})})
            tbl = lancedb.connect(str(db_dir)).create_table(name_t, data=data)
            tbl.create_index(
                "vector",
                config=IvfPq(distance_type="cosine", num_partitions=cfg["num_partitions"], num_sub_vectors=sub),
                replace=True,
            )
            build = time.perf_counter() - t0
            tbl = lancedb.connect(str(db_dir)).open_table(name_t)
            for nprobes, refine in queries_at:
                qp = {"nprobes": nprobes, "refine_factor": refine}
                add(
                    "LanceDB IVF_PQ",
                    f"part {ann['num_partitions']}, sub {sub}, nprobes {nprobes}, refine {refine}",
                    build,
                    lambda q, qp=qp, tbl=tbl: np.array(
                        [int(r["product_id"]) for r in vector_search(tbl, q, K, query=qp, columns=("product_id",))]
                    ),
                    default=(
                        sub == ann["num_sub_vectors"]
                        and (nprobes, refine) == (default_q.nprobes, default_q.refine_factor)
                    ),
                )
        if n <= 200_000:
            add(
                "LanceDB no index",
                "exact (flat scan)",
                0.0,
                lambda q: np.array(
                    [int(r["product_id"]) for r in vector_search(tbl, q, K, exact=True, columns=("product_id",))]
                ),
                queries[:50],
                truth[:50],
            )
    finally:
        shutil.rmtree(db_dir, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="synthetic set sizes")
    ap.add_argument("--dim", type=int, default=512, help="vector dimension (the default preset serves 512)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--no-real", action="store_true", help="skip the champion's embeddings")
    args = ap.parse_args()
    s = get_settings()
    offline_env(s.root)
    work = s.path(s.cache_dir) / "bench"
    work.mkdir(parents=True, exist_ok=True)

    sets = []
    real = None if args.no_real else champion_vectors()
    if real is not None:
        rng = np.random.default_rng(0)
        pick = rng.permutation(len(real))
        sets.append(
            (
                f"real {len(real) - args.queries:,} (champion)",
                lambda: (real[pick[args.queries :]], real[pick[: args.queries]]),
            )
        )
    for n in (int(x) for x in args.sizes.split(",")):
        if real is not None:
            sets.append(
                (f"resampled real {n:,}", lambda n=n: (resampled(real, n, 1), resampled(real, args.queries, 2)))
            )
        else:
            sets.append(
                (f"synthetic {n:,}", lambda n=n: (clustered(n, args.dim, 1), clustered(args.queries, args.dim, 2)))
            )
    rows = []
    for name, make in sets:
        base, queries = make()
        print(f"{name}: {base.shape[0]:,} x {base.shape[1]}, {len(queries)} queries", flush=True)
        truth = exact_top(base, queries)
        rows += bench_set(name, base, queries, truth, work)
        del base
        gc.collect()

    print(f"\n{describe()['summary']}; single queries, k={K}\n")
    print("| set | method | settings | build s | p50 ms | p99 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mark = " **(lensflow default)**" if r["lensflow_default"] else ""
        print(
            f"| {r['set']} | {r['method']} | {r['settings']}{mark} | {r['build_s']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['recall_at_10']:.3f} |"
        )
    save_results("index", {"k": K, "queries": args.queries, "rows": rows})


if __name__ == "__main__":
    main()
