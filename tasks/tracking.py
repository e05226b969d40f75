"""The MLflow run of a retrain as one context manager: started with its parameters, given a scratch folder,
and ended FINISHED, or FAILED with the registered version marked `failed` (the reason recorded) when the body
raises. The steps log through it, so the flow only names them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lensflow.core import registry
from lensflow.core.settings import Settings
from tasks import stage


@dataclass
class TrackedRun:
    """One MLflow run of model `name` and what it registered."""

    c: object  # MlflowClient
    name: str
    run_id: str
    work: Path  # scratch folder, removed when the run ends
    version: int | None = None

    def log_metrics(self, metrics: dict, step: int = 0, prefix: str = "") -> None:
        registry.log_metrics(self.c, self.run_id, {f"{prefix}{k}": v for k, v in metrics.items()}, step=step)

    def log_artifacts(self, folder: Path, path: str) -> None:
        self.c.log_artifacts(self.run_id, str(folder), path)

    def log_validation(self, checked) -> None:
        """The validated catalog's counts and its validation report (a tasks.validate.ValidationResult)."""
        self.log_metrics({"catalog_rows": checked.n_rows, "quarantined_rows": checked.n_quarantined})
        self.log_artifacts(checked.report_path.parent, "validation")

    def log_training(self, trained) -> None:
        """Per-epoch history, the resolved training parameters and timings (a tasks.train.TrainResult)."""
        for h in trained.history:
            self.log_metrics({k: v for k, v in h.items() if k not in ("epoch", "seconds")}, h["epoch"], "train.")
        registry.log_params(self.c, self.run_id, {f"train.{k}": v for k, v in trained.params.items()})
        self.log_metrics(
            {
                "train_seconds": trained.seconds,
                "feature_seconds": trained.feature_seconds,
                "feature_cache_hit": float(trained.feature_cache_hit),
            }
        )

    def register(self, model_dir: Path, tags: dict) -> int:
        """Log the model folder and register it as a new version (status `building`)."""
        self.log_artifacts(model_dir, "model")
        source = f"{self.c.get_run(self.run_id).info.artifact_uri}/model"
        self.version = registry.register_version(self.c, self.name, self.run_id, source, {"status": "building", **tags})
        return self.version

    def tag_version(self, tags: dict) -> None:
        registry.set_tags(self.c, self.name, self.version, tags)


@contextmanager
def mlflow_run(s: Settings, c, run_name: str, params: dict) -> Iterator[TrackedRun]:
    """Start the run; on success end it FINISHED, on any exception mark it FAILED (and its version `failed`)."""
    s.path(s.cache_dir).mkdir(parents=True, exist_ok=True)
    run_id = registry.start_run(c, s.mlflow_experiment, s.artifact_location, run_name, params)
    run = TrackedRun(c, s.registered_model, run_id, Path(tempfile.mkdtemp(prefix="retrain-", dir=s.path(s.cache_dir))))
    try:
        yield run
        c.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        if run.version is not None:
            run.tag_version({"status": "failed", "failed_reason": f"{type(exc).__name__}: {exc}"[:4000]})
        c.set_terminated(run_id, "FAILED")
        raise
    finally:
        shutil.rmtree(run.work, ignore_errors=True)


register_task = stage(TrackedRun.register, name="register-model-version")
