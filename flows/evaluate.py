"""The evaluate flow: how a registered version (default: the champion) does on the catalog as it is now.

No training: the version's encoder embeds the current catalog (cached tower features) and is evaluated
on the standard eval set; the result is compared with what was measured when it was registered, logged
as an MLflow run and recorded on the version (`last_evaluation`)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from lensflow.redact import install_log_redaction
from lensflow.settings import get_settings
from tasks import registry
from tasks.approval import now
from tasks.baseline import version_on_eval_set_task
from tasks.champion import resolve_version
from tasks.report import HEADLINE, comparison_table
from tasks.robustness import DEFAULT_COMBINED, DEFAULT_PER_CONDITION
from tasks.validate import MAX_BAD_FRACTION, validate_catalog_task
from tasks.versioning import version_data_task


class EvaluateParams(BaseModel):
    """Parameters of an evaluation (rendered as a form in the Prefect UI)."""

    version: int | None = Field(None, ge=1, description="model version to evaluate; empty: the champion")
    shopper_queries: int | None = Field(
        2000, ge=1, description="training-recipe shopper-photo queries (test products); empty: all"
    )
    heldout_photos: int = Field(DEFAULT_PER_CONDITION, ge=0, description="held-out shopper photos per single condition")
    heldout_combined: int = Field(
        DEFAULT_COMBINED, ge=1, description="held-out shopper photos with every condition at once"
    )
    max_bad_fraction: float = Field(
        MAX_BAD_FRACTION, ge=0, le=1, description="stop when more catalog rows than this fail validation"
    )
    progress: bool = Field(True, description="show progress bars")


@flow(name="evaluate", log_prints=True)
def evaluate(params: EvaluateParams = EvaluateParams()) -> dict:
    s = get_settings()
    install_log_redaction()  # worker-started runs do not pass through lensflow.cli.main
    log = get_run_logger()
    target = resolve_version(s, params.version)
    data = version_data_task(s.root, s.data_path, s.dvc_remote_url, push=False)
    report_dir = s.path(s.reports_dir) / "validation" / data.md5.removesuffix(".dir")
    checked = validate_catalog_task(
        s.data_path, report_dir, max_bad_fraction=params.max_bad_fraction, progress=params.progress
    )
    c = registry.client(s.tracking_uri)
    mv = c.get_model_version(s.registered_model, str(target.version))
    s.path(s.cache_dir).mkdir(parents=True, exist_ok=True)
    measured = version_on_eval_set_task(
        mv,
        checked.valid,
        s.data_path,
        s.path(s.cache_dir),
        data.md5,
        params.shopper_queries,
        s.torch_device(),
        s.loader_workers,
        params.progress,
        (params.heldout_photos, params.heldout_combined),
    ).result
    run_id = registry.start_run(
        c,
        "lensflow-evaluate",
        s.artifact_location,
        f"evaluate-v{target.version}-{data.md5[:8]}",
        {"model_version": target.version, "data_md5": data.md5, "eval_set_md5": measured.eval_set_md5},
    )
    registry.log_metrics(c, run_id, measured.metrics)
    c.set_terminated(run_id, "FINISHED")
    same_set = measured.eval_set_md5 == target.tags.get("eval_set_md5")
    registry.set_tags(
        c,
        s.registered_model,
        target.version,
        {
            "last_evaluation": {
                "at": now(),
                "run_id": run_id,
                "data_md5": data.md5,
                "eval_set_md5": measured.eval_set_md5,
                "metrics": {k: measured.metrics[k] for k in HEADLINE if k in measured.metrics},
            }
        },
    )
    label = "at registration" + ("" if same_set else " (another eval set)")
    create_markdown_artifact(
        key="evaluation",
        description=f"{s.registered_model} v{target.version} on the current catalog",
        markdown=f"## {s.registered_model} v{target.version} on the catalog {data.md5}\n\n"
        f"registered on data `{target.tags.get('data_md5')}`; eval set now `{measured.eval_set_md5}`"
        f"{'' if same_set else ' (differs from the one at registration)'}\n\n"
        + comparison_table(measured.metrics, target.metrics, label, "now"),
    )
    log.info(
        "v%d on %s: %s",
        target.version,
        data.md5,
        {k: round(measured.metrics[k], 4) for k in HEADLINE if k in measured.metrics},
    )
    return {
        "version": target.version,
        "data_md5": data.md5,
        "eval_set_md5": measured.eval_set_md5,
        "same_eval_set": same_set,
        "metrics": measured.metrics,
        "registered_metrics": target.metrics,
        "run_id": run_id,
    }
