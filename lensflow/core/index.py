"""A model version's LanceDB table: its name and folder, how it is indexed (IndexConfig), its fingerprint and
metadata, and vector search over it. What the flows (building) and the search service (serving) share."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lensflow.core.dvc import dir_md5
from lensflow.core.storage import is_remote, lancedb_options, objects_md5

META_KEY = "lensflow"
PRESET = Path(__file__).parent / "configs" / "index.json"


class IndexConfig(BaseModel):
    """How a table is indexed and queried. The defaults are the preset `lensflow/core/configs/index.json`
    (from benchmarks/index.py on the real 70k vectors, BENCHMARKS.md); `IndexConfig.preset()` loads it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["IVF_PQ"] = Field(description="the ANN index LanceDB builds")
    distance: Literal["cosine"] = Field(description="vector distance (scores are 1 - distance)")
    min_rows: int = Field(ge=1, description="build the ANN index from this many rows; smaller tables search exactly")
    rows_per_partition: int = Field(ge=1, description="IVF partitions: ~sqrt(rows), with at least this many rows each")
    sub_vector_dims: int = Field(ge=1, description="PQ sub-vector size (the nearest count dividing the dim is used)")
    nprobes: int = Field(ge=1, description="IVF partitions searched per query")
    refine_factor: int = Field(ge=1, description="re-rank refine_factor x k candidates with the full vectors")

    @classmethod
    def preset(cls, path: str | Path | None = None, **overrides) -> IndexConfig:
        """The preset (default: lensflow/core/configs/index.json), with the `overrides` that are not None."""
        base = _read(str(path or PRESET))
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})

    def ann(self, rows: int, dim: int) -> dict | None:
        """The ANN parameters for a table of `rows` vectors of `dim` (None: exact search). 16-dim sub-vectors
        measured recall@10 0.984 vs 0.998 with 8-dim ones at the same latency, built in 42 s instead of 70 s."""
        if rows < self.min_rows:
            return None
        partitions = max(1, min(int(math.sqrt(rows)), rows // self.rows_per_partition))
        target = max(1, dim // self.sub_vector_dims)
        sub = max(d for d in range(1, target + 1) if dim % d == 0)
        return {"type": self.kind, "distance": self.distance, "num_partitions": partitions, "num_sub_vectors": sub}

    def query(self) -> dict:
        """The query settings a table records (its metadata's `query`)."""
        return {"nprobes": self.nprobes, "refine_factor": self.refine_factor}


@cache
def _read(path: str) -> dict:
    return json.loads(Path(path).read_text())


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
    object store the md5 of its objects' keys, sizes and ETags (lensflow.core.storage.objects_md5)."""
    return objects_md5(f"{uri.rstrip('/')}/{table}.lance") if is_remote(uri) else dir_md5(table_dir(uri, table))


def table_metadata(tbl) -> dict:
    """The lensflow metadata a table was built with (model version, ANN and query settings)."""
    raw = (tbl.schema.metadata or {}).get(META_KEY.encode())
    return json.loads(raw) if raw else {}


def table_ids(tbl) -> list[str]:
    """Every product id in a table."""
    return tbl.search().select(["product_id"]).limit(max(1, tbl.count_rows())).to_arrow()["product_id"].to_pylist()


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
        query = query or meta.get("query") or IndexConfig.preset().query()
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


VOTE_TEMPERATURE = 0.05  # softmax temperature over cosine similarities: the nearest neighbours count most


def category_vote(categories: list[str], scores: list[float]) -> list[tuple[str, float]]:
    """What the nearest products say an item is: (category, share of the similarity-weighted vote), best first.
    Used to describe a photo (serving/describe.py) and to find likely mislabelled catalog rows (tasks/mislabel.py)."""
    if not len(categories):
        return []
    s = np.asarray(scores, dtype=np.float64)
    weights = np.exp((s - s.max()) / VOTE_TEMPERATURE)
    votes: dict[str, float] = {}
    for c, w in zip(categories, weights):
        votes[c] = votes.get(c, 0.0) + float(w)
    total = sum(votes.values())
    return sorted(((c, v / total) for c, v in votes.items()), key=lambda cv: (-cv[1], cv[0]))
