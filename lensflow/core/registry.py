"""MLflow tracking and registry: runs, model versions, the tags of the versioning invariant."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

TAG = "lensflow."
CHAMPION, CHALLENGER = "champion", "challenger"


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def start_run(c, experiment: str, artifact_location: str, run_name: str, params: dict) -> str:
    exp = c.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else c.create_experiment(experiment, artifact_location=artifact_location)
    run = c.create_run(exp_id, run_name=run_name, tags={"mlflow.runName": run_name})
    log_params(c, run.info.run_id, params)
    return run.info.run_id


def log_params(c, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    c.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])


def log_metrics(c, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    clean = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items()) if v is not None and math.isfinite(v)]
    for i in range(0, len(clean), 900):
        c.log_batch(run_id, metrics=clean[i : i + 900])


def register_version(c, name: str, run_id: str, source: str, tags: dict[str, str]) -> int:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name, description="lensflow dual encoder; each version carries its index")
    mv = c.create_model_version(name, source=source, run_id=run_id, tags={TAG + k: str(v) for k, v in tags.items()})
    return int(mv.version)


def set_tags(c, name: str, version: int | str, tags: dict) -> None:
    for k, v in tags.items():
        c.set_model_version_tag(name, str(version), TAG + k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))


def version_tags(mv) -> dict[str, str]:
    return {k[len(TAG) :]: v for k, v in (mv.tags or {}).items() if k.startswith(TAG)}


def json_tag(tags: dict[str, str], key: str) -> dict:
    """A JSON-valued tag as a dict ({} when absent or empty)."""
    return json.loads(tags.get(key) or "{}") or {}


def get_alias(c, name: str, alias: str):
    """The model version behind an alias, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
