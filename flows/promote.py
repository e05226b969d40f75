"""The promote flow: gate a registered version against the champion, ask a reviewer, move `champion`.

The retrain flow ends with the same review (`review_and_promote`); this flow re-opens it for a version
registered earlier (a run with `approval=later`, or a review that timed out).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed
from pydantic import Field

from lensflow.redact import install_log_redaction
from lensflow.settings import Settings, get_settings
from tasks import registry
from tasks.approval import await_review
from tasks.champion import IndexMismatch, index_problems, resolve_version, restore_index
from tasks.lock import project_lock
from tasks.promote import ReviewPolicy, accept_hint, champion_metrics, gate, promote_task
from tasks.recover import recover
from tasks.report import comparison_table, robustness_table

REVIEW_ARTIFACT = "promotion-review"


class ApprovalTimedOut(RuntimeError):
    """No allowed reviewer decided in time: the version is rejected and the champion unchanged."""


class PromoteParams(ReviewPolicy):
    """Parameters of a promotion review (rendered as a form in the Prefect UI)."""

    version: int | None = Field(None, ge=1, description="model version to review; empty: the one behind `challenger`")


def mlflow_links(s: Settings, c, run_id: str | None, version: int | None) -> str:
    parts = []
    if run_id:
        exp = c.get_run(run_id).info.experiment_id
        parts.append(f"[run]({s.mlflow_ui_url}/#/experiments/{exp}/runs/{run_id})")
    if version is not None:
        parts.append(f"[model version]({s.mlflow_ui_url}/#/models/{s.registered_model}/versions/{version})")
    return " · ".join(parts) or "-"


def review_page(
    s: Settings,
    c,
    version: int,
    run_id: str,
    metrics: dict,
    champ_version: int | None,
    champ_metrics: dict | None,
    champ_run_id: str | None,
    facts: dict,
) -> str:
    """The markdown a reviewer reads beside the approval form: metrics with deltas, links, provenance."""
    label = f"champion v{champ_version}" if champ_version is not None else "champion"
    lines = [
        f"## {s.registered_model} v{version} (challenger) vs {label if champ_version else 'no champion yet'}",
        "",
        "Both measured on the same evaluation set.",
        "",
        f"- challenger v{version}: {mlflow_links(s, c, run_id, version)}",
    ]
    if champ_version is not None:
        lines.append(f"- champion v{champ_version}: {mlflow_links(s, c, champ_run_id, champ_version)}")
    lines += [f"- {k}: `{v}`" for k, v in facts.items()]
    lines += ["", comparison_table(metrics, champ_metrics, label)]
    held = robustness_table(metrics, champ_metrics, label)
    if held:
        lines += [
            "",
            "### Held-out shopper photos (tasks/heldout_photos.py: no code or seeds shared with training)",
            "",
            held,
        ]
    return "\n".join(lines)


def review_and_promote(
    s: Settings,
    c,
    version: int,
    page: str,
    metrics: dict,
    champ_version: int | None,
    champ_metrics: dict | None,
    params: ReviewPolicy,
) -> tuple[str, dict]:
    """Gate, then (policy `reviewer`) pause for an allowed reviewer, then record and move `champion`."""
    log = get_run_logger()
    decision = gate(metrics, champ_metrics, params.gate, champ_version)
    hint = accept_hint(
        version,
        decision,
        registry.json_tag(registry.version_tags(c.get_model_version(s.registered_model, str(version))), "eval_bounds"),
    )
    verdict = "passed" if decision.passed else "failed: " + "; ".join(decision.reasons) + f"\n\n{hint}"
    page = f"{page}\n\n**Gate:** {verdict}"
    create_markdown_artifact(
        key=REVIEW_ARTIFACT,
        markdown=page,
        description=f"{s.registered_model} v{version}: challenger vs champion, same evaluation set",
    )
    review = None
    if decision.passed and params.approval == "reviewer":
        if not s.reviewers:
            log.warning("no reviewers configured (LENSFLOW_REVIEWERS): nobody can approve this run")
        log.info(
            "waiting up to %d s for a reviewer (allowed: %s)",
            params.approval_timeout_s,
            ", ".join(s.reviewers) or "nobody",
        )
        review = await_review(page, s.reviewers, params.approval_timeout_s, params.approval_poll_s)
    # a reviewer's decision waits for a running retrain or reindex rather than being lost
    with project_lock(s.lock_dir, "promotion", wait_s=params.approval_timeout_s, log=log.info):
        recover(c, s.registered_model, s.mlflow_experiment, s.lancedb_path, log.warning)
        outcome = promote_task(c, s.registered_model, version, decision, params.approval, review, hint)
    record = {
        "passed": decision.passed,
        "reasons": decision.reasons,
        "champion_version": champ_version,
        "review": review.__dict__ if review else None,
        "next_step": hint,
    }
    log.info("v%d: %s", version, outcome)
    return outcome, record


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


@flow(name="promote", log_prints=True)
def promote(params: PromoteParams = PromoteParams()) -> dict:
    s = get_settings()
    install_log_redaction()  # worker-started runs do not pass through lensflow.cli.main
    if params.approval == "reviewer" and not s.reviewers:
        raise ValueError(
            "approval=reviewer but no reviewers are configured: set LENSFLOW_REVIEWERS (comma-separated names)"
        )
    c = registry.client(s.tracking_uri)
    cand = resolve_version(s, params.version, alias=registry.CHALLENGER)
    champ_version, champ = champion_metrics(c, s.registered_model)
    if champ_version == cand.version:
        raise ValueError(f"v{cand.version} is already the champion")
    status = cand.tags.get("status")
    if status not in ("ready", "awaiting-approval", "rejected", "superseded"):
        raise ValueError(
            f"v{cand.version} has status {status!r}: only a ready, deferred, rejected or superseded version can be reviewed"
        )
    try:
        restore_index(s, cand)
    except Exception as exc:
        raise IndexMismatch(f"v{cand.version}'s index is missing and could not be restored: {exc}") from exc
    if problems := index_problems(cand):
        raise IndexMismatch(f"v{cand.version} cannot be promoted: " + "; ".join(problems))
    metrics = cand.metrics
    compared = registry.json_tag(cand.tags, "compared_with")
    if champ_version is not None and champ_version != compared.get("champion_version"):
        champ_tags = resolve_version(s, champ_version).tags
        if champ_tags.get("eval_set_md5") != cand.tags.get("eval_set_md5"):
            raise ValueError(
                f"v{cand.version} was evaluated against v{compared.get('champion_version')}, but the champion is now "
                f"v{champ_version}, measured on another evaluation set: retrain to compare them on the same set"
            )
    elif champ_version is not None:
        champ = compared["metrics"]
    champ_run = resolve_version(s, champ_version).tags.get("run_id") if champ_version is not None else None
    page = review_page(
        s,
        c,
        cand.version,
        cand.tags.get("run_id"),
        metrics,
        champ_version,
        champ,
        champ_run,
        {
            "data md5": cand.tags.get("data_md5"),
            "eval set md5": cand.tags.get("eval_set_md5"),
            "index": f"{cand.index['table']} v{cand.index['version']} ({cand.index['fingerprint']})",
        },
    )
    outcome, record = review_and_promote(s, c, cand.version, page, metrics, champ_version, champ, params)
    return finish(outcome, cand.version, {"outcome": outcome, "version": cand.version, "gate": record})
