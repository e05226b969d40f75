"""One writer at a time across machines: against a Prefect server, retrain, reindex and promote hold the slot of
the global concurrency limit `lensflow-writer` (limit 1) while they change shared state, so runs from workers on
several machines wait for each other. The file lock (tasks/lock.py) still covers the embedded mode, where no
server is shared, and runs on one machine.

The limit is created (limit 1) the first time it is needed, and by `lensflow up`. A run that dies holding the
slot frees it when its lease expires (LEASE_S without renewal)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

NAME = "lensflow-writer"
LEASE_S = 120.0


def server_url() -> str | None:
    """The Prefect API this process talks to, or None in the embedded mode (an ephemeral per-process server)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def ensure_limit(name: str = NAME) -> None:
    """Create the writer limit (1 slot) unless it exists; an existing one is left as the operator set it."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another run created it meanwhile
                pass


@contextmanager
def writer_slot(what: str, timeout_s: float, log: Callable[[str], None], name: str = NAME) -> Iterator[bool]:
    """Hold the global writer slot for `what` (yields True), or do nothing in the embedded mode (yields False).
    Waits at most `timeout_s` for another run to release it, then raises TimeoutError naming the limit."""
    if server_url() is None:
        yield False
        return
    from prefect.concurrency.sync import concurrency

    ensure_limit(name)
    t0 = time.monotonic()
    log(f"{what}: taking the global writer slot {name!r} (waits while another writer holds it)")
    try:
        with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True, lease_duration=LEASE_S):
            log(f"{what}: holds the global writer slot {name!r} (waited {time.monotonic() - t0:.1f} s)")
            try:
                yield True
            finally:
                log(f"{what}: releases the global writer slot {name!r}")
    except TimeoutError as exc:
        raise TimeoutError(
            f"{what} not started: the global writer slot {name!r} stayed taken for {timeout_s:.0f} s (another "
            "retrain, reindex or promotion is changing this project). Nothing was changed; see the running "
            f"flows in the Prefect UI, or raise LENSFLOW_WRITER_SLOT_TIMEOUT_S"
        ) from exc
