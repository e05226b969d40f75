"""The retrain flow: version data -> validate -> fine-tune -> register -> embed -> index -> evaluate (challenger and
champion on the same eval set) -> promote."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from pydantic import Field

from flows.promote import finish, review_and_promote, review_page
from lensflow.redact import install_log_redaction
from lensflow.settings import get_settings
from lensflow.storage import is_remote
from models.train import load_strategy
from tasks import registry
from tasks.baseline import champion_on_eval_set_task
from tasks.embed import embed_catalog_task
from tasks.evaluate import Gallery, evaluate_task
from tasks.index import QueryParams, build_index_task, connect, index_record, table_dir, table_name
from tasks.lock import project_lock
from tasks.promote import ReviewPolicy
from tasks.recover import recover
from tasks.report import write_report
from tasks.robustness import DEFAULT_COMBINED, DEFAULT_PER_CONDITION, add_robustness_task
from tasks.shard import embed_sharded, shard_vectors
from tasks.shopper import shopper_queries_task
from tasks.train import train_encoder_task
from tasks.validate import MAX_BAD_FRACTION, validate_catalog_task
from tasks.versioning import git_commit, track_dir_task, version_data_task


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
        2000, ge=1, description="training-recipe shopper-photo queries (test products); empty: all"
    )
    heldout_photos: int = Field(
        DEFAULT_PER_CONDITION,
        ge=0,
        description="held-out shopper photos per single condition "
        "(tasks/heldout_photos.py; 0: only the combined condition)",
    )
    heldout_combined: int = Field(
        DEFAULT_COMBINED, ge=1, description="held-out shopper photos with every condition at once (gated)"
    )
    max_bad_fraction: float = Field(
        MAX_BAD_FRACTION, ge=0, le=1, description="stop the run when more catalog rows than this fail validation"
    )
    ann_min_rows: int = Field(
        10_000, ge=1, description="build an IVF_PQ index when the table has at least this many rows"
    )
    nprobes: int = Field(20, ge=1, description="IVF partitions searched per query")
    refine_factor: int = Field(10, ge=1, description="re-rank refine_factor x k candidates with full vectors")
    push_data: bool = Field(True, description="dvc push the catalog and the index to the configured remote")
    progress: bool = Field(True, description="show progress bars")


@contextmanager
def timed(seconds: dict, stage: str):
    t0 = time.perf_counter()
    yield
    seconds[stage] = round(time.perf_counter() - t0, 2)


@flow(name="retrain", log_prints=True)
def retrain(params: RetrainParams = RetrainParams()) -> dict:
    s = get_settings()
    install_log_redaction()  # worker-started runs do not pass through lensflow.cli.main
    log = get_run_logger()
    if params.approval == "reviewer" and not s.reviewers:
        raise ValueError(
            "approval=reviewer but no reviewers are configured: set LENSFLOW_REVIEWERS (comma-separated names), "
            "or choose approval=auto-approve or approval=later"
        )
    took: dict[str, float] = {}
    with project_lock(s.lock_dir, "retrain"):  # released before the review: a paused run must not block others
        c = registry.client(s.tracking_uri)
        recover(c, s.registered_model, s.mlflow_experiment, s.lancedb_path, log.warning)
        with timed(took, "version_data"):
            data = version_data_task(s.root, s.data_path, s.dvc_remote_url, push=params.push_data)
        report_dir = s.path(s.reports_dir) / "validation" / data.md5.removesuffix(".dir")
        with timed(took, "validate"):
            checked = validate_catalog_task(
                s.data_path, report_dir, max_bad_fraction=params.max_bad_fraction, progress=params.progress
            )
        log.info(
            "catalog %s: %d rows, %d quarantined (%s)",
            data.md5,
            checked.n_rows,
            checked.n_quarantined,
            checked.quarantine_path,
        )

        s.path(s.cache_dir).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="retrain-", dir=s.path(s.cache_dir)))
        commit = git_commit(s.root)
        run_params = params.model_dump(exclude={"gate", "progress"}) | {
            "data_md5": data.md5,
            "git_commit": commit,
            "gate": params.gate.model_dump_json(),
        }
        run_id = registry.start_run(c, s.mlflow_experiment, s.artifact_location, f"retrain-{data.md5[:8]}", run_params)
        version = None
        try:
            registry.log_metrics(c, run_id, {"catalog_rows": checked.n_rows, "quarantined_rows": checked.n_quarantined})
            c.log_artifacts(run_id, str(report_dir), "validation")
            cfg = load_strategy(
                params.strategy,
                epochs=params.epochs,
                batch_size=params.batch_size,
                lr=params.lr,
                instance_weight=params.instance_weight,
                seed=params.seed,
            )
            cache = s.path(s.cache_dir)
            with timed(took, "fine_tune"):
                trained = train_encoder_task(
                    params.preset,
                    checked.valid,
                    s.data_path,
                    data.md5,
                    cache,
                    work / "model",
                    cfg,
                    device=s.torch_device(),
                    loader_workers=s.loader_workers,
                    progress=params.progress,
                )
            for h in trained.history:
                registry.log_metrics(
                    c, run_id, {f"train.{k}": v for k, v in h.items() if k not in ("epoch", "seconds")}, step=h["epoch"]
                )
            registry.log_params(c, run_id, {f"train.{k}": v for k, v in trained.params.items()})
            registry.log_metrics(
                c,
                run_id,
                {
                    "train_seconds": trained.seconds,
                    "feature_seconds": trained.feature_seconds,
                    "feature_cache_hit": float(trained.feature_cache_hit),
                },
            )
            with timed(took, "register"):
                c.log_artifacts(run_id, str(trained.model_dir), "model")
                source = f"{c.get_run(run_id).info.artifact_uri}/model"
                version = registry.register_version_task(
                    c,
                    s.registered_model,
                    run_id,
                    source,
                    {"status": "building", "data_md5": data.md5, "git_commit": commit, "run_id": run_id},
                )
            with timed(took, "embed"):
                if (
                    s.embed_runner == "dask"
                ):  # slices on Dask workers, each from the saved model; streamed into the index
                    shards = embed_sharded(
                        trained.model_dir,
                        checked.valid,
                        s.data_path,
                        work / "shards",
                        s.embed_shards,
                        s.dask_address,
                        device=s.device,
                        progress=params.progress,
                    )
                    vectors = shard_vectors(shards, checked.valid)
                else:
                    vectors = embed_catalog_task(
                        trained.encoder,
                        checked.valid,
                        s.data_path,
                        tower_features=trained.tower_features,
                        progress=params.progress,
                    )
            meta = {"model_name": s.registered_model, "model_version": version, "run_id": run_id, "data_md5": data.md5}
            with timed(took, "index"):
                index = build_index_task(
                    s.lancedb_path,
                    table_name(s.registered_model, version),
                    checked.valid,
                    vectors,
                    meta,
                    ann_min_rows=params.ann_min_rows,
                    query=QueryParams(params.nprobes, params.refine_factor),
                    dim=trained.encoder.embed_dim,
                )
                if not is_remote(
                    index.uri
                ):  # an object-store table is identified by its objects' ETags (table_fingerprint)
                    tracked = track_dir_task(
                        s.root, s.dvc_remote_url, table_dir(index.uri, index.table), push=params.push_data
                    )
                    if tracked != index.fingerprint:
                        raise RuntimeError(
                            f"DVC recorded md5 {tracked} for {index.table}, but it was built with {index.fingerprint}"
                        )
            table = connect(index.uri).open_table(index.table)
            with timed(took, "evaluate"):
                shopper = shopper_queries_task(
                    trained.encoder,
                    checked.valid,
                    s.data_path,
                    cache,
                    data.md5,
                    limit=params.shopper_queries,
                    workers=s.loader_workers,
                    progress=params.progress,
                )
                gallery = Gallery.from_table(table)
                result = evaluate_task(trained.encoder, table, shopper, gallery=gallery)
                result = add_robustness_task(
                    result,
                    trained.encoder,
                    gallery,
                    checked.valid,
                    s.data_path,
                    params.heldout_photos,
                    params.heldout_combined,
                    cache,
                    data.md5,
                    params.progress,
                )
                baseline = champion_on_eval_set_task(
                    c,
                    s.registered_model,
                    checked.valid,
                    s.data_path,
                    cache,
                    data.md5,
                    params.shopper_queries,
                    s.torch_device(),
                    s.loader_workers,
                    params.progress,
                    heldout=(params.heldout_photos, params.heldout_combined),
                )
            champ_version, champ = (baseline.version, baseline.result.metrics) if baseline else (None, None)
            registry.log_metrics(c, run_id, result.metrics)
            registry.log_metrics(
                c, run_id, {f"{m}.{_slug(cat)}": v for cat, ms in result.per_category.items() for m, v in ms.items()}
            )
            if baseline:
                registry.log_metrics(c, run_id, {f"champion.{k}": v for k, v in champ.items()})
            report = work / "eval"
            write_report(
                report,
                result,
                baseline.result if baseline else None,
                champ_version,
                checked.valid,
                s.data_path,
                {"index": index.as_dict()},
            )
            c.log_artifacts(run_id, str(report), "evaluation")
            registry.set_tags(
                c,
                s.registered_model,
                version,
                {
                    "index": index_record(index, data.md5),
                    "metrics": result.metrics,
                    "eval_set_md5": result.eval_set_md5,
                    "eval_bounds": result.bounds,
                    "status": "ready",
                    "compared_with": {"champion_version": champ_version, "metrics": champ} if baseline else {},
                },
            )
            c.set_registered_model_alias(s.registered_model, registry.CHALLENGER, str(version))
            registry.log_metrics(c, run_id, {f"stage_seconds.{k}": v for k, v in took.items()})
            c.set_terminated(run_id, "FINISHED")
        except BaseException as exc:
            if version is not None:
                registry.set_tags(
                    c,
                    s.registered_model,
                    version,
                    {"status": "failed", "failed_reason": f"{type(exc).__name__}: {exc}"[:4000]},
                )
            c.set_terminated(run_id, "FAILED")
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    champ_run = (
        registry.version_tags(c.get_model_version(s.registered_model, str(champ_version))).get("run_id")
        if baseline
        else None
    )
    page = review_page(
        s,
        c,
        version,
        run_id,
        result.metrics,
        champ_version,
        champ,
        champ_run,
        {
            "data md5": data.md5,
            "eval set md5": result.eval_set_md5,
            "strategy": cfg.strategy,
            "index": f"{index.table} v{index.version} ({index.fingerprint})",
        },
    )
    with timed(took, "promote"):
        outcome, decision = review_and_promote(s, c, version, page, result.metrics, champ_version, champ, params)
    summary = {
        "outcome": outcome,
        "version": version,
        "run_id": run_id,
        "data_md5": data.md5,
        "catalog_rows": checked.n_rows,
        "quarantined_rows": checked.n_quarantined,
        "index": index.as_dict(),
        "metrics": result.metrics,
        "champion_metrics": champ,
        "eval_set_md5": result.eval_set_md5,
        "strategy": cfg.strategy,
        "epochs_run": len(trained.history),
        "gate": decision,
        "train_seconds": round(trained.seconds, 1),
        "feature_seconds": round(trained.feature_seconds, 1),
        "stage_seconds": took,
    }
    log.info("retrain finished: %s", json.dumps({k: summary[k] for k in ("outcome", "version", "data_md5")}))
    return finish(outcome, version, summary)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")
