"""The harness: one module per pipeline stage; each @task wraps a plain, typed function."""

from collections import defaultdict

from prefect import task
from prefect.cache_policies import NO_CACHE

_seconds: dict[str, dict[str, float]] = defaultdict(dict)  # flow run id -> task name -> Prefect's run time


def stage(fn, name: str, **options):
    """Wrap a plain function as a Prefect task. Inputs are models, frames and clients that
    must not be hashed or persisted, so caching is off unless a stage asks for it. Each finished run's
    duration, as Prefect measured it (`total_run_time`), is kept for `stage_seconds`."""
    options.setdefault("cache_policy", NO_CACHE)
    options.setdefault("persist_result", False)
    options.setdefault("on_completion", [_record])
    return task(fn, name=name, **options)


def _record(tsk, task_run, state) -> None:
    runs = _seconds[str(task_run.flow_run_id)]
    runs[tsk.name] = round(runs.get(tsk.name, 0.0) + task_run.total_run_time.total_seconds(), 2)


def stage_seconds() -> dict[str, float]:
    """This flow run's stages so far: task name -> seconds of running (Prefect's own task-run timing)."""
    from prefect.runtime import flow_run

    return dict(_seconds.pop(str(flow_run.id), {})) if flow_run.id else {}
