"""Apply a catalog diff to a copy of the served index: deletes, upserts, an incremental ANN update, and a
full rebuild only when the drift policy says so. The served table is never written."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field

from lensflow.storage import sql_quote
from tasks import stage
from tasks.diff import CatalogDiff
from tasks.evaluate import Gallery, ann_recall
from tasks.index import TABLE_COLUMNS, IndexInfo, _column, table_dir, table_fingerprint, table_metadata


class IndexPolicy(BaseModel):
    """How the ANN index follows the table: new rows start as a delta searched exactly next to the IVF_PQ
    partitions; above `merge_fraction` they are merged into the index (`optimize()`), and the index is
    rebuilt from scratch on drift or when the merged index loses recall."""

    merge_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="merge the unindexed delta into the ANN index when it exceeds this fraction of the rows",
    )
    rebuild_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="rebuild when the rows changed since the last full build exceed this fraction of the table",
    )
    recall_tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="rebuild when the updated index's recall@10 vs exact "
        "falls more than this below the last full build's",
    )


@dataclass
class Applied:
    info: IndexInfo
    rebuilt: bool
    reason: str
    recall_at_10: float | None
    changes_since_build: int
    seconds: dict[str, float] = field(default_factory=dict)


def next_table_name(existing: list[str], base_table: str) -> str:
    """`<model>-v<N>` -> `<model>-v<N>-r1`, `-r1` -> `-r2`, ... (never an existing name)."""
    stem = re.sub(r"-r\d+$", "", base_table)
    k = int(m.group(1)) + 1 if (m := re.search(r"-r(\d+)$", base_table)) else 1
    while f"{stem}-r{k}" in existing:
        k += 1
    return f"{stem}-r{k}"


def copy_table(src, dst) -> None:
    """A new table directory with the same content. Lance never rewrites its data and index files (it writes
    new ones), so those are hard links; everything else (manifests, version hints) is copied."""

    def link_or_copy(a, b):
        if "/data/" in a or "/_indices/" in a:
            try:
                return os.link(a, b)
            except OSError:
                pass
        return shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy)


def _quoted(ids: list[str]) -> str:
    return ",".join(map(sql_quote, ids))


def _rows(tbl, catalog: pd.DataFrame, vectors: np.ndarray) -> pa.Table:
    cols = {
        c: _column(catalog[c], c) if c in catalog.columns else pa.nulls(len(catalog), tbl.schema.field(c).type)
        for c in TABLE_COLUMNS
        if c in tbl.schema.names
    }
    dim = vectors.shape[1]
    cols["vector"] = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel()), dim
    )
    return pa.table(cols).select(tbl.schema.names).cast(tbl.schema)


def apply_changes(
    uri: str,
    base_table: str,
    new_table: str,
    catalog: pd.DataFrame,
    diff: CatalogDiff,
    vectors: np.ndarray,
    policy: IndexPolicy,
    changes_since_build: int,
    fresh_recall: float | None,
) -> Applied:
    """Copy `base_table` to `new_table` and bring it to `catalog`: `vectors` are the new embeddings of
    `diff.to_embed` (in that order); text-only changes keep their vectors. Returns the new index."""
    import lancedb
    from lancedb.index import IvfPq

    if len(vectors) != len(diff.to_embed):
        raise ValueError(f"{len(vectors)} vectors for {len(diff.to_embed)} products to embed")
    took: dict[str, float] = {}
    t0 = time.perf_counter()
    src, dst = table_dir(uri, base_table), table_dir(uri, new_table)
    if dst.exists():
        raise FileExistsError(f"LanceDB table {new_table!r} already exists in {uri}")
    copy_table(src, dst)
    took["copy"] = time.perf_counter() - t0
    try:
        tbl = lancedb.connect(uri).open_table(new_table)
        t0 = time.perf_counter()
        for i in range(0, len(diff.removed), 1000):
            tbl.delete(f"product_id IN ({_quoted(diff.removed[i : i + 1000])})")
        by_id = catalog.set_index("product_id", drop=False)
        parts = []
        if diff.to_embed:
            parts.append(_rows(tbl, by_id.loc[diff.to_embed], vectors))
        if diff.changed_text:
            kept = (
                tbl.search()
                .where(f"product_id IN ({_quoted(diff.changed_text)})")
                .select(["product_id", "vector"])
                .limit(len(diff.changed_text))
                .to_arrow()
                .to_pydict()
            )
            vec = dict(zip(kept["product_id"], kept["vector"]))
            parts.append(
                _rows(
                    tbl, by_id.loc[diff.changed_text], np.asarray([vec[p] for p in diff.changed_text], dtype=np.float32)
                )
            )
        if parts:
            tbl.merge_insert("product_id").when_matched_update_all().when_not_matched_insert_all().execute(
                pa.concat_tables(parts)
            )
        took["apply"] = time.perf_counter() - t0
        if tbl.count_rows() != len(catalog):
            raise RuntimeError(f"the updated table has {tbl.count_rows()} rows, the catalog {len(catalog)}")

        meta = table_metadata(tbl)
        ann = meta.get("ann")
        changes = changes_since_build + diff.n_changes
        rows = tbl.count_rows()
        rebuilt, recall = False, None
        unindexed = tbl.index_stats("vector_idx").num_unindexed_rows if ann else 0
        reason = f"incremental: {unindexed} new rows searched exactly beside the ANN partitions"
        if ann and changes > policy.rebuild_fraction * rows:
            rebuilt, reason = (
                True,
                f"{changes} rows changed since the last full build > {policy.rebuild_fraction:.0%} of {rows}",
            )
        elif ann and unindexed > policy.merge_fraction * rows:
            t0 = time.perf_counter()
            tbl.optimize()  # merges the delta into the IVF partitions (and the FTS index), compacts
            took["merge"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            recall = ann_recall(tbl, Gallery.from_table(tbl))
            took["probe"] = time.perf_counter() - t0
            reason = f"incremental: {unindexed} new rows merged into the ANN index (recall@10 {recall:.4f})"
            if fresh_recall is not None and recall < fresh_recall - policy.recall_tolerance:
                rebuilt, reason = (
                    True,
                    (
                        f"recall@10 {recall:.4f} after merging is more than {policy.recall_tolerance} "
                        f"below the full build's {fresh_recall:.4f}"
                    ),
                )
        if rebuilt:
            t0 = time.perf_counter()
            tbl.create_index(
                "vector",
                config=IvfPq(
                    distance_type="cosine", num_partitions=ann["num_partitions"], num_sub_vectors=ann["num_sub_vectors"]
                ),
                replace=True,
            )
            recall = ann_recall(tbl, Gallery.from_table(tbl))
            took["rebuild"] = time.perf_counter() - t0
        elif not ann:
            tbl.optimize()  # small exact-search tables: keep them compact
        info = IndexInfo(
            uri,
            new_table,
            int(tbl.version),
            rows,
            table_fingerprint(uri, new_table),
            ann,
            True,
            meta.get("query") or {},
        )
    except BaseException:
        shutil.rmtree(dst, ignore_errors=True)  # nothing half-written is left behind
        raise
    return Applied(info, rebuilt, reason, recall, 0 if rebuilt else changes, {k: round(v, 2) for k, v in took.items()})


apply_changes_task = stage(apply_changes, name="apply-index-changes")
