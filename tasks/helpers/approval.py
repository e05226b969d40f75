"""Reviewer approval: the flow pauses with a form in the Prefect UI and waits for a decision."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from lensflow.core.signoff import NAME, ReviewerKey, ReviewerStore, SignoffError

ApprovalPolicy = Literal["reviewer", "auto-approve", "later"]


class Approval(RunInput):
    """The form a reviewer fills in to resume a paused promotion."""

    decision: Literal["approve", "reject"] = Field(
        description="approve moves `champion` to this version; reject leaves it"
    )
    reviewer: str = Field(min_length=1, description="your name, as registered (`lensflow reviewers list`)")
    code: str = Field(
        "",
        description="your one-run code: run `lensflow review code RUN_ID` (add `--reject` to reject) and paste "
        "what it prints; a name without a valid code decides nothing",
    )
    comment: str = Field("", description="why: recorded on the model version")


@dataclass
class Review:
    """What came of a review: approved, rejected or timed-out (and by whom, when, why)."""

    outcome: Literal["approved", "rejected", "timed-out"]
    reviewer: str
    comment: str
    at: str
    refused: list[str] = field(default_factory=list)  # answers without a valid proof, and why


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Sought:
    """What a paused run asks a reviewer to sign: its flow run id and model version. Saved beside the form
    (run input `REVIEW_KEY`) so `lensflow review code` can sign it; the run verifies with its own copy."""

    run_id: str
    version: int
    model: str


REVIEW_KEY = "lensflow-review"


def proof_problem(answer: Approval, store: ReviewerStore, sought: Sought, ttl_s: float) -> str | None:
    """Why this answer decides nothing (None when it is a valid proof by the reviewer it names)."""
    names = store.names()
    if not names:
        return "no reviewers are registered (`lensflow reviewers add NAME`)"
    typed = answer.reviewer.strip()
    if not NAME.match(typed):  # refusals are shown on the review page: no unchecked text there
        typed = "(not a reviewer name)"
    try:
        signer = store.verify(answer.code, sought.run_id, sought.version, answer.decision, ttl_s)
    except SignoffError as exc:
        return f"{typed!r}: {exc}"
    if signer != typed:
        return f"{typed!r}: the code was made by {signer!r}"
    return None


def await_review(
    description: str, store: ReviewerStore, sought: Sought, timeout_s: int, ttl_s: float, poll_s: int = 10
) -> Review:
    """Pause the current flow run until a registered reviewer answers with a valid proof, or `timeout_s` passes.

    An answer without one (a typed name alone, another reviewer's code, a code for another run, version or
    decision, an expired code, a removed reviewer's key) is refused, logged, kept in `Review.refused`, and
    the run pauses again for the time left: nothing is written before a proof verifies.
    Must be called from a flow (not a task).
    """
    from prefect import get_run_logger
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    log = get_run_logger()
    save_sought(sought)
    deadline = time.monotonic() + timeout_s
    refused: list[str] = []
    while (left := int(deadline - time.monotonic())) > 0:
        notes = "".join(f"\n\n> **refused:** {r}" for r in refused)
        form = Approval.with_initial_data(description=description + notes)
        try:
            answer = pause_flow_run(wait_for_input=form, timeout=left, poll_interval=min(poll_s, left))
        except FlowPauseTimeout:
            break
        problem = proof_problem(answer, store, sought, ttl_s)
        if problem is None:
            outcome = "approved" if answer.decision == "approve" else "rejected"
            log.info("%s by %s (proof verified): %s", outcome, answer.reviewer.strip(), answer.comment)
            return Review(outcome, answer.reviewer.strip(), answer.comment, now(), refused)
        refused.append(f"{answer.decision} refused: {problem} ({now()})")
        log.warning("refused a decision: %s; waiting again", refused[-1])
    return Review("timed-out", "", f"no decision with a valid proof within {timeout_s} s", now(), refused)


def save_sought(sought: Sought) -> None:
    import json

    from prefect import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        try:
            client.create_flow_run_input(
                sought.run_id, REVIEW_KEY, json.dumps({"version": sought.version, "model": sought.model})
            )
        except PrefectHTTPStatusError as exc:  # 409: a retried run asks again under the same run id
            if exc.response.status_code != 409:
                raise


def pending_reviews() -> list[dict]:
    """Flow runs paused for an Approval form whose form is saved (against the configured Prefect API), with
    the model version each asks a reviewer to sign."""
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
                sought = json.loads(client.read_flow_run_input(fr.id, REVIEW_KEY))
            except Exception:  # 404 until the paused run has saved its form
                continue
            out.append(
                {
                    "flow_run_id": str(fr.id),
                    "flow_run": fr.name,
                    "model": sought.get("model"),
                    "version": sought.get("version"),
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


def pending_review(flow_run_id: str) -> dict:
    """The paused review of one flow run; LookupError when that run does not wait for a review."""
    for review in pending_reviews():
        if review["flow_run_id"] == str(flow_run_id):
            return review
    raise LookupError(f"flow run {flow_run_id} is not waiting for a review (see `lensflow review list`)")


def review_code(key: ReviewerKey, flow_run_id: str, decision: Literal["approve", "reject"]) -> str:
    """The one-run code `key`'s reviewer pastes into the form: a proof for this run's version and `decision`."""
    return key.sign(str(flow_run_id), int(pending_review(flow_run_id)["version"]), decision)


def answer_review(
    flow_run_id: str,
    decision: Literal["approve", "reject"],
    reviewer: str,
    comment: str = "",
    code: str = "",
) -> None:
    """Resume a paused run with a decision and its proof, exactly as the form in the Prefect UI does."""
    from prefect.flow_runs import resume_flow_run

    form = Approval(decision=decision, reviewer=reviewer, code=code, comment=comment)
    resume_flow_run(flow_run_id, run_input=form.model_dump(include={"decision", "reviewer", "code", "comment"}))
