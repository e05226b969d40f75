"""One writer at a time per project: retrain, reindex and promotion hold this lock while they change
shared state (the DVC-tracked catalog, index tables, the registry's aliases).

A kernel lock (flock) on a file in the project's cache: the kernel drops it when its holder exits,
however it exits (SIGKILL included), so a crashed run never leaves a stale lock behind. It covers
runs on this machine and filesystem; the Prefect deployments add `concurrency_limit: 1` so that
scheduled and UI-triggered runs wait for each other in the queue wherever their workers run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


class RunInProgress(RuntimeError):
    """Another lensflow run holds the project: this one stopped before changing anything."""


def _flow_run() -> dict:
    try:
        from prefect.runtime import flow_run

        return {"flow_run": flow_run.name, "flow_run_id": flow_run.id} if flow_run.id else {}
    except Exception:  # outside Prefect, or no API: the pid and host still say who holds it
        return {}


def describe(holder: dict) -> str:
    run = f"flow run '{holder['flow_run']}' ({holder['flow_run_id']}), " if holder.get("flow_run") else ""
    return (
        f"{holder.get('what', 'a lensflow run')} ({run}pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"since {holder.get('since', '?')})"
    )


@contextmanager
def project_lock(folder: Path, what: str, wait_s: float = 0, log=None) -> Iterator[dict]:
    """Hold the project's writer lock for `what` (e.g. "retrain"). When another run holds it: wait up
    to `wait_s` seconds (telling `log` once whom for), then raise RunInProgress naming that run."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if time.monotonic() >= deadline:
                    waited = f" (waited {wait_s:.0f} s)" if wait_s else ""
                    raise RunInProgress(
                        f"{what} not started: another run is changing this project: {describe(holder)}{waited}. "
                        "Nothing was changed by this run; start it again when that one has finished, "
                        "or cancel that run."
                    ) from None
                if log and wait_s:
                    log(f"{what} waits for {describe(holder)} to finish (at most {wait_s:.0f} s)")
                    log = None
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        holder = {
            "what": what,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        } | _flow_run()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 65536, 0) or b"{}")
    except ValueError:  # caught between the holder's truncate and write
        return {}
