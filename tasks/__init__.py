"""The harness: one module per pipeline stage; each @task wraps a plain, typed function."""

from prefect import task
from prefect.cache_policies import NO_CACHE


def stage(fn, name: str, **options):
    """Wrap a plain function as a Prefect task. Inputs are models, frames and clients that
    must not be hashed or persisted, so caching is off unless a stage asks for it."""
    options.setdefault("cache_policy", NO_CACHE)
    options.setdefault("persist_result", False)
    return task(fn, name=name, **options)
