"""Build a model version's LanceDB table: vectors + metadata (the catalog's columns and the enrichment's), the ANN
index IndexConfig chooses, full-text indexes on the title and the enrichment tags."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from lensflow.core.index import META_KEY, IndexConfig, connect, table_dir, table_fingerprint, table_name
from lensflow.core.settings import Settings
from lensflow.core.storage import is_remote
from lensflow.tasks import stage
from lensflow.tasks.enrich import ENRICH_COLUMNS
from lensflow.tasks.helpers.catalog import cell_text
from lensflow.tasks.tracking import TrackedRun
from lensflow.tasks.versioning import track_dir

CATALOG_COLUMNS = ("product_id", "title", "category", "image_path", "split", "description", "color", "price", "brand")
TABLE_COLUMNS = (*CATALOG_COLUMNS, *ENRICH_COLUMNS)
FLOAT_COLUMNS = ("price", "category_confidence")
FTS_COLUMNS = ("title", "predicted_category", "colours")  # full-text indexed, when the table has them


@dataclass
class IndexInfo:
    uri: str
    table: str
    version: int
    rows: int
    fingerprint: str
    ann: dict | None
    fts: bool
    query: dict

    def as_dict(self) -> dict:
        return asdict(self)


def index_record(index: IndexInfo, data_md5: str, built: str = "full", **extra) -> dict:
    """What a model version records about the index it serves (the `index` tag)."""
    return {
        "uri": index.uri,
        "table": index.table,
        "version": index.version,
        "rows": index.rows,
        "fingerprint": index.fingerprint,
        "ann": index.ann,
        "query": index.query,
        "data_md5": data_md5,
        "tracked": "object store" if is_remote(index.uri) else "dvc",
        "built": built,
        **extra,
    }


def arrow_column(values: pd.Series, name: str) -> pa.Array:
    if name in FLOAT_COLUMNS:
        return pa.array(pd.to_numeric(values), type=pa.float64(), from_pandas=True)
    return pa.array([cell_text(v) for v in values], type=pa.string())


def _record_batches(
    catalog: pd.DataFrame, vectors: np.ndarray | Iterable[np.ndarray], schema: pa.Schema, chunk_rows: int = 65_536
) -> Iterator[pa.Table]:
    """Catalog rows zipped with vector batches, as Arrow tables of about `chunk_rows` rows (only one
    chunk is in memory at a time)."""
    batches = (
        (vectors[i : i + 8192] for i in range(0, len(vectors), 8192)) if isinstance(vectors, np.ndarray) else vectors
    )
    dim, start, pending = schema.field("vector").type.list_size, 0, []
    for batch in batches:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 2 or batch.shape[1] != dim:
            raise ValueError(f"vector batch of shape {batch.shape} at row {start}; expected [n, {dim}]")
        rows = catalog.iloc[start : start + len(batch)]
        if len(rows) < len(batch):
            raise ValueError(f"more vectors than the catalog's {len(catalog)} rows")
        cols = [arrow_column(rows[f.name], f.name) for f in schema if f.name != "vector"]
        cols.append(pa.FixedSizeListArray.from_arrays(pa.array(batch.ravel()), dim))
        pending.append(pa.RecordBatch.from_arrays(cols, schema=schema))
        start += len(batch)
        if sum(b.num_rows for b in pending) >= chunk_rows:
            yield pa.Table.from_batches(pending, schema=schema)
            pending = []
    if start != len(catalog):
        raise ValueError(f"{start} vectors for {len(catalog)} catalog rows")
    if pending or start == 0:
        yield pa.Table.from_batches(pending, schema=schema)


def build_index(
    uri: str,
    name: str,
    catalog: pd.DataFrame,
    vectors: np.ndarray | Iterable[np.ndarray],
    metadata: dict,
    config: IndexConfig | None = None,
    dim: int | None = None,
    chunk_rows: int = 65_536,
) -> IndexInfo:
    """Create table `name` (it must not exist: tables are immutable once served) and its indexes.

    `vectors` is an [N, D] array or an iterable of [n, D] batches in catalog order (then give `dim`):
    batches are streamed into LanceDB, so memory stays flat in catalog size. `config` defaults to the
    index preset (lensflow/core/configs/index.json).
    """
    if isinstance(vectors, np.ndarray):
        if len(vectors) != len(catalog):
            raise ValueError(f"{len(vectors)} vectors for {len(catalog)} catalog rows")
        dim = vectors.shape[1]
    elif dim is None:
        raise ValueError("give `dim` when vectors come as batches")
    config = config or IndexConfig.preset()
    db = connect(uri)
    if name in db.list_tables().tables:
        raise FileExistsError(
            f"LanceDB table {name!r} already exists in {uri}; a model version's table is never overwritten"
        )
    ann = config.ann(len(catalog), dim)
    meta = {**metadata, "embed_dim": dim, "rows": len(catalog), "ann": ann, "query": config.query()}
    fields = [
        pa.field(c, pa.float64() if c in FLOAT_COLUMNS else pa.string()) for c in TABLE_COLUMNS if c in catalog.columns
    ]
    schema = pa.schema(
        [*fields, pa.field("vector", pa.list_(pa.float32(), dim))],
        metadata={META_KEY: json.dumps(meta, sort_keys=True)},
    )
    try:
        # Chunks are computed here and appended (not pulled by LanceDB's writer thread through a reader:
        # torch running on that thread measured ~2x slower).
        tbl = None
        for chunk in _record_batches(catalog, vectors, schema, chunk_rows):
            if tbl is None:
                tbl = db.create_table(name, data=chunk)
            else:
                tbl.add(chunk)
        if ann:
            create_ann(tbl, ann)
        for column in (c for c in FTS_COLUMNS if c in catalog.columns):
            tbl.create_fts_index(column, replace=True)
    except BaseException:
        if name in db.list_tables().tables:  # never leave a half-written table behind under a version's name
            db.drop_table(name)
        raise
    return IndexInfo(
        uri, name, int(tbl.version), int(tbl.count_rows()), table_fingerprint(uri, name), ann, True, config.query()
    )


def create_ann(tbl, ann: dict) -> None:
    """(Re)build the table's IVF_PQ index with the parameters `IndexConfig.ann` chose."""
    from lancedb.index import IvfPq

    config = IvfPq(
        distance_type=ann["distance"], num_partitions=ann["num_partitions"], num_sub_vectors=ann["num_sub_vectors"]
    )
    tbl.create_index("vector", config=config, replace=True)


def build_version_index(
    s: Settings,
    run: TrackedRun,
    data_md5: str,
    catalog: pd.DataFrame,
    vectors: np.ndarray | Iterable[np.ndarray],
    dim: int,
    config: IndexConfig | None = None,
    push: bool = True,
) -> IndexInfo:
    """The table of the model version `run` registered, DVC-tracked (and pushed) when local: an object-store table is
    recognised by its objects' ETags instead (lensflow.core.index.table_fingerprint)."""
    meta = {"model_name": s.registered_model, "model_version": run.version, "run_id": run.run_id, "data_md5": data_md5}
    name = table_name(s.registered_model, run.version)
    index = build_index(s.lancedb_path, name, catalog, vectors, meta, config, dim)
    if not is_remote(index.uri):
        tracked = track_dir(s.root, s.dvc_remote_url, table_dir(index.uri, index.table), push=push)
        if tracked != index.fingerprint:
            raise RuntimeError(
                f"DVC recorded md5 {tracked} for {index.table}, but it was built with {index.fingerprint}"
            )
    return index


build_index_task = stage(build_version_index, name="build-index")
