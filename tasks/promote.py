"""The promotion gate, the approval record and the move of the `champion` alias (always last)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from lensflow.core.champion import Champion, IndexMismatch, index_problems, resolve_version, restore_index
from lensflow.core.registry import CHALLENGER, CHAMPION, get_alias, json_tag, set_tags, version_tags
from lensflow.core.settings import Settings
from lensflow.tasks import stage
from lensflow.tasks.helpers.approval import ApprovalPolicy, Review, now


class GateConfig(BaseModel):
    """No gated metric may fall more than its tolerance below the champion's; floors always hold."""

    metrics: list[str] = Field(
        default=["image_precision_at_10", "text_precision_at_10", "image_ndcg_at_10", "heldout_combined_recall_at_1"],
        description="metrics compared with the champion (heldout_combined_recall_at_1: shopper photos "
        "with every held-out condition at once)",
    )
    tolerance: float = Field(default=0.01, ge=0, description="allowed drop vs the champion, absolute")
    tolerances: dict[str, float] = Field(
        default={"heldout_combined_recall_at_1": 0.03},
        description="per-metric allowed drop (overrides `tolerance`); 0.03 is about one "
        "standard error of R@1 on the default 300 held-out photos",
    )
    floors: dict[str, float] = Field(
        default={"image_precision_at_10": 0.5, "text_precision_at_10": 0.5}, description="absolute minimum per metric"
    )


class ReviewPolicy(BaseModel):
    """How a registered version gets to be champion: the gate, then who decides and how long they have."""

    approval: ApprovalPolicy = Field(
        "reviewer",
        description="reviewer: pause for a reviewer's decision in the Prefect UI; "
        "auto-approve: promote when the gate passes (recorded as such); later: stop after the gate",
    )
    approval_timeout_s: int = Field(
        172_800, ge=1, description="how long to wait for a reviewer before rejecting (seconds)"
    )
    approval_poll_s: int = Field(10, ge=1, description="how often the paused run checks for a decision (seconds)")
    gate: GateConfig = Field(default_factory=GateConfig)


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: int | None = None
    floors_missed: dict[str, float] = field(default_factory=dict)  # metric -> the challenger's value
    drops: dict[str, float] = field(default_factory=dict)  # metric -> how far below the champion it fell


def gate(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    cfg: GateConfig,
    champion_version: int | None = None,
) -> GateDecision:
    """Pure decision: floors first, then regression against the champion (when there is one)."""
    reasons, floors_missed, drops = [], {}, {}
    for name, floor in cfg.floors.items():
        value = challenger.get(name)
        if value is None:
            reasons.append(f"{name} missing from the challenger's metrics")
        elif value < floor:
            reasons.append(f"{name} {value:.4f} is below the floor {floor:.4f}")
            floors_missed[name] = value
    if champion:
        for name in cfg.metrics:
            new, old = challenger.get(name), champion.get(name)
            tol = cfg.tolerances.get(name, cfg.tolerance)
            if new is None and old is None:  # neither measured it (versions from before that metric existed)
                continue
            if new is None:
                reasons.append(f"{name} missing from the challenger's metrics")
            elif old is not None and new < old - tol - 1e-9:  # 1e-9: 0.70 vs 0.75 - 0.05 is not a regression
                reasons.append(f"{name} {new:.4f} regresses from the champion's {old:.4f} (tolerance {tol})")
                drops[name] = old - new
    return GateDecision(not reasons, reasons, champion_version, floors_missed, drops)


def accept_hint(version: int, decision: GateDecision, bounds: dict[str, dict[str, float]]) -> str:
    """For a version the gate refused: which check failed, what the catalog allows, and the exact command
    that promotes it anyway (a person's explicit choice, recorded like any auto-approval)."""
    if decision.passed:
        return ""
    lines, flags = [], []
    for name, value in decision.floors_missed.items():
        b = bounds.get(name)
        reach = (
            f" (on this catalog it can reach {b['ceiling']:.2f} with a perfect ranking; a random ranking scores "
            f"{b['chance']:.2f})"
            if b
            else ""
        )
        lines.append(f"{name} is {value:.4f}, below its floor{reach}")
        flags.append(f"--floor {name}={math.floor(value * 100) / 100:g}")
    if decision.drops:
        lines.append(
            "it regresses from champion v{}: {}".format(
                decision.champion_version, ", ".join(f"{name} by {drop:.4f}" for name, drop in decision.drops.items())
            )
        )
        flags.append(f"--tolerance {math.ceil(round(max(decision.drops.values()), 6) * 100) / 100:g}")
    first = (
        "With no champion yet, nothing is compared: the floors alone stand between a model and shoppers. "
        if decision.champion_version is None
        else ""
    )
    if any("missing" in r for r in decision.reasons):  # no value to set a floor or tolerance from
        return first + f"v{version} was not promoted: " + "; ".join(decision.reasons)
    return (
        f"{first}v{version} was not promoted: " + "; ".join(lines) + ". If that is good enough for your shoppers, "
        f"accept it as it is (no retraining): lensflow promote --version {version} --auto-approve {' '.join(flags)}"
    )


def champion_metrics(c, name: str) -> tuple[int | None, dict | None]:
    mv = get_alias(c, name, CHAMPION)
    if mv is None:
        return None, None
    return int(mv.version), json.loads(version_tags(mv).get("metrics", "{}"))


def promote(
    c,
    name: str,
    version: int,
    decision: GateDecision,
    policy: ApprovalPolicy,
    review: Review | None = None,
    next_step: str = "",
) -> str:
    """Record the gate and the approval on the version, then move `champion`, then mark the old one retired.

    Readers follow the alias, and the version behind it carries its index tag from the retrain, so a
    run killed between any two of these writes never shows a champion without its index; the status
    tags a killed run leaves behind are set right by `tasks.recover` under the writer lock.

    `next_step` (recorded on a version the gate refused) tells a person how to accept it anyway.
    Returns the outcome: promoted, rejected, timed-out, awaiting-approval (policy `later`) or superseded
    (the champion changed after the comparison was made, so it no longer holds).
    """
    set_tags(c, name, version, {"gate": "passed" if decision.passed else "failed", "gate_reasons": decision.reasons})
    if not decision.passed:
        set_tags(
            c,
            name,
            version,
            {
                "status": "rejected",
                "rejected_at": now(),
                "rejected_by": "gate",
                "rejected_reason": "gate: " + "; ".join(decision.reasons),
                "next_step": next_step,
            },
        )
        return "rejected"
    if policy == "later":
        set_tags(c, name, version, {"status": "awaiting-approval"})
        return "awaiting-approval"
    if policy == "auto-approve":
        review = Review("approved", "policy:auto-approve", "headless run with an explicit auto-approve policy", now())
    elif review is None:
        raise ValueError("the `reviewer` policy needs a Review")
    if review.refused:
        set_tags(c, name, version, {"approval_refused": review.refused})
    if review.outcome != "approved":
        reason = (
            f"reviewer {review.reviewer}: {review.comment}"
            if review.outcome == "rejected"
            else f"approval timed out: {review.comment}"
        )
        set_tags(
            c,
            name,
            version,
            {
                "status": "rejected",
                "rejected_at": review.at,
                "rejected_by": review.reviewer or "timeout",
                "rejected_reason": reason,
            },
        )
        return "rejected" if review.outcome == "rejected" else "timed-out"
    current, _ = champion_metrics(c, name)
    if current != decision.champion_version:
        set_tags(
            c,
            name,
            version,
            {
                "status": "superseded",
                "superseded_reason": f"approved by {review.reviewer}, but the champion moved from "
                "v{decision.champion_version} "
                f"to v{current} after the comparison: run the promote flow again",
            },
        )
        return "superseded"
    set_tags(
        c,
        name,
        version,
        {
            "approval": policy,
            "approved_by": review.reviewer,
            "approved_at": review.at,
            "approval_comment": review.comment,
            "previous_champion": str(current or ""),
            "status": "approved",
        },
    )
    c.set_registered_model_alias(name, CHAMPION, str(version))  # the commit point: one write
    set_tags(c, name, version, {"status": "champion"})
    if current is not None:
        set_tags(
            c, name, current, {"retired_at": now(), "succeeded_by": str(version), "status": "retired"}
        )  # status last
    return "promoted"


promote_task = stage(promote, name="promote")


@dataclass
class Candidate:
    """A registered version that may be reviewed, with the champion it is compared against."""

    version: Champion
    champion_version: int | None
    champion_metrics: dict | None
    champion_run_id: str | None

    def facts(self) -> dict:
        t, idx = self.version.tags, self.version.index
        return {
            "data md5": t.get("data_md5"),
            "eval set md5": t.get("eval_set_md5"),
            "index": f"{idx['table']} v{idx['version']} ({idx['fingerprint']})",
        }


def review_candidate(s: Settings, c, version: int | None) -> Candidate:
    """The eligibility rules of a promotion review: a version (default: `challenger`) that is not the champion,
    in a reviewable status, whose index verifies (restored from DVC when missing), and that was measured on the
    same evaluation set as the current champion. Raises ValueError or IndexMismatch saying which rule failed."""
    cand = resolve_version(s, version, alias=CHALLENGER)
    champ_version, champ = champion_metrics(c, s.registered_model)
    if champ_version == cand.version:
        raise ValueError(f"v{cand.version} is already the champion")
    status = cand.tags.get("status")
    if status not in REVIEWABLE:
        raise ValueError(
            f"v{cand.version} has status {status!r}: only a ready, deferred, rejected or superseded version "
            "can be reviewed"
        )
    try:
        restore_index(s, cand)
    except Exception as exc:
        raise IndexMismatch(f"v{cand.version}'s index is missing and could not be restored: {exc}") from exc
    if problems := index_problems(cand):
        raise IndexMismatch(f"v{cand.version} cannot be promoted: " + "; ".join(problems))
    compared = json_tag(cand.tags, "compared_with")
    champ_tags = resolve_version(s, champ_version).tags if champ_version is not None else {}
    if champ_version is not None and champ_version != compared.get("champion_version"):
        if champ_tags.get("eval_set_md5") != cand.tags.get("eval_set_md5"):
            raise ValueError(
                f"v{cand.version} was evaluated against v{compared.get('champion_version')}, but the champion is now "
                f"v{champ_version}, measured on another evaluation set: retrain to compare them on the same set"
            )
    elif champ_version is not None:
        champ = compared["metrics"]
    return Candidate(cand, champ_version, champ, champ_tags.get("run_id"))


REVIEWABLE = ("ready", "awaiting-approval", "rejected", "superseded")
review_candidate_task = stage(review_candidate, name="check-candidate")
