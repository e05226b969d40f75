"""The evaluate flow: how a registered version (default: the champion) does on the catalog as it is now.

No training: the version's encoder embeds the current catalog (cached tower features) and is evaluated
on the standard eval set; the result is compared with what was measured when it was registered, logged
as an MLflow run and recorded on the version (`last_evaluation`)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from lensflow.core import registry
from lensflow.core.champion import resolve_version
from lensflow.flows.common import begin
from lensflow.tasks.baseline import DEFAULT_SHOPPER_QUERIES, EvalPlan, record_evaluation_task, version_on_eval_set_task
from lensflow.tasks.robustness import DEFAULT_COMBINED, DEFAULT_PER_CONDITION
from lensflow.tasks.validate import report_dir, validate_catalog_task
from lensflow.tasks.versioning import version_data_task


class EvaluateParams(BaseModel):
    """Parameters of an evaluation (rendered as a form in the Prefect UI)."""

    version: int | None = Field(None, ge=1, description="model version to evaluate; empty: the champion")
    shopper_queries: int | None = Field(
        DEFAULT_SHOPPER_QUERIES, ge=1, description="training-recipe shopper-photo queries (test products); empty: all"
    )
    heldout_photos: int = Field(DEFAULT_PER_CONDITION, ge=0, description="held-out shopper photos per single condition")
    heldout_combined: int = Field(
        DEFAULT_COMBINED, ge=1, description="held-out shopper photos with every condition at once"
    )
    max_bad_fraction: float | None = Field(
        None, ge=0, le=1, description="stop when more catalog rows than this fail validation; empty: the policy's"
    )
    progress: bool = Field(True, description="show progress bars")


@flow(name="evaluate", log_prints=True)
def evaluate(params: EvaluateParams = EvaluateParams()) -> dict:
    s, log = begin(), get_run_logger()
    target = resolve_version(s, params.version)
    data = version_data_task(s.root, s.data_path, s.dvc_remote_url, push=False)
    checked = validate_catalog_task(
        s.data_path, report_dir(s, data.md5), max_bad_fraction=params.max_bad_fraction, progress=params.progress
    )
    c = registry.client(s.tracking_uri)
    mv = c.get_model_version(s.registered_model, str(target.version))
    plan = EvalPlan(params.shopper_queries, params.heldout_photos, params.heldout_combined, params.progress)
    measured = version_on_eval_set_task(s, mv, checked.valid, data.md5, plan).result
    recorded = record_evaluation_task(s, c, target, data.md5, measured)
    log.info("v%d on %s: %s", target.version, data.md5, recorded["headline"])
    return {
        "version": target.version,
        "data_md5": data.md5,
        "eval_set_md5": measured.eval_set_md5,
        "same_eval_set": recorded["same_eval_set"],
        "metrics": measured.metrics,
        "registered_metrics": target.metrics,
        "run_id": recorded["run_id"],
    }
