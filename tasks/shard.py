"""One shard of a sharded catalog embedding (run on Dask workers by flows/shard.py), and reading the shards back.

Each shard embeds a contiguous slice of the catalog on its worker's own device and writes its
vectors as an Arrow IPC file; `shard_vectors` then streams the files, in catalog order and checked
against the catalog, into `tasks.index.build_index`, which runs once over the whole table. The
vectors are the single-process path's (`tasks.embed.embedding_batches` runs in each shard).

Why Dask: light and pure Python; with no address a LocalCluster of worker processes starts on this
machine, with `address` (tcp://host:8786) the shards run on an existing cluster, whose workers must
have this project installed (`pip install -e .`) and the model and data directories at the same paths.
GPUs: start workers with `dask worker ADDRESS --resources GPU=1` (one per GPU, or several GPUs per
worker, picked by worker index) and pass `resources={"GPU": 1}`: each shard then holds one GPU slot.
Dask's nanny starts workers with OMP_NUM_THREADS=1: on a CPU cluster pass `threads` (the local
cluster gets cores / workers).
"""

from __future__ import annotations

import os
import socket
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import numpy as np
import pandas as pd
import pyarrow as pa

from lensflow.models.device import resolve_device
from lensflow.models.encoder import DualEncoder, load_encoder
from lensflow.tasks import stage
from lensflow.tasks.embed import embedding_batches
from lensflow.tasks.helpers.images import BATCH

_cache: dict[tuple, DualEncoder] = {}
_cache_lock = Lock()


@dataclass
class ShardResult:
    path: str
    rows: int
    seconds: float  # load (when not cached) + embed + write
    load_seconds: float  # 0.0 when this process had the encoder already
    device: str
    worker: str  # Dask worker name ("" outside a worker)
    host: str
    pid: int


def shard_bounds(n_rows: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) slices of balanced size (the first n_rows % shards one row longer), no empty ones."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, not {shards}")
    size, extra = divmod(n_rows, shards)
    bounds, start = [], 0
    for i in range(shards):
        end = start + size + (i < extra)
        if end > start:
            bounds.append((start, end))
        start = end
    return bounds


def _worker() -> tuple[str, int]:
    """(name, index) of the Dask worker running this code; ("", 0) outside one. Index: the integer
    name LocalCluster gives, else a hash of the name."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return "", 0
    return str(name), int(name) if str(name).isdigit() else zlib.crc32(str(name).encode())


def cached_encoder(model_dir: str, device: str) -> tuple[DualEncoder, float]:
    """(encoder, load seconds or 0.0): one per process, so a worker running several shards loads it once
    (only the latest is kept: a long-lived worker may see many model versions)."""
    path = Path(model_dir).resolve()
    key = (str(path), device, (path / "heads.safetensors").stat().st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key], 0.0
        t0 = time.perf_counter()
        encoder = load_encoder(path, device)
        _cache.clear()
        _cache[key] = encoder
        return encoder, time.perf_counter() - t0


def embed_shard(
    model_dir: str,
    rows: pd.DataFrame,
    data_dir: str,
    out_path: str,
    device: str = "auto",
    batch_size: int = BATCH,
    threads: int | None = None,
    progress: bool = False,
) -> ShardResult:
    """Embed `rows` (a catalog slice) from their images and write product_id + vector Arrow batches to `out_path`."""
    import torch

    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    worker, index = _worker()
    device = resolve_device(device, index)
    encoder, load_s = cached_encoder(model_dir, device)
    schema = pa.schema(
        [pa.field("product_id", pa.string()), pa.field("vector", pa.list_(pa.float32(), encoder.embed_dim))]
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*.tmp"):  # left by a worker killed mid-shard (Dask re-runs its shard)
        stale.unlink(missing_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    ids, start = rows["product_id"].astype(str).tolist(), 0
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in embedding_batches(
                encoder, rows, Path(data_dir), batch_size=batch_size, loader_workers=0, progress=progress
            ):
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(batch.ravel()), encoder.embed_dim)
                writer.write_batch(
                    pa.record_batch([pa.array(ids[start : start + len(batch)], pa.string()), vectors], schema=schema)
                )
                start += len(batch)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ShardResult(
        str(out), len(rows), time.perf_counter() - t0, load_s, device, worker, socket.gethostname(), os.getpid()
    )


def shard_vectors(results: list[ShardResult], catalog: pd.DataFrame) -> Iterator[np.ndarray]:
    """Vector batches from the shard files, in order, each row's product_id checked against the catalog's
    (a missing, short, reordered or foreign shard fails with its file and row, before LanceDB sees it)."""
    expected = catalog["product_id"].astype(str).to_numpy()
    offset, dim = 0, None
    for result in results:
        path = Path(result.path)
        if not path.exists():
            raise FileNotFoundError(f"shard file {path} is missing (catalog rows {offset}..{offset + result.rows - 1})")
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
        except pa.ArrowInvalid as e:
            raise ValueError(f"shard file {path} is not a readable Arrow file: {e}") from e
        got = 0
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            ids = batch.column("product_id").to_numpy(zero_copy_only=False)
            want = expected[offset + got : offset + got + len(ids)]
            if len(want) < len(ids) or not np.array_equal(ids, want):
                j = next(k for k in range(len(ids)) if k >= len(want) or ids[k] != want[k])
                have = repr(want[j]) if j < len(want) else "no row (the catalog ends)"
                raise ValueError(
                    f"shard file {path}, row {got + j}: product_id {ids[j]!r}, but catalog row {offset + got + j} "
                    f"has {have}"
                )
            column = batch.column("vector")
            dim = dim or column.type.list_size
            if column.type.list_size != dim:
                raise ValueError(
                    f"shard file {path} has {column.type.list_size}-dim vectors; earlier shards have {dim}"
                )
            got += len(ids)
            yield column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        if got != result.rows:
            raise ValueError(
                f"shard file {path} has {got} rows; the shard embedded {result.rows} (catalog rows from {offset})"
            )
        offset += got
    if offset != len(catalog):
        raise ValueError(f"the shards cover {offset} of the catalog's {len(catalog)} rows")


embed_shard_task = stage(embed_shard, name="embed-shard", retries=2, retry_delay_seconds=2)
