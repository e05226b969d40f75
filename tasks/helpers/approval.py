"""Reviewer approval: the flow pauses with a form in the Prefect UI and waits for a decision."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Literal

from prefect.input import RunInput
from pydantic import Field

ApprovalPolicy = Literal["reviewer", "auto-approve", "later"]


class Approval(RunInput):
    """The form a reviewer fills in to resume a paused promotion."""

    decision: Literal["approve", "reject"] = Field(
        description="approve moves `champion` to this version; reject leaves it"
    )
    reviewer: str = Field(min_length=1, description="your name, as on the reviewer allow-list (LENSFLOW_REVIEWERS)")
    comment: str = Field("", description="why: recorded on the model version")


@dataclass
class Review:
    """What came of a review: approved, rejected or timed-out (and by whom, when, why)."""

    outcome: Literal["approved", "rejected", "timed-out"]
    reviewer: str
    comment: str
    at: str
    refused: list[str] = field(default_factory=list)  # answers from names not on the allow-list


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def reviewer_problem(reviewer: str, allowed: list[str]) -> str | None:
    """Why this reviewer may not decide (None when they may). An empty allow-list allows nobody."""
    name = reviewer.strip()
    if not allowed:
        return "no reviewers are configured (set LENSFLOW_REVIEWERS to a comma-separated list of names)"
    if name not in allowed:
        return f"{name!r} is not on the reviewer allow-list"
    return None


def await_review(description: str, allowed: list[str], timeout_s: int, poll_s: int = 10) -> Review:
    """Pause the current flow run until an allowed reviewer answers or `timeout_s` passes.

    An answer from someone not on the allow-list is refused (logged, kept in `Review.refused`) and the
    run pauses again for the time left, so a stray click can neither promote nor discard a candidate.
    Must be called from a flow (not a task).
    """
    from prefect import get_run_logger
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    log = get_run_logger()
    deadline = time.monotonic() + timeout_s
    refused: list[str] = []
    while (left := int(deadline - time.monotonic())) > 0:
        notes = "".join(f"\n\n> **refused:** {r}" for r in refused)
        form = Approval.with_initial_data(description=description + notes)
        try:
            answer = pause_flow_run(wait_for_input=form, timeout=left, poll_interval=min(poll_s, left))
        except FlowPauseTimeout:
            break
        problem = reviewer_problem(answer.reviewer, allowed)
        if problem is None:
            outcome = "approved" if answer.decision == "approve" else "rejected"
            log.info("%s by %s: %s", outcome, answer.reviewer.strip(), answer.comment)
            return Review(outcome, answer.reviewer.strip(), answer.comment, now(), refused)
        refused.append(f"{answer.decision} from {problem} ({now()})")
        log.warning("refused a decision: %s; waiting again", refused[-1])
    return Review("timed-out", "", f"no decision from an allowed reviewer within {timeout_s} s", now(), refused)


def pending_reviews() -> list[dict]:
    """Flow runs paused for an Approval form whose form is saved (against the configured Prefect API)."""
    import json

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    out = []
    with get_client(sync_client=True) as client:
        paused = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            )
        )
        for fr in paused:
            details = fr.state.state_details
            if not details.run_input_keyset:
                continue
            try:
                client.read_flow_run_input(fr.id, details.run_input_keyset["schema"])
                page = json.loads(client.read_flow_run_input(fr.id, details.run_input_keyset["description"]))
            except Exception:  # 404 until the paused run has saved its form
                continue
            out.append(
                {
                    "flow_run_id": str(fr.id),
                    "flow_run": fr.name,
                    "pause_key": details.pause_key,
                    "paused_at": fr.state.timestamp.isoformat(timespec="seconds"),
                    "expires_at": details.pause_timeout.isoformat(timespec="seconds")
                    if details.pause_timeout
                    else None,
                    "title": page.splitlines()[0].lstrip("# ") if page else "",
                    "page": page,
                }
            )
    return out


def answer_review(flow_run_id: str, decision: Literal["approve", "reject"], reviewer: str, comment: str = "") -> None:
    """Resume a paused run with a decision, exactly as the form in the Prefect UI does."""
    from prefect.flow_runs import resume_flow_run

    form = Approval(decision=decision, reviewer=reviewer, comment=comment)
    resume_flow_run(flow_run_id, run_input=form.model_dump(include={"decision", "reviewer", "comment"}))
