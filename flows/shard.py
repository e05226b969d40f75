"""Sharded catalog embedding on a Dask cluster (prefect-dask's DaskTaskRunner): a sub-flow mapping
tasks.shard.embed_shard over slices of the catalog, and `embed_catalog`, the one place where a flow chooses
between that and embedding in-process (LENSFLOW_EMBED_RUNNER). See tasks/shard.py for the why."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger

from lensflow.core.settings import Settings
from lensflow.models.device import resolve_device
from lensflow.models.encoder import DualEncoder, load_encoder
from lensflow.tasks.embed import embed_catalog_task
from lensflow.tasks.helpers.images import BATCH
from lensflow.tasks.shard import ShardResult, embed_shard_task, shard_bounds, shard_vectors


def embed_catalog(
    s: Settings,
    model_dir: Path,
    catalog: pd.DataFrame,
    work: Path | None = None,
    progress: bool = True,
    encoder: DualEncoder | None = None,
    tower_features: np.ndarray | None = None,
) -> Iterable[np.ndarray] | np.ndarray:
    """The catalog's vectors, in catalog order: slices on Dask workers (LENSFLOW_EMBED_RUNNER=dask), each
    loading the saved model, or in this process with `encoder` (loaded from `model_dir` when not given).
    Shards are streamed from files under `work`; with no `work` they are read into one array at once."""
    if s.embed_runner == "dask" and len(catalog):
        if work is None:
            s.path(s.cache_dir).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="shards-", dir=s.path(s.cache_dir)) as tmp:
                return np.concatenate(list(embed_catalog(s, model_dir, catalog, Path(tmp), progress)))
        shards = embed_sharded(
            model_dir,
            catalog,
            s.data_path,
            work / "shards",
            s.embed_shards,
            s.dask_address,
            s.device,
            progress=progress,
        )
        return shard_vectors(shards, catalog)
    encoder = encoder or load_encoder(model_dir, device=resolve_device(s.device))
    if not len(catalog):
        return np.zeros((0, encoder.embed_dim), dtype=np.float32)
    return embed_catalog_task(
        encoder,
        catalog,
        s.data_path,
        tower_features=tower_features,
        loader_workers=s.loader_workers,
        progress=progress,
    )


@flow(name="embed-shards", persist_result=False)
def embed_shards_flow(
    model_dir: str,
    catalog: pa.Table,
    data_dir: str,
    out_dir: str,
    shards: int,
    device: str = "auto",
    batch_size: int = BATCH,
    threads: int | None = None,
    resources: dict | None = None,
    progress: bool = True,
) -> list[ShardResult]:
    """One embed-shard task per slice on the flow's task runner; results in shard order.

    The catalog comes as an Arrow table: Prefect records flow parameters in its API, and an all-string
    DataFrame would be stored cell by cell (2 MB per 70k rows); a Table is recorded as "<Table>"."""
    import dask

    bounds = shard_bounds(catalog.num_rows, shards)
    futures = []
    with dask.annotate(resources=resources) if resources else nullcontext():
        for i, (a, b) in enumerate(bounds):
            out = str(Path(out_dir) / f"shard-{i:04d}-of-{len(bounds):04d}.arrow")
            futures.append(
                embed_shard_task.submit(
                    model_dir, catalog.slice(a, b - a).to_pandas(), data_dir, out, device, batch_size, threads, progress
                )
            )
    results = [f.result() for f in futures]
    log = get_run_logger()
    for i, r in enumerate(results):
        log.info(
            f"shard {i}: {r.rows} rows in {r.seconds:.1f} s (load {r.load_seconds:.1f} s) on {r.device}, worker "
            f"{r.worker} pid {r.pid}"
        )
    return results


def shared_api():
    """Run under this process's Prefect API URL: with none set (ephemeral mode) each Dask worker would start
    its own temporary Prefect server (~5 s per worker, all on one SQLite database)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return nullcontext()
    server = SubprocessASGIServer()  # the process-wide one that Prefect's own client starts and stops at exit
    server.start()
    return temporary_settings({PREFECT_API_URL: server.api_url})


def local_runner(workers: int):
    """A DaskTaskRunner that starts a LocalCluster of `workers` single-threaded worker processes."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


def embed_sharded(
    model_dir: str | Path,
    catalog: pd.DataFrame,
    data_dir: str | Path,
    out_dir: str | Path,
    shards: int,
    address: str | None = None,
    device: str = "auto",
    batch_size: int = BATCH,
    progress: bool = True,
    workers: int | None = None,
    threads: int | None = None,
    resources: dict | None = None,
) -> list[ShardResult]:
    """Embed the catalog in `shards` slices on the Dask cluster at `address`, or on a local cluster of `workers`
    processes (default: one per shard, at most one per core) with cores / workers torch threads each; results in
    shard order."""
    from prefect_dask import DaskTaskRunner

    if address:
        runner = DaskTaskRunner(address=address)
    else:
        workers = max(1, min(workers or shards, shards, os.cpu_count() or 1))
        runner = local_runner(workers)
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
    table = pa.Table.from_pandas(catalog[["product_id", "image_path"]].astype(str), preserve_index=False)
    with shared_api():
        return embed_shards_flow.with_options(task_runner=runner)(
            str(model_dir), table, str(data_dir), str(out_dir), shards, device, batch_size, threads, resources, progress
        )
