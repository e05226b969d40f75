"""Progress of long stages in the Prefect UI, not only on the worker's stderr: `progress_bar(...)` is a tqdm bar that,
inside a Prefect flow or task run, also keeps a progress artifact (Artifacts tab, key `<flow>-<stage>`) up to
date, at most every few seconds. Outside a run it is plain tqdm. An artifact that cannot be written never fails
the work: the bar goes on and says so once in the log."""

from __future__ import annotations

import logging
import re
import time

from tqdm.auto import tqdm

log = logging.getLogger(__name__)
EVERY_S = 3.0  # seconds between artifact updates (each is one API call)


def run_name() -> str | None:
    """The running flow's name, or None outside a Prefect run."""
    from prefect.context import FlowRunContext, TaskRunContext

    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None:
        return flow_ctx.flow.name
    task_ctx = TaskRunContext.get()
    return task_ctx.task.name if task_ctx is not None else None


def artifact_key(flow: str, stage: str) -> str:
    """Prefect's key rule: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", f"{flow}-{stage}".lower()).strip("-")[:100]


class StageProgress:
    """One stage's progress artifact (0-100 %); a no-op outside a Prefect run."""

    def __init__(self, stage: str, total: float):
        self.stage, self.total, self.id, self.last = stage, max(float(total), 1e-9), None, 0.0
        flow = run_name()
        if flow is None:
            return
        try:
            from prefect.artifacts import create_progress_artifact

            self.id = create_progress_artifact(0.0, key=artifact_key(flow, stage), description=f"{stage}: starting")
            self.last = time.monotonic()
        except Exception as exc:  # the UI is a nicety: the work goes on
            log.warning("no progress artifact for %s: %s", stage, exc)

    def update(self, done: float, force: bool = False, note: str = "") -> None:
        if self.id is None or (not force and time.monotonic() - self.last < EVERY_S):
            return
        pct = min(100.0, 100.0 * done / self.total)
        try:
            from prefect.artifacts import update_progress_artifact

            text = f"{self.stage}: {done:,.0f} of {self.total:,.0f}" + (f" ({note})" if note else "")
            update_progress_artifact(self.id, pct, description=text)
            self.last = time.monotonic()
        except Exception as exc:
            log.warning("progress artifact for %s not updated: %s", self.stage, exc)
            self.id = None


class progress_bar(tqdm):  # noqa: N801 (used like tqdm)
    """tqdm that also reports to a StageProgress named after `desc` (counted even when the bar is disabled)."""

    def __init__(self, *args, desc: str = "progress", total=None, initial=0, **kwargs):
        super().__init__(*args, desc=desc, total=total, initial=initial, **kwargs)
        if total is None and args and hasattr(args[0], "__len__"):
            total = len(args[0])
        self.stage = StageProgress(desc, total or 1)
        self.done = initial

    def update(self, n=1):
        self.done += n
        self.stage.update(self.done)
        return super().update(n)

    def __iter__(self):  # tqdm's own iterator counts without calling update()
        for item in super().__iter__():
            yield item
            self.done += 1
            self.stage.update(self.done)

    def close(self):
        stage = getattr(self, "stage", None)
        if stage is not None:
            self.stage = None
            stage.update(self.done, force=True)
        return super().close()
