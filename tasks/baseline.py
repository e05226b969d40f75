"""The current champion measured on the challenger's evaluation set, so the gate compares like with like."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lensflow.core import registry
from lensflow.core.champion import Champion, model_dir
from lensflow.core.registry import CHAMPION, get_alias
from lensflow.core.settings import Settings
from lensflow.models.device import resolve_device
from lensflow.models.encoder import load_encoder
from lensflow.models.train import embed_inputs
from lensflow.tasks import stage
from lensflow.tasks.evaluate import EvalResult, Gallery, evaluate, evaluate_vectors
from lensflow.tasks.helpers.approval import now
from lensflow.tasks.helpers.features import suffix_inputs
from lensflow.tasks.helpers.report import HEADLINE, comparison_table
from lensflow.tasks.robustness import DEFAULT_COMBINED, DEFAULT_PER_CONDITION, add_robustness
from lensflow.tasks.shopper import shopper_queries

DEFAULT_SHOPPER_QUERIES = 2000  # training-recipe shopper-photo queries (test products) per evaluation


@dataclass
class EvalPlan:
    """How many queries of each kind an evaluation runs (the retrain and evaluate flows' parameters)."""

    shopper_queries: int | None = DEFAULT_SHOPPER_QUERIES
    heldout_photos: int = DEFAULT_PER_CONDITION
    heldout_combined: int = DEFAULT_COMBINED
    progress: bool = True


@dataclass
class Baseline:
    version: int
    result: EvalResult


def champion_on_eval_set(s: Settings, c, catalog: pd.DataFrame, data_md5: str, plan: EvalPlan) -> Baseline | None:
    """The champion evaluated exactly as the challenger is, on this catalog. None when there is no champion yet."""
    mv = get_alias(c, s.registered_model, CHAMPION)
    return None if mv is None else version_on_eval_set(s, mv, catalog, data_md5, plan)


def version_on_eval_set(s: Settings, mv, catalog: pd.DataFrame, data_md5: str, plan: EvalPlan) -> Baseline:
    """Load a model version's encoder, embed this catalog with it (frozen-tower features come from the
    cache) and evaluate it on the standard eval set of this catalog."""
    data_dir, cache_dir, workers = s.data_path, s.path(s.cache_dir), s.loader_workers
    cache_dir.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(model_dir(mv.source), device=resolve_device(s.device))
    split, inputs, _ = suffix_inputs(
        encoder, catalog, data_dir, cache_dir, data_md5, workers=workers, progress=plan.progress
    )
    vectors = embed_inputs(encoder, split.suffix, inputs).numpy()
    gallery = Gallery(
        catalog["product_id"].to_numpy(str), catalog["category"].to_numpy(str), catalog["split"].to_numpy(str), vectors
    )
    result = measure(s, encoder, gallery, catalog, data_md5, plan)
    return Baseline(int(mv.version), result)


def measure(
    s: Settings, encoder, gallery: Gallery, catalog: pd.DataFrame, data_md5: str, plan: EvalPlan, table=None
) -> EvalResult:
    """The standard eval set of this catalog, the same for every version: training-recipe shopper photos, text
    and image queries over `gallery` (plus the ANN recall of `table` when given), then the held-out photos."""
    cache = s.path(s.cache_dir)
    shopper = shopper_queries(
        encoder,
        catalog,
        s.data_path,
        cache,
        data_md5,
        limit=plan.shopper_queries,
        workers=s.loader_workers,
        progress=plan.progress,
    )
    result = (
        evaluate(encoder, table, shopper, gallery=gallery)
        if table is not None
        else evaluate_vectors(encoder, gallery, shopper)
    )
    return add_robustness(
        result,
        encoder,
        gallery,
        catalog,
        s.data_path,
        plan.heldout_photos,
        plan.heldout_combined,
        cache_dir=cache,
        data_md5=data_md5,
        progress=plan.progress,
    )


def record_evaluation(s: Settings, c, target: Champion, data_md5: str, measured: EvalResult) -> dict:
    """An evaluation of a registered version on today's catalog: an MLflow run, the version's
    `last_evaluation` tag, and the comparison with what was measured at registration (a Prefect artifact)."""
    from prefect.artifacts import create_markdown_artifact

    run_id = registry.start_run(
        c,
        "lensflow-evaluate",
        s.artifact_location,
        f"evaluate-v{target.version}-{data_md5[:8]}",
        {"model_version": target.version, "data_md5": data_md5, "eval_set_md5": measured.eval_set_md5},
    )
    registry.log_metrics(c, run_id, measured.metrics)
    c.set_terminated(run_id, "FINISHED")
    same_set = measured.eval_set_md5 == target.tags.get("eval_set_md5")
    headline = {k: measured.metrics[k] for k in HEADLINE if k in measured.metrics}
    last = {"at": now(), "run_id": run_id, "data_md5": data_md5, "eval_set_md5": measured.eval_set_md5}
    registry.set_tags(c, s.registered_model, target.version, {"last_evaluation": last | {"metrics": headline}})
    label = "at registration" + ("" if same_set else " (another eval set)")
    create_markdown_artifact(
        key="evaluation",
        description=f"{s.registered_model} v{target.version} on the current catalog",
        markdown=f"## {s.registered_model} v{target.version} on the catalog {data_md5}\n\n"
        f"registered on data `{target.tags.get('data_md5')}`; eval set now `{measured.eval_set_md5}`"
        f"{'' if same_set else ' (differs from the one at registration)'}\n\n"
        + comparison_table(measured.metrics, target.metrics, label, "now"),
    )
    return {"run_id": run_id, "same_eval_set": same_set, "headline": {k: round(v, 4) for k, v in headline.items()}}


record_evaluation_task = stage(record_evaluation, name="record-evaluation")
version_on_eval_set_task = stage(version_on_eval_set, name="evaluate-version")
