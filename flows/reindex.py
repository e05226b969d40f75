"""The reindex flow: bring the champion's index up to a new catalog version without retraining.

version data -> validate (only new or changed images are decoded) -> diff against the data version the
index reflects -> embed only added and image-changed products with the champion -> enrich them (predicted
category, colour tags) -> apply to a copy of the table (new name) with an incremental ANN update, or a full
rebuild when the drift policy says so -> DVC-track it -> verify -> record it on the champion's version in one
tag write. The served table is never modified; the service swaps to the new one when the tag changes.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from lensflow.core.champion import model_dir
from lensflow.flows.common import begin, writing
from lensflow.flows.shard import embed_catalog
from lensflow.tasks import stage_seconds
from lensflow.tasks.enrich import enrich_changes_task
from lensflow.tasks.reindex import (
    IndexPolicy,
    apply_changes_task,
    plan_reindex_task,
    publish_reindex_task,
    reindex_summary,
    served_base,
    unchanged_images,
)
from lensflow.tasks.validate import report_dir, validate_catalog_task
from lensflow.tasks.versioning import version_data_task


class ReindexParams(BaseModel):
    """Parameters of a reindex run (rendered as a form in the Prefect UI)."""

    policy: IndexPolicy = Field(default_factory=IndexPolicy)
    max_bad_fraction: float | None = Field(
        None, ge=0, le=1, description="stop when more catalog rows than this fail validation; empty: the policy's"
    )
    push_data: bool = Field(True, description="dvc push the catalog and the new index to the configured remote")
    progress: bool = Field(True, description="show progress bars")


@flow(name="reindex", log_prints=True)
def reindex(params: ReindexParams = ReindexParams()) -> dict:
    s, log = begin(), get_run_logger()
    with writing(s, "reindex"):
        champ = served_base(s)
        base = champ.index
        data = version_data_task(s.root, s.data_path, s.dvc_remote_url, push=params.push_data)
        summary = {
            "model_version": champ.version,
            "base_table": base["table"],
            "base_data_md5": base["data_md5"],
            "data_md5": data.md5,
        }
        if data.md5 == base["data_md5"]:
            log.info("the index of v%d already reflects data %s: nothing to do", champ.version, data.md5)
            return summary | {"outcome": "unchanged"}
        checked = validate_catalog_task(
            s.data_path,
            report_dir(s, data.md5),
            max_bad_fraction=params.max_bad_fraction,
            progress=params.progress,
            known_good_images=unchanged_images(s.root, base["data_md5"], data.md5),
        )
        plan = plan_reindex_task(s, champ, data.md5, checked.valid)
        log.info("catalog %s -> %s: %s", base["data_md5"], data.md5, plan.diff.as_dict())
        vectors = embed_catalog(s, model_dir(champ.source), plan.todo, progress=params.progress)
        enrichment = enrich_changes_task(
            base["uri"], base["table"], checked.valid, plan.todo, vectors, s.data_path, params.progress
        )
        applied = apply_changes_task(
            base["uri"],
            base["table"],
            plan.new_table,
            checked.valid,
            plan.diff,
            vectors,
            params.policy,
            int(base.get("changes_since_build") or 0),
            plan.fresh_recall,
            enrichment,
        )
        record = publish_reindex_task(s, plan, applied, params.push_data)
    create_markdown_artifact(
        key="reindex",
        markdown=reindex_summary(plan, applied, record),
        description=f"{champ.name} v{champ.version}: index updated for the new catalog",
    )
    log.info("v%d now serves %s (%s)", champ.version, plan.new_table, applied.reason)
    return summary | {
        "outcome": "reindexed",
        "table": plan.new_table,
        "diff": plan.diff.as_dict(),
        "embedded": len(plan.todo),
        "rows": applied.info.rows,
        "rebuilt": applied.rebuilt,
        "reason": applied.reason,
        "recall_at_10": applied.recall_at_10,
        "fresh_recall_at_10": plan.fresh_recall,
        "index": record,
        "index_seconds": applied.seconds,
        "stage_seconds": stage_seconds(),  # Prefect's task-run times
    }
