"""The retrain flow: version data -> validate -> fine-tune -> register -> embed -> enrich (predicted category,
colour tags) -> index -> evaluate (challenger and champion on the same eval set) -> review -> promote."""

from __future__ import annotations

import json
from typing import Literal

from prefect import flow, get_run_logger
from pydantic import Field

from lensflow.core import registry
from lensflow.core.index import IndexConfig
from lensflow.flows.common import begin, writing
from lensflow.flows.promote import finish
from lensflow.flows.shard import embed_catalog
from lensflow.models.device import resolve_device
from lensflow.models.train import load_strategy
from lensflow.tasks import stage_seconds
from lensflow.tasks.baseline import DEFAULT_SHOPPER_QUERIES, EvalPlan
from lensflow.tasks.challenger import evaluate_challenger_task
from lensflow.tasks.enrich import enrich_catalog_task
from lensflow.tasks.index import build_index_task
from lensflow.tasks.promote import ReviewPolicy
from lensflow.tasks.review import challenger_page, review_and_promote
from lensflow.tasks.robustness import DEFAULT_COMBINED, DEFAULT_PER_CONDITION
from lensflow.tasks.tracking import mlflow_run, register_task
from lensflow.tasks.train import train_encoder_task
from lensflow.tasks.validate import report_dir, validate_catalog_task
from lensflow.tasks.versioning import git_commit, version_data_task


class RetrainParams(ReviewPolicy):
    """Parameters of a retrain run (rendered as a form in the Prefect UI)."""

    preset: str = Field("lit-lite0-minilm", description="encoder preset in models/configs (or a JSON path)")
    strategy: Literal["heads", "partial", "full"] = Field(
        "heads",
        description="heads: frozen towers; partial: last blocks unfrozen; full: everything trained "
        "(settings from models/configs/strategies/<strategy>.json)",
    )
    epochs: int | None = Field(
        None, ge=1, description="maximum epochs (early stopping on the val split); empty: the strategy's"
    )
    batch_size: int | None = Field(None, ge=2, description="contrastive batch size; empty: the strategy's")
    lr: float | None = Field(
        None, gt=0, description="peak learning rate of the heads (warm-up + cosine); empty: the strategy's"
    )
    instance_weight: float | None = Field(
        None, ge=0, description="weight of the shopper-photo instance loss; empty: the strategy's"
    )
    seed: int = Field(0, description="random seed (heads init, batch order, augmentation draws)")
    shopper_queries: int | None = Field(
        DEFAULT_SHOPPER_QUERIES, ge=1, description="training-recipe shopper-photo queries (test products); empty: all"
    )
    heldout_photos: int = Field(
        DEFAULT_PER_CONDITION,
        ge=0,
        description="held-out shopper photos per single condition "
        "(tasks/helpers/heldout_photos.py; 0: only the combined condition)",
    )
    heldout_combined: int = Field(
        DEFAULT_COMBINED, ge=1, description="held-out shopper photos with every condition at once (gated)"
    )
    max_bad_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="stop the run when more catalog rows than this fail validation; empty: the policy's",
    )
    ann_min_rows: int | None = Field(
        None, ge=1, description="build an IVF_PQ index from this many rows; empty: the index preset's"
    )
    nprobes: int | None = Field(None, ge=1, description="IVF partitions searched per query; empty: the preset's")
    refine_factor: int | None = Field(
        None, ge=1, description="re-rank refine_factor x k candidates with full vectors; empty: the preset's"
    )
    push_data: bool = Field(True, description="dvc push the catalog and the index to the configured remote")
    progress: bool = Field(True, description="show progress bars")


STRATEGY_OVERRIDES = ("epochs", "batch_size", "lr", "instance_weight", "seed")


@flow(name="retrain", log_prints=True)
def retrain(params: RetrainParams = RetrainParams()) -> dict:
    s = begin(params.approval)
    cfg = load_strategy(params.strategy, **params.model_dump(include=set(STRATEGY_OVERRIDES)))
    index_config = IndexConfig.preset(
        min_rows=params.ann_min_rows, nprobes=params.nprobes, refine_factor=params.refine_factor
    )
    with writing(s, "retrain"):  # released before the review: a paused run must not block others
        data = version_data_task(s.root, s.data_path, s.dvc_remote_url, push=params.push_data)
        checked = validate_catalog_task(
            s.data_path, report_dir(s, data.md5), max_bad_fraction=params.max_bad_fraction, progress=params.progress
        )
        commit, c = git_commit(s.root), registry.client(s.tracking_uri)
        run_params = params.model_dump(exclude={"gate", "progress"}) | {
            "data_md5": data.md5,
            "git_commit": commit,
            "gate": params.gate.model_dump_json(),
        }
        with mlflow_run(s, c, f"retrain-{data.md5[:8]}", run_params) as run:
            run.log_validation(checked)
            trained = train_encoder_task(
                params.preset,
                checked.valid,
                s.data_path,
                data.md5,
                s.path(s.cache_dir),
                run.work / "model",
                cfg,
                device=resolve_device(s.device),
                loader_workers=s.loader_workers,
                progress=params.progress,
            )
            run.log_training(trained)
            version = register_task(
                run, trained.model_dir, {"data_md5": data.md5, "git_commit": commit, "run_id": run.run_id}
            )
            vectors = embed_catalog(
                s, trained.model_dir, checked.valid, run.work, params.progress, trained.encoder, trained.tower_features
            )
            enriched = enrich_catalog_task(checked.valid, s.data_path, vectors, params.progress)
            index = build_index_task(
                s,
                run,
                data.md5,
                enriched.catalog,
                enriched.vectors,
                trained.encoder.embed_dim,
                index_config,
                params.push_data,
            )
            plan = EvalPlan(params.shopper_queries, params.heldout_photos, params.heldout_combined, params.progress)
            compared = evaluate_challenger_task(s, run, trained.encoder, checked.valid, data.md5, index, plan)
    page = challenger_page(s, c, run.run_id, version, compared, data.md5, cfg.strategy, index)
    outcome, decision = review_and_promote(
        s, c, version, page, compared.result.metrics, compared.champion_version, compared.champion_metrics, params
    )
    summary = {
        "outcome": outcome,
        "version": version,
        "run_id": run.run_id,
        "data_md5": data.md5,
        "catalog_rows": checked.n_rows,
        "quarantined_rows": checked.n_quarantined,
        "index": index.as_dict(),
        "metrics": compared.result.metrics,
        "champion_metrics": compared.champion_metrics,
        "eval_set_md5": compared.result.eval_set_md5,
        "strategy": cfg.strategy,
        "epochs_run": len(trained.history),
        "gate": decision,
        "train_seconds": round(trained.seconds, 1),
        "feature_seconds": round(trained.feature_seconds, 1),
        "stage_seconds": stage_seconds(),  # Prefect's task-run times
    }
    get_run_logger().info(
        "retrain finished: %s", json.dumps({k: summary[k] for k in ("outcome", "version", "data_md5")})
    )
    return finish(outcome, version, summary)
