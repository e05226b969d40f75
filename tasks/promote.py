"""The promotion gate and the move of the `champion` alias."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from tasks import stage
from pydantic import BaseModel, Field

from tasks.registry import CHAMPION, get_alias, set_tags, version_tags


class GateConfig(BaseModel):
    """No gated metric may fall more than `tolerance` below the champion's; floors always hold."""

    metrics: list[str] = Field(default=["image_precision_at_10", "text_precision_at_10", "image_ndcg_at_10"],
                               description="metrics compared with the champion")
    tolerance: float = Field(default=0.01, ge=0, description="allowed drop vs the champion, absolute")
    floors: dict[str, float] = Field(default={"image_precision_at_10": 0.5, "text_precision_at_10": 0.5},
                                     description="absolute minimum per metric")


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: int | None = None


def gate(challenger: dict[str, float], champion: dict[str, float] | None, cfg: GateConfig,
         champion_version: int | None = None) -> GateDecision:
    """Pure decision: floors first, then regression against the champion (when there is one)."""
    reasons = []
    for name, floor in cfg.floors.items():
        value = challenger.get(name)
        if value is None:
            reasons.append(f"{name} missing from the challenger's metrics")
        elif value < floor:
            reasons.append(f"{name} {value:.4f} is below the floor {floor:.4f}")
    if champion:
        for name in cfg.metrics:
            new, old = challenger.get(name), champion.get(name)
            if new is None:
                reasons.append(f"{name} missing from the challenger's metrics")
            elif old is not None and new < old - cfg.tolerance:
                reasons.append(f"{name} {new:.4f} regresses from the champion's {old:.4f} (tolerance {cfg.tolerance})")
    return GateDecision(not reasons, reasons, champion_version)


def champion_metrics(c, name: str) -> tuple[int | None, dict | None]:
    mv = get_alias(c, name, CHAMPION)
    if mv is None:
        return None, None
    return int(mv.version), json.loads(version_tags(mv).get("metrics", "{}"))


def promote(c, name: str, version: int, decision: GateDecision, auto_approve: bool) -> str:
    """Record the gate and approval on the version, then (last) move `champion`. Returns the outcome."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    set_tags(c, name, version, {"gate": "passed" if decision.passed else "failed", "gate_reasons": decision.reasons})
    if not decision.passed:
        set_tags(c, name, version, {"status": "rejected", "rejected_reason": "gate: " + "; ".join(decision.reasons)})
        return "rejected"
    if not auto_approve:
        set_tags(c, name, version, {"status": "awaiting-approval"})
        return "awaiting-approval"
    set_tags(c, name, version, {"approval": "auto-approve", "approved_by": "policy:auto-approve", "approved_at": now,
                                "approval_comment": "headless run with an explicit auto-approve policy",
                                "previous_champion": str(decision.champion_version or ""), "status": "champion"})
    c.set_registered_model_alias(name, CHAMPION, str(version))
    return "promoted"


promote_task = stage(promote, name="promote")
