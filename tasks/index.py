"""One LanceDB table per model version: vectors + metadata, ANN index (with refine), FTS on title."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lensflow.storage import is_remote, lancedb_options, objects_md5
from tasks import stage
from tasks.versioning import dir_md5

META_KEY = "lensflow"
TABLE_COLUMNS = ("product_id", "title", "category", "image_path", "split", "description", "color", "price", "brand")


@dataclass
class QueryParams:
    nprobes: int = 20
    refine_factor: int = 10


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


def table_name(model_name: str, version: int | str) -> str:
    return f"{model_name}-v{version}".replace("/", "-")


def table_dir(uri: str, table: str) -> Path:
    return Path(uri) / f"{table}.lance"


def connect(uri: str):
    """The LanceDB database at `uri` (a folder, or s3://bucket/prefix with the AWS_* environment variables)."""
    import lancedb

    return lancedb.connect(uri, storage_options=lancedb_options(uri) or None)


def table_fingerprint(uri: str, table: str) -> str:
    """What a model version records to recognise its table's files: the DVC md5 of the table's folder, or in an
    object store the md5 of its objects' keys, sizes and ETags (lensflow.storage.objects_md5)."""
    return objects_md5(f"{uri.rstrip('/')}/{table}.lance") if is_remote(uri) else dir_md5(table_dir(uri, table))


def ann_params(rows: int, dim: int) -> dict:
    """IVF_PQ sizing: ~sqrt(n) partitions with >= 256 rows each; sub-vectors of 16 dims (or the nearest
    count dividing dim). From benchmarks/index.py on the real 70k vectors, with refine_factor re-ranking:
    recall@10 0.984 vs 0.998 with 8-dim sub-vectors, at the same latency, built in 42 s instead of 70 s
    (BENCHMARKS.md)."""
    partitions = max(1, min(int(math.sqrt(rows)), rows // 256))
    target = max(1, dim // 16)
    sub = max(d for d in range(1, target + 1) if dim % d == 0)
    return {"type": "IVF_PQ", "distance": "cosine", "num_partitions": partitions, "num_sub_vectors": sub}


def _column(values: pd.Series, name: str) -> pa.Array:
    if name == "price":
        return pa.array(pd.to_numeric(values), type=pa.float64(), from_pandas=True)
    return pa.array(
        [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values], type=pa.string()
    )


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
        cols = [_column(rows[f.name], f.name) for f in schema if f.name != "vector"]
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
    ann_min_rows: int = 10_000,
    query: QueryParams | None = None,
    dim: int | None = None,
    chunk_rows: int = 65_536,
) -> IndexInfo:
    """Create table `name` (it must not exist: tables are immutable once served) and its indexes.

    `vectors` is an [N, D] array or an iterable of [n, D] batches in catalog order (then give `dim`):
    batches are streamed into LanceDB, so memory stays flat in catalog size.
    """
    from lancedb.index import IvfPq

    if isinstance(vectors, np.ndarray):
        if len(vectors) != len(catalog):
            raise ValueError(f"{len(vectors)} vectors for {len(catalog)} catalog rows")
        dim = vectors.shape[1]
    elif dim is None:
        raise ValueError("give `dim` when vectors come as batches")
    query = query or QueryParams()
    db = connect(uri)
    if name in db.list_tables().tables:
        raise FileExistsError(
            f"LanceDB table {name!r} already exists in {uri}; a model version's table is never overwritten"
        )
    ann = ann_params(len(catalog), dim) if len(catalog) >= ann_min_rows else None
    meta = {**metadata, "embed_dim": dim, "rows": len(catalog), "ann": ann, "query": asdict(query)}
    fields = [pa.field(c, pa.float64() if c == "price" else pa.string()) for c in TABLE_COLUMNS if c in catalog.columns]
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
            tbl.create_index(
                "vector",
                config=IvfPq(
                    distance_type="cosine", num_partitions=ann["num_partitions"], num_sub_vectors=ann["num_sub_vectors"]
                ),
                replace=True,
            )
        tbl.create_fts_index("title", replace=True)
    except BaseException:
        if name in db.list_tables().tables:  # never leave a half-written table behind under a version's name
            db.drop_table(name)
        raise
    return IndexInfo(
        uri, name, int(tbl.version), int(tbl.count_rows()), table_fingerprint(uri, name), ann, True, asdict(query)
    )


def table_metadata(tbl) -> dict:
    raw = (tbl.schema.metadata or {}).get(META_KEY.encode())
    return json.loads(raw) if raw else {}


def vector_search(
    tbl,
    vector: np.ndarray,
    k: int,
    where: str | None = None,
    query: dict | None = None,
    exact: bool = False,
    columns: tuple[str, ...] = ("product_id", "title", "category"),
    meta: dict | None = None,
) -> list[dict]:
    """Top-k by cosine distance; score = 1 - distance (cosine similarity).

    `meta` is the table's lensflow metadata (`table_metadata`); a server passes it once read, as
    reading it costs ~0.7 ms per query. `query` defaults to the settings the table was built with."""
    meta = table_metadata(tbl) if meta is None else meta
    q = tbl.search(np.asarray(vector, dtype=np.float32)).distance_type("cosine")
    if exact:
        q = q.bypass_vector_index()
    elif meta.get("ann"):
        query = query or meta.get("query") or asdict(QueryParams())
        q = q.nprobes(query["nprobes"]).refine_factor(query["refine_factor"])
    if where:
        q = q.where(where, prefilter=True)
    rows = q.select([*columns, "_distance"]).limit(k).to_list()
    for r in rows:
        r["score"] = 1.0 - float(r.pop("_distance"))
    return rows


def best_of(tbl, vectors: np.ndarray, k: int, where: str | None = None, **kw) -> list[dict]:
    """`vector_search` for one vector [D], or for the views of one photo [R, D]: each product ranked by its
    best score over the views (ties by product id)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1 or len(vectors) == 1:
        return vector_search(tbl, vectors.reshape(-1), k, where, **kw)
    best: dict[str, dict] = {}
    for v in vectors:
        for r in vector_search(tbl, v, k, where, **kw):
            if r["product_id"] not in best or r["score"] > best[r["product_id"]]["score"]:
                best[r["product_id"]] = r
    return sorted(best.values(), key=lambda r: (-r["score"], r["product_id"]))[:k]


build_index_task = stage(build_index, name="build-index")
