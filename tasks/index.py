"""One LanceDB table per model version: vectors + metadata, ANN index (with refine), FTS on title."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
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
    return {"uri": index.uri, "table": index.table, "version": index.version, "rows": index.rows,
            "fingerprint": index.fingerprint, "ann": index.ann, "query": index.query, "data_md5": data_md5,
            "tracked": "dvc" if "://" not in index.uri else "object store", "built": built, **extra}


def table_name(model_name: str, version: int | str) -> str:
    return f"{model_name}-v{version}".replace("/", "-")


def table_dir(uri: str, table: str) -> Path:
    return Path(uri) / f"{table}.lance"


def ann_params(rows: int, dim: int) -> dict:
    """IVF_PQ sizing: ~sqrt(n) partitions with >= 256 rows each; sub-vectors of 8 dims (or fewer, dividing dim)."""
    partitions = max(1, min(int(math.sqrt(rows)), rows // 256))
    target = max(1, dim // 8)
    sub = max(d for d in range(1, target + 1) if dim % d == 0)
    return {"type": "IVF_PQ", "distance": "cosine", "num_partitions": partitions, "num_sub_vectors": sub}


def _column(values: pd.Series, name: str) -> pa.Array:
    if name == "price":
        return pa.array(pd.to_numeric(values), type=pa.float64(), from_pandas=True)
    return pa.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values], type=pa.string())


def build_index(uri: str, name: str, catalog: pd.DataFrame, vectors: np.ndarray, metadata: dict,
                ann_min_rows: int = 10_000, query: QueryParams | None = None) -> IndexInfo:
    """Create table `name` (it must not exist: tables are immutable once served) and its indexes."""
    import lancedb
    from lancedb.index import IvfPq

    if len(vectors) != len(catalog):
        raise ValueError(f"{len(vectors)} vectors for {len(catalog)} catalog rows")
    query = query or QueryParams()
    db = lancedb.connect(uri)
    if name in db.list_tables().tables:
        raise FileExistsError(f"LanceDB table {name!r} already exists in {uri}; a model version's table is never overwritten")
    dim = vectors.shape[1]
    cols = {c: _column(catalog[c], c) for c in TABLE_COLUMNS if c in catalog.columns}
    cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel()), dim)
    ann = ann_params(len(catalog), dim) if len(catalog) >= ann_min_rows else None
    meta = {**metadata, "embed_dim": dim, "rows": len(catalog), "ann": ann, "query": asdict(query)}
    table = pa.table(cols).replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    tbl = db.create_table(name, data=table)
    if ann:
        tbl.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=ann["num_partitions"],
                                                 num_sub_vectors=ann["num_sub_vectors"]), replace=True)
    tbl.create_fts_index("title", replace=True)
    return IndexInfo(uri, name, int(tbl.version), int(tbl.count_rows()), dir_md5(table_dir(uri, name)), ann, True, asdict(query))


def table_metadata(tbl) -> dict:
    raw = (tbl.schema.metadata or {}).get(META_KEY.encode())
    return json.loads(raw) if raw else {}


def vector_search(tbl, vector: np.ndarray, k: int, where: str | None = None, query: dict | None = None,
                  exact: bool = False, columns: tuple[str, ...] = ("product_id", "title", "category")) -> list[dict]:
    """Top-k by cosine distance; score = 1 - distance (cosine similarity)."""
    q = tbl.search(np.asarray(vector, dtype=np.float32)).distance_type("cosine")
    if exact:
        q = q.bypass_vector_index()
    elif table_metadata(tbl).get("ann"):
        query = query or asdict(QueryParams())
        q = q.nprobes(query["nprobes"]).refine_factor(query["refine_factor"])
    if where:
        q = q.where(where, prefilter=True)
    rows = q.select([*columns, "_distance"]).limit(k).to_list()
    for r in rows:
        r["score"] = 1.0 - float(r.pop("_distance"))
    return rows


build_index_task = stage(build_index, name="build-index")
