"""Apply a catalog diff to a copy of the served index: deletes, upserts, an incremental ANN update, and a
full rebuild only when the drift policy says so. The served table is never written."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field

from lensflow.core import registry
from lensflow.core.champion import Champion, IndexMismatch, index_problems, resolve_champion, restore_index
from lensflow.core.index import IndexConfig, connect, table_dir, table_fingerprint, table_ids, table_metadata
from lensflow.core.settings import Settings
from lensflow.core.storage import is_remote, sql_list
from lensflow.tasks import stage
from lensflow.tasks.enrich import ENRICH_COLUMNS
from lensflow.tasks.evaluate import Gallery, ann_recall
from lensflow.tasks.helpers.approval import now
from lensflow.tasks.helpers.diff import CatalogDiff, catalog_at, diff_catalogs, manifest
from lensflow.tasks.index import TABLE_COLUMNS, IndexInfo, arrow_column, create_ann, index_record
from lensflow.tasks.versioning import track_dir


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


def _rows(tbl, catalog: pd.DataFrame, vectors: np.ndarray) -> pa.Table:
    cols = {
        c: arrow_column(catalog[c], c) if c in catalog.columns else pa.nulls(len(catalog), tbl.schema.field(c).type)
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
    enrichment: pd.DataFrame | None = None,
) -> Applied:
    """Copy `base_table` to `new_table` and bring it to `catalog`: `vectors` are the new embeddings of
    `diff.to_embed` (in that order) and `enrichment` their enrichment columns (tasks.enrich.enrich_changes);
    text-only changes keep their vectors and enrichment. Returns the new index."""
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
        tbl = connect(uri).open_table(new_table)
        t0 = time.perf_counter()
        for i in range(0, len(diff.removed), 1000):
            tbl.delete(f"product_id IN ({sql_list(diff.removed[i : i + 1000])})")
        by_id = catalog.set_index("product_id", drop=False)
        parts = []
        enriched = [c for c in ENRICH_COLUMNS if c in tbl.schema.names]
        if diff.to_embed:
            rows = by_id.loc[diff.to_embed]
            if enriched and enrichment is not None:
                rows = rows.assign(**{c: enrichment.loc[diff.to_embed, c].to_numpy() for c in enriched})
            parts.append(_rows(tbl, rows, vectors))
        if diff.changed_text:
            kept = (
                tbl.search()
                .where(f"product_id IN ({sql_list(diff.changed_text)})")
                .select(["product_id", "vector", *enriched])
                .limit(len(diff.changed_text))
                .to_pandas()
                .set_index("product_id")
                .loc[diff.changed_text]
            )
            rows = by_id.loc[diff.changed_text].assign(**{c: kept[c].to_numpy() for c in enriched})
            parts.append(_rows(tbl, rows, np.stack(kept["vector"].to_numpy()).astype(np.float32)))
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
            # sized for the table as it is now (the partition count follows the row count), by the index preset
            ann = IndexConfig.preset(min_rows=1).ann(rows, tbl.schema.field("vector").type.list_size)
            create_ann(tbl, ann)
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


INDEX_HISTORY = 20  # earlier index records kept on the version (`index_history`)


def served_base(s: Settings) -> Champion:
    """The champion whose index a reindex updates: local, restored from DVC when missing, and verified."""
    champ = resolve_champion(s)
    idx = champ.index
    if not idx["table"] or is_remote(idx["uri"] or ""):
        raise ValueError(
            f"v{champ.version} has no local LanceDB index to update ({idx['uri']}): "
            "with an object-store index, retrain instead"
        )
    restore_index(s, champ)
    if problems := index_problems(champ):
        raise IndexMismatch(
            f"the served index of v{champ.version} does not verify, so it is not a base to update: "
            + "; ".join(problems)
        )
    return champ


def unchanged_images(root: Path, old_md5: str, new_md5: str) -> set[str]:
    """Image files with the same md5 in both data versions: validation need not decode them again."""
    old, new = manifest(root, old_md5), manifest(root, new_md5)
    return {p for p, m in new.items() if old.get(p) == m}


@dataclass
class ReindexPlan:
    """What a reindex changes: the diff against the products in the served table, what must be embedded, the
    new table's name, and the recall of the last full build (the drift policy's reference)."""

    champion: Champion
    data_md5: str
    diff: CatalogDiff
    todo: pd.DataFrame
    new_table: str
    fresh_recall: float | None

    @property
    def base(self) -> dict:
        return self.champion.index


def plan_reindex(s: Settings, champ: Champion, data_md5: str, catalog: pd.DataFrame) -> ReindexPlan:
    """Diff the validated `catalog` against the data version the served index reflects (only the products it
    holds), and list the products to embed: added ones and ones whose image changed."""
    idx = champ.index
    db = connect(idx["uri"])
    indexed = set(table_ids(db.open_table(idx["table"])))
    old_files, new_files = manifest(s.root, idx["data_md5"]), manifest(s.root, data_md5)
    old = catalog_at(s.root, old_files)
    diff = diff_catalogs(old[old["product_id"].isin(indexed)], catalog, old_files, new_files)
    todo = catalog.set_index("product_id", drop=False).loc[diff.to_embed].reset_index(drop=True)
    fresh = idx.get("fresh_recall_at_10") or champ.metrics.get("index_recall_at_10")
    return ReindexPlan(champ, data_md5, diff, todo, next_table_name(db.list_tables().tables, idx["table"]), fresh)


def publish_reindex(s: Settings, plan: ReindexPlan, applied: Applied, push: bool = True) -> dict:
    """DVC-track the new table, verify it as the champion would be verified, then switch in one tag write.
    On any failure the new table is removed: nothing unpublished is left behind, and what is served is unchanged."""
    idx, new_name = plan.base, plan.new_table
    try:
        tracked = track_dir(s.root, s.dvc_remote_url, table_dir(idx["uri"], new_name), push=push)
        if tracked != applied.info.fingerprint:
            raise RuntimeError(
                f"DVC recorded md5 {tracked} for {new_name}, but it was built with {applied.info.fingerprint}"
            )
        record = index_record(
            applied.info,
            plan.data_md5,
            built="full" if applied.rebuilt else "incremental",
            base_table=idx["table"],
            changes_since_build=applied.changes_since_build,
            recall_at_10=applied.recall_at_10,
            fresh_recall_at_10=applied.recall_at_10 if applied.rebuilt else plan.fresh_recall,
            reindexed_at=now(),
            diff=plan.diff.as_dict(),
        )
        champ = plan.champion
        candidate = Champion(champ.name, champ.version, champ.tags | {"index": json.dumps(record)}, champ.source)
        if problems := index_problems(candidate):
            raise IndexMismatch(f"the updated index {new_name} does not verify: " + "; ".join(problems))
        current = resolve_champion(s)
        if current.version != champ.version or current.index["table"] != idx["table"]:
            raise RuntimeError(
                f"the champion changed during the reindex (now v{current.version}, {current.index['table']}): "
                f"{new_name} is not published; run the reindex again"
            )
        c = registry.client(s.tracking_uri)
        history = json.loads(champ.tags.get("index_history") or "[]")[-(INDEX_HISTORY - 1) :]
        history.append({k: idx.get(k) for k in ("table", "version", "fingerprint", "data_md5", "built")})
        registry.set_tags(c, s.registered_model, champ.version, {"index_history": history})
        registry.set_tags(c, s.registered_model, champ.version, {"index": record})  # one write: the switch
        return record
    except BaseException:
        shutil.rmtree(table_dir(idx["uri"], new_name), ignore_errors=True)
        (table_dir(idx["uri"], new_name).parent / f"{new_name}.lance.dvc").unlink(missing_ok=True)
        raise


def reindex_summary(plan: ReindexPlan, applied: Applied, record: dict) -> str:
    """The markdown the Prefect UI shows for a published reindex."""
    base = plan.base
    return (
        f"## {plan.champion.name} v{plan.champion.version}: {base['table']} -> {plan.new_table}\n\n"
        f"data `{base['data_md5']}` -> `{plan.data_md5}`\n\n| change | products |\n|---|---|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in plan.diff.as_dict().items())
        + f"\n\nANN: {applied.reason}; recall@10 vs exact {applied.recall_at_10}; index seconds {applied.seconds}"
    )


plan_reindex_task = stage(plan_reindex, name="plan-reindex")
publish_reindex_task = stage(publish_reindex, name="publish-index")
