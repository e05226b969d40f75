"""One writer at a time: the global writer slot (runs on several machines, tasks/writer_slot.py) and the
project's writer lock (this machine, tasks/lock.py), with the leftovers of a killed run repaired
(tasks/recover.py) before anything changes. Every run that changes the registry, the index or the data holds it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from lensflow.core import registry
from lensflow.core.settings import Settings
from lensflow.tasks.lock import project_lock
from lensflow.tasks.recover import recover
from lensflow.tasks.writer_slot import writer_slot


@contextmanager
def exclusive(s: Settings, what: str, log: logging.Logger | logging.LoggerAdapter, wait_s: float = 0) -> Iterator[None]:
    """Hold the writer slot and the writer lock for `what` (waiting up to `wait_s` for the lock), after repairing
    what a killed run left behind."""
    with (
        writer_slot(what, s.writer_slot_timeout_s, log.info),
        project_lock(s.lock_dir, what, wait_s=wait_s, log=log.info),
    ):
        recover(registry.client(s.tracking_uri), s.registered_model, s.mlflow_experiment, s.lancedb_path, log.warning)
        yield
