"""Sharded embedding on local Dask workers (`tasks.shard`) vs the single-process path.

On N catalog images (default: the first 4,000 of the demo project at /tmp/demo10/data, a 70k
Fashion-MNIST sample; else synthetic 28 px PNGs), with a saved `lit-lite0-minilm` encoder:

- single process: `load_encoder` + `tasks.embed.embedding_batches` in this process (torch's default threads);
- sharded, for each WORKERSxTHREADS in --runs: a LocalCluster of that many worker processes (start
  timed apart), then `embed_sharded` on it twice: cold (workers import torch and load the model) and
  warm (the same workers again; the encoder is cached per process). Shards = workers.

The Prefect API (a temporary server) is started once beforehand and timed apart. Reports wall s,
img/s, the slowest shard's own seconds, each worker's peak RSS, and whether the vectors equal the
single-process ones. Prints a table; writes benchmarks/results/shard-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.machine import describe, save_results
from lensflow.core.runtime import offline_env, tune_malloc
from lensflow.core.settings import get_settings

DEMO = Path("/tmp/demo10/data")


def catalog_images(work: Path, n: int, data: Path | None) -> tuple[pd.DataFrame, Path, str]:
    """(catalog, data dir, description): the first n products of `data`, else n synthetic 28 px PNGs."""
    if data and (data / "catalog.parquet").exists():
        return pd.read_parquet(data / "catalog.parquet").head(n).reset_index(drop=True), data, f"{data} (first {n})"
    from PIL import Image

    rng = np.random.default_rng(0)
    (work / "images").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(work / "images" / f"s{i:06d}.png")
    ids = [f"s{i:06d}" for i in range(n)]
    return (
        pd.DataFrame({"product_id": ids, "image_path": [f"images/{p}.png" for p in ids]}),
        work,
        f"synthetic 28 px noise ({n})",
    )


def worker_peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def sharded(
    model_dir: str, catalog, data_dir: Path, out: Path, workers: int, threads: int, batch: int, ref: np.ndarray
) -> dict:
    from distributed import Client, LocalCluster

    from lensflow.flows.shard import embed_sharded
    from lensflow.tasks.shard import shard_vectors

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    row = {"workers": workers, "threads": threads, "cluster_start_s": round(time.perf_counter() - t0, 2)}
    try:
        for phase in ("cold", "warm"):
            t0 = time.perf_counter()
            results = embed_sharded(
                model_dir,
                catalog,
                data_dir,
                out / f"{workers}x{threads}-{phase}",
                shards=workers,
                address=cluster.scheduler_address,
                batch_size=batch,
                threads=threads,
                progress=False,
            )
            wall = time.perf_counter() - t0
            got = np.concatenate(list(shard_vectors(results, catalog)))
            row[phase] = {
                "wall_s": round(wall, 2),
                "img_per_s": round(len(catalog) / wall, 1),
                "slowest_shard_s": round(max(r.seconds for r in results), 2),
                "load_s": round(max(r.load_seconds for r in results), 2),
                "pids": sorted({r.pid for r in results}),
                "max_abs_diff": float(np.abs(got - ref).max()),
                "bit_identical": bool(np.array_equal(got, ref)),
            }
        with Client(cluster) as client:
            row["worker_peak_rss_mb"] = sorted(client.run(worker_peak_rss_mb).values())
    finally:
        cluster.close()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--data", type=Path, default=DEMO, help="a project's data dir (catalog.parquet + images)")
    ap.add_argument("--runs", default="1x2,1x1,2x1", help="WORKERSxTORCH_THREADS local clusters to run")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--preset", default="lit-lite0-minilm")
    args = ap.parse_args()

    s = get_settings()
    offline_env(s.root)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # before distributed is imported (workers inherit it)
    tune_malloc()
    import torch

    from lensflow.flows.shard import shared_api
    from lensflow.models.encoder import build_encoder, load_encoder
    from lensflow.tasks.embed import embedding_batches

    work = Path(tempfile.mkdtemp(prefix="shard-bench-"))
    try:
        catalog, data_dir, source = catalog_images(work / "data", args.images, args.data)
        model_dir = str(build_encoder(args.preset).save(work / "model"))
        t0 = time.perf_counter()
        api = shared_api()  # starts the temporary server now, outside the timings
        api_s = time.perf_counter() - t0
        with api:
            t0 = time.perf_counter()
            encoder = load_encoder(model_dir)
            load_s = time.perf_counter() - t0
            list(
                embedding_batches(encoder, catalog.head(args.batch), data_dir, batch_size=args.batch, progress=False)
            )  # warm-up
            t0 = time.perf_counter()
            ref = np.concatenate(
                list(embedding_batches(encoder, catalog, data_dir, batch_size=args.batch, progress=False))
            )
            single_s = time.perf_counter() - t0
            del encoder
            single = {
                "threads": torch.get_num_threads(),
                "load_s": round(load_s, 2),
                "wall_s": round(single_s, 2),
                "img_per_s": round(len(catalog) / single_s, 1),
            }
            runs = []
            for spec in args.runs.split(","):
                w, t = (int(x) for x in spec.split("x"))
                runs.append(sharded(model_dir, catalog, data_dir, work / "shards", w, t, args.batch, ref))
                print(f"{spec}: {runs[-1]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{describe()['summary']}; preset {args.preset}, batch {args.batch}, {len(catalog)} images: {source}; "
        f"load average {os.getloadavg()[0]:.2f}; Prefect API (temporary server) start {api_s:.1f} s\n"
    )
    print(
        "| path | torch threads | cluster start s | wall s (cold) | img/s (cold) | wall s (warm) | img/s (warm) "
        "| slowest shard s (warm) | worker peak RSS MB | vectors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| single process (load {single['load_s']} s apart) | {single['threads']} | - "
        f"| {single['wall_s']} | {single['img_per_s']:,.0f} "
        f"| - | - | - | - | reference |"
    )
    for r in runs:
        same = (
            "bit-identical"
            if r["warm"]["bit_identical"] and r["cold"]["bit_identical"]
            else f"max diff {r['warm']['max_abs_diff']:.1e}"
        )
        print(
            f"| sharded, {r['workers']} Dask worker{'s' if r['workers'] > 1 else ''} | {r['threads']} each "
            f"| {r['cluster_start_s']} | {r['cold']['wall_s']} | {r['cold']['img_per_s']:,.0f} "
            f"| {r['warm']['wall_s']} | {r['warm']['img_per_s']:,.0f} "
            f"| {r['warm']['slowest_shard_s']} | {', '.join(f'{m:,.0f}' for m in r['worker_peak_rss_mb'])} | {same} |"
        )
    save_results(
        "shard",
        {
            "preset": args.preset,
            "batch": args.batch,
            "images": len(catalog),
            "source": source,
            "load_average": os.getloadavg(),
            "prefect_api_start_s": round(api_s, 2),
            "single": single,
            "sharded": runs,
        },
    )


if __name__ == "__main__":
    main()
