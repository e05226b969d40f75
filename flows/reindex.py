"""The reindex flow: bring the champion's index up to a new catalog version without retraining.

version data -> validate (only new or changed images are decoded) -> diff against the data version the
index reflects -> embed only added and image-changed products with the champion -> apply to a copy of
the table (new name) with an incremental ANN update, or a full rebuild when the drift policy says so ->
DVC-track it -> verify -> record it on the champion's version in one tag write. The served table is
never modified; the service swaps to the new one when the tag changes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time

import numpy as np
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from lensflow.redact import install_log_redaction
from lensflow.settings import get_settings
from models.encoder import load_encoder
from tasks import registry
from tasks.approval import now
from tasks.champion import Champion, IndexMismatch, index_problems, model_dir, resolve_champion, restore_index
from tasks.diff import catalog_at, diff_catalogs, manifest
from tasks.embed import embed_catalog_task
from tasks.index import index_record, table_dir
from tasks.lock import project_lock
from tasks.recover import recover
from tasks.reindex import IndexPolicy, apply_changes_task, next_table_name
from tasks.shard import embed_sharded, shard_vectors
from tasks.validate import MAX_BAD_FRACTION, validate_catalog_task
from tasks.versioning import track_dir_task, version_data_task


class ReindexParams(BaseModel):
    """Parameters of a reindex run (rendered as a form in the Prefect UI)."""

    policy: IndexPolicy = Field(default_factory=IndexPolicy)
    max_bad_fraction: float = Field(
        MAX_BAD_FRACTION, ge=0, le=1, description="stop when more catalog rows than this fail validation"
    )
    push_data: bool = Field(True, description="dvc push the catalog and the new index to the configured remote")
    progress: bool = Field(True, description="show progress bars")


@flow(name="reindex", log_prints=True)
def reindex(params: ReindexParams = ReindexParams()) -> dict:
    s = get_settings()
    install_log_redaction()  # worker-started runs do not pass through lensflow.cli.main
    with project_lock(s.lock_dir, "reindex"):
        recover(
            registry.client(s.tracking_uri),
            s.registered_model,
            s.mlflow_experiment,
            s.lancedb_path,
            get_run_logger().warning,
        )
        return update_index(s, params)


def update_index(s, params: ReindexParams) -> dict:
    """The reindex itself, under the project's writer lock."""
    log = get_run_logger()
    took: dict[str, float] = {}
    t = time.perf_counter()
    champ = resolve_champion(s)
    idx = champ.index
    if not idx["table"] or "://" in (idx["uri"] or ""):
        raise ValueError(f"v{champ.version} has no local LanceDB index to update ({idx['uri']})")
    restore_index(s, champ)
    if problems := index_problems(champ):
        raise IndexMismatch(
            f"the served index of v{champ.version} does not verify, so it is not a base to update: "
            + "; ".join(problems)
        )
    data = version_data_task(s.root, s.data_path, s.dvc_remote_url, push=params.push_data)
    took["version_data"] = time.perf_counter() - t
    summary = {
        "model_version": champ.version,
        "base_table": idx["table"],
        "base_data_md5": idx["data_md5"],
        "data_md5": data.md5,
    }
    if data.md5 == idx["data_md5"]:
        log.info("the index of v%d already reflects data %s: nothing to do", champ.version, data.md5)
        return summary | {"outcome": "unchanged"}

    t = time.perf_counter()
    old_files, new_files = manifest(s.root, idx["data_md5"]), manifest(s.root, data.md5)
    report_dir = s.path(s.reports_dir) / "validation" / data.md5.removesuffix(".dir")
    checked = validate_catalog_task(
        s.data_path,
        report_dir,
        max_bad_fraction=params.max_bad_fraction,
        progress=params.progress,
        known_good_images={p for p, m in new_files.items() if old_files.get(p) == m},
    )
    took["validate"] = time.perf_counter() - t

    t = time.perf_counter()
    import lancedb

    db = lancedb.connect(idx["uri"])
    base = db.open_table(idx["table"])
    indexed = set(
        base.search().select(["product_id"]).limit(max(1, base.count_rows())).to_arrow()["product_id"].to_pylist()
    )
    old = catalog_at(s.root, old_files)
    diff = diff_catalogs(old[old["product_id"].isin(indexed)], checked.valid, old_files, new_files)
    took["diff"] = time.perf_counter() - t
    log.info("catalog %s -> %s: %s", idx["data_md5"], data.md5, diff.as_dict())

    t = time.perf_counter()
    source = model_dir(champ.source)
    todo = checked.valid.set_index("product_id", drop=False).loc[diff.to_embed].reset_index(drop=True)
    if len(todo) and s.embed_runner == "dask":  # slices on Dask workers (tasks/shard.py)
        s.path(s.cache_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="shards-", dir=s.path(s.cache_dir)) as out:
            shards = embed_sharded(
                source,
                todo,
                s.data_path,
                out,
                s.embed_shards,
                s.dask_address,
                device=s.device,
                progress=params.progress,
            )
            vectors = np.concatenate(list(shard_vectors(shards, todo)))
    else:  # the encoder is loaded here only: Dask workers load their own
        encoder = load_encoder(source, device=s.torch_device())
        vectors = (
            embed_catalog_task(encoder, todo, s.data_path, loader_workers=s.loader_workers, progress=params.progress)
            if len(todo)
            else np.zeros((0, encoder.embed_dim), dtype=np.float32)
        )
    took["embed"] = time.perf_counter() - t

    t = time.perf_counter()
    new_name = next_table_name(db.list_tables().tables, idx["table"])
    fresh = idx.get("fresh_recall_at_10") or champ.metrics.get("index_recall_at_10")
    applied = apply_changes_task(
        idx["uri"],
        idx["table"],
        new_name,
        checked.valid,
        diff,
        vectors,
        params.policy,
        int(idx.get("changes_since_build") or 0),
        fresh,
    )
    took["index"] = time.perf_counter() - t
    try:
        record = publish(s, champ, idx, new_name, applied, data.md5, fresh, diff, params, took)
    except BaseException:
        shutil.rmtree(table_dir(idx["uri"], new_name), ignore_errors=True)  # unpublished: leave nothing behind
        (table_dir(idx["uri"], new_name).parent / f"{new_name}.lance.dvc").unlink(missing_ok=True)
        raise
    took = {k: round(v, 2) for k, v in took.items()}
    create_markdown_artifact(
        key="reindex",
        description=f"{s.registered_model} v{champ.version}: index updated for the new catalog",
        markdown=f"## {s.registered_model} v{champ.version}: {idx['table']} -> {new_name}\n\n"
        f"data `{idx['data_md5']}` -> `{data.md5}`\n\n| change | products |\n|---|---|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in diff.as_dict().items())
        + f"\n\nANN: {applied.reason}; recall@10 vs exact {applied.recall_at_10}; stage seconds {took}",
    )
    log.info("v%d now serves %s (%s)", champ.version, new_name, applied.reason)
    return summary | {
        "outcome": "reindexed",
        "table": new_name,
        "diff": diff.as_dict(),
        "embedded": len(todo),
        "rows": applied.info.rows,
        "rebuilt": applied.rebuilt,
        "reason": applied.reason,
        "recall_at_10": applied.recall_at_10,
        "fresh_recall_at_10": fresh,
        "index": record,
        "stage_seconds": took,
        "index_seconds": applied.seconds,
    }


def publish(
    s, champ: Champion, idx: dict, new_name: str, applied, data_md5: str, fresh, diff, params: ReindexParams, took: dict
) -> dict:
    """DVC-track the new table, verify it as the champion would be verified, then switch in one tag write."""
    t = time.perf_counter()
    tracked = track_dir_task(s.root, s.dvc_remote_url, table_dir(idx["uri"], new_name), push=params.push_data)
    if tracked != applied.info.fingerprint:
        raise RuntimeError(
            f"DVC recorded md5 {tracked} for {new_name}, but it was built with {applied.info.fingerprint}"
        )
    took["track"] = time.perf_counter() - t
    record = index_record(
        applied.info,
        data_md5,
        built="full" if applied.rebuilt else "incremental",
        base_table=idx["table"],
        changes_since_build=applied.changes_since_build,
        recall_at_10=applied.recall_at_10,
        fresh_recall_at_10=applied.recall_at_10 if applied.rebuilt else fresh,
        reindexed_at=now(),
        diff=diff.as_dict(),
    )
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
    history = json.loads(champ.tags.get("index_history") or "[]")[-19:]
    history.append({k: idx.get(k) for k in ("table", "version", "fingerprint", "data_md5", "built")})
    registry.set_tags(c, s.registered_model, champ.version, {"index_history": history})
    registry.set_tags(c, s.registered_model, champ.version, {"index": record})  # one write: the switch
    return record
