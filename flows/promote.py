"""The promote flow: gate a registered version against the champion, ask a reviewer, move `champion`.

The retrain flow ends with the same review (tasks/review.py); this flow re-opens it for a version
registered earlier (a run with `approval=later`, or a review that timed out).
"""

from __future__ import annotations

from prefect import flow
from prefect.states import Completed
from pydantic import Field

from lensflow.core import registry
from lensflow.flows.common import begin
from lensflow.tasks.promote import ReviewPolicy, review_candidate_task
from lensflow.tasks.review import review_and_promote, review_page


class ApprovalTimedOut(RuntimeError):
    """No allowed reviewer decided in time: the version is rejected and the champion unchanged."""


class PromoteParams(ReviewPolicy):
    """Parameters of a promotion review (rendered as a form in the Prefect UI)."""

    version: int | None = Field(None, ge=1, description="model version to review; empty: the one behind `challenger`")


@flow(name="promote", log_prints=True)
def promote(params: PromoteParams = PromoteParams()) -> dict:
    s = begin(params.approval)
    c = registry.client(s.tracking_uri)
    cand = review_candidate_task(s, c, params.version)
    v = cand.version
    page = review_page(
        s,
        c,
        v.version,
        v.tags.get("run_id"),
        v.metrics,
        cand.champion_version,
        cand.champion_metrics,
        cand.champion_run_id,
        cand.facts(),
    )
    outcome, record = review_and_promote(
        s, c, v.version, page, v.metrics, cand.champion_version, cand.champion_metrics, params
    )
    return finish(outcome, v.version, {"outcome": outcome, "version": v.version, "gate": record})


def finish(outcome: str, version: int, summary: dict):
    """The run's final state: Completed when promoted or deferred; a Completed state named Rejected or
    Superseded otherwise (visible in the UI); a timeout fails the run (Prefect fails expired pauses)."""
    if outcome == "timed-out":
        raise ApprovalTimedOut(
            f"v{version} rejected: no decision from an allowed reviewer in time; the champion is unchanged"
        )
    if outcome in ("rejected", "superseded"):
        return Completed(name=outcome.capitalize(), message=f"v{version} {outcome}", data=summary)
    return summary
