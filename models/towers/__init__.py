"""Image and text towers: the pretrained (or tiny random) feature extractors under the heads.

`build_tower(spec)` maps a config's tower `type` to its class (one module per family); the
families import heavy libraries (transformers, efficientnet) only when a tower is built.
"""

from __future__ import annotations

from pathlib import Path

from lensflow.models.towers.base import Tower, TowerSplit, weights_digest
from lensflow.models.towers.efficientnet import EfficientNetLiteTower
from lensflow.models.towers.hf_clip import HFClipTextTower, HFClipVisionTower
from lensflow.models.towers.hf_text import HFMeanPoolTextTower
from lensflow.models.towers.tiny import HashTextTower, TinyConvTower

__all__ = ["TOWERS", "Tower", "TowerSplit", "build_tower", "weights_digest"]

TOWERS: dict[str, type[Tower]] = {
    t.kind: t
    for t in (
        EfficientNetLiteTower,
        TinyConvTower,
        HFClipVisionTower,
        HashTextTower,
        HFMeanPoolTextTower,
        HFClipTextTower,
    )
}


def build_tower(spec: dict, directory: Path | None = None) -> Tower:
    """Build a tower from its spec; with `directory`, load the weights saved there."""
    kind = spec.get("type")
    if kind not in TOWERS:
        raise ValueError(f"unknown tower type {kind!r}; known: {sorted(TOWERS)}")
    return TOWERS[kind].from_spec(spec, directory)
