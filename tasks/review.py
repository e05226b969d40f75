"""The review: the page a reviewer reads (metrics with deltas, links, provenance), the gate, the pause for an
allowed reviewer, and the promotion under the writer lock. Shared by the retrain and promote flows."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from lensflow.core import registry
from lensflow.core.settings import Settings
from lensflow.tasks.exclusive import exclusive
from lensflow.tasks.helpers.approval import Sought, await_review
from lensflow.tasks.helpers.report import comparison_table, robustness_table
from lensflow.tasks.promote import ReviewPolicy, accept_hint, gate, promote_task

REVIEW_ARTIFACT = "promotion-review"


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
            "### Held-out shopper photos (tasks/helpers/heldout_photos.py: no code or seeds shared with training)",
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
        from prefect.runtime import flow_run

        store = s.reviewer_store()
        names = store.names()
        if not names:
            log.warning("no reviewers are registered (`lensflow reviewers add NAME`): nobody can approve this run")
        log.info(
            "waiting up to %d s for a registered reviewer's signed decision (registered: %s)",
            params.approval_timeout_s,
            ", ".join(names) or "nobody",
        )
        sought = Sought(str(flow_run.id), version, s.registered_model)
        review = await_review(
            page, store, sought, params.approval_timeout_s, s.review_code_ttl_s, params.approval_poll_s
        )
    # a reviewer's decision waits for a running retrain or reindex rather than being lost; the global writer slot
    # too, so that a reindex from another worker waits for the promotion instead of finding the lock taken
    with exclusive(s, "promotion", log, wait_s=params.approval_timeout_s):
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


def challenger_page(s: Settings, c, run_id: str, version: int, compared, data_md5: str, strategy: str, index) -> str:
    """`review_page` for a version just measured beside the champion (a tasks.challenger.Comparison), with its
    provenance: data and eval-set md5, training strategy, index (a tasks.index.IndexInfo)."""
    champ_version = compared.champion_version
    champ_run = (
        registry.version_tags(c.get_model_version(s.registered_model, str(champ_version))).get("run_id")
        if champ_version is not None
        else None
    )
    facts = {
        "data md5": data_md5,
        "eval set md5": compared.result.eval_set_md5,
        "strategy": strategy,
        "index": f"{index.table} v{index.version} ({index.fingerprint})",
    }
    return review_page(
        s, c, version, run_id, compared.result.metrics, champ_version, compared.champion_metrics, champ_run, facts
    )
