"""The MLflow run of a retrain as one context manager: started with its parameters, given a scratch folder,
and ended FINISHED, or FAILED with the registered version marked `failed` (the reason recorded) when the body
raises. The steps log through it, so the flow only names them."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lensflow.core import registry
from lensflow.core.settings import Settings
from lensflow.tasks import stage


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
        """Log the encoder as an MLflow pyfunc model (the self-contained folder inside it) and register it as a
        new version (status `building`)."""
        self.log_artifacts(save_pyfunc(model_dir, self.work / "pyfunc"), "model")
        source = f"{self.c.get_run(self.run_id).info.artifact_uri}/model"
        self.version = registry.register_version(self.c, self.name, self.run_id, source, {"status": "building", **tags})
        return self.version

    def tag_version(self, tags: dict) -> None:
        registry.set_tags(self.c, self.name, self.version, tags)


def save_pyfunc(encoder_dir: Path, path: Path) -> Path:
    """Write the pyfunc model of `encoder_dir` at `path`: MLflow "models from code", the code being
    serving/pyfunc.py (copied into the model, run when it loads), the encoder directory its `encoder` artifact,
    with the signature photo bytes or text in, embeddings out."""
    import importlib.util

    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", "image", required=False), ColSpec("string", "text", required=False)]),
        outputs=Schema([ColSpec(Array(Array("float")), "embeddings")]),
    )
    code = importlib.util.find_spec("lensflow.serving.pyfunc").origin  # a file MLflow copies, not an import of serving
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no input example": the signature is given explicitly
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=code,
            artifacts={"encoder": str(encoder_dir)},
            signature=signature,
            pip_requirements=["lensflow"],  # the code imports lensflow: serve with --env-manager local
        )
    return path


def system_metrics(run_id: str, tracking_uri: str, interval_s: float = 10.0):
    """MLflow's system metrics (CPU, memory, disk, network, GPU where present) sampled into the run every
    `interval_s`, as `system/...` metrics; None where MLflow cannot monitor this machine."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, tracking_uri=tracking_uri)
        monitor.start()
        return monitor
    except Exception:  # psutil missing, an unsupported platform: the run goes on without them
        return None


@contextmanager
def mlflow_run(s: Settings, c, run_name: str, params: dict) -> Iterator[TrackedRun]:
    """Start the run; on success end it FINISHED, on any exception mark it FAILED (and its version `failed`)."""
    s.path(s.cache_dir).mkdir(parents=True, exist_ok=True)
    run_id = registry.start_run(c, s.mlflow_experiment, s.artifact_location, run_name, params)
    run = TrackedRun(c, s.registered_model, run_id, Path(tempfile.mkdtemp(prefix="retrain-", dir=s.path(s.cache_dir))))
    monitor = system_metrics(run_id, s.tracking_uri)
    try:
        yield run
        c.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        if run.version is not None:
            run.tag_version({"status": "failed", "failed_reason": f"{type(exc).__name__}: {exc}"[:4000]})
        c.set_terminated(run_id, "FAILED")
        raise
    finally:
        if monitor is not None:
            monitor.finish()
        shutil.rmtree(run.work, ignore_errors=True)


register_task = stage(TrackedRun.register, name="register-model-version")
