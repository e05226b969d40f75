"""What every flow starts with: the settings, secrets kept out of the logs, and, for the flows that write,
the global writer slot (runs on several machines, tasks/writer_slot.py) and the project's writer lock (this
machine), with the leftovers of a killed run repaired first."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger

from lensflow.core.redact import install_log_redaction
from lensflow.core.settings import Settings, get_settings
from lensflow.tasks.exclusive import exclusive


def begin(approval: str | None = None) -> Settings:
    """The settings, with log redaction installed (worker-started runs do not pass through the CLI).
    A run that will wait for a reviewer fails now when nobody could approve it."""
    s = get_settings()
    install_log_redaction()
    if approval == "reviewer" and not s.reviewer_store().names():
        raise ValueError(
            f"approval=reviewer but no reviewers are registered in {s.path(s.reviewers_file)}: "
            "run `lensflow reviewers add NAME` for each reviewer, or choose approval=auto-approve or approval=later"
        )
    if os.environ.get("LENSFLOW_REVIEWERS"):
        get_run_logger().warning(
            "LENSFLOW_REVIEWERS is no longer read: the reviewers are those registered with `lensflow reviewers add` "
            "(%s)",
            ", ".join(s.reviewer_store().names()) or "none",
        )
    return s


@contextmanager
def writing(s: Settings, what: str, wait_s: float = 0) -> Iterator[None]:
    """`tasks.exclusive.exclusive` for `what`, logging to the run."""
    with exclusive(s, what, get_run_logger(), wait_s):
        yield
