"""The current champion measured on the challenger's evaluation set, so the gate compares like with like."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.encoder import load_encoder
from models.train import embed_inputs
from tasks import stage
from tasks.champion import model_dir
from tasks.evaluate import EvalResult, Gallery, evaluate_vectors
from tasks.features import suffix_inputs
from tasks.registry import CHAMPION, get_alias
from tasks.robustness import DEFAULT_COMBINED, DEFAULT_PER_CONDITION, add_robustness
from tasks.shopper import shopper_queries


@dataclass
class Baseline:
    version: int
    result: EvalResult


def champion_on_eval_set(
    c,
    name: str,
    catalog: pd.DataFrame,
    data_dir: Path,
    cache_dir: Path,
    data_md5: str,
    shopper_limit: int | None = None,
    device: str = "cpu",
    workers: int | None = None,
    progress: bool = True,
    heldout: tuple[int, int] = (DEFAULT_PER_CONDITION, DEFAULT_COMBINED),
) -> Baseline | None:
    """The champion evaluated exactly as the challenger is, on this catalog. None when there is no champion yet."""
    mv = get_alias(c, name, CHAMPION)
    if mv is None:
        return None
    return version_on_eval_set(
        mv, catalog, data_dir, cache_dir, data_md5, shopper_limit, device, workers, progress, heldout
    )


def version_on_eval_set(
    mv,
    catalog: pd.DataFrame,
    data_dir: Path,
    cache_dir: Path,
    data_md5: str,
    shopper_limit: int | None = None,
    device: str = "cpu",
    workers: int | None = None,
    progress: bool = True,
    heldout: tuple[int, int] = (DEFAULT_PER_CONDITION, DEFAULT_COMBINED),
) -> Baseline:
    """Load a model version's encoder, embed this catalog with it (frozen-tower features come from the
    cache) and evaluate it on the standard eval set of this catalog."""
    encoder = load_encoder(model_dir(mv.source), device=device)
    split, inputs, _ = suffix_inputs(
        encoder, catalog, data_dir, cache_dir, data_md5, workers=workers, progress=progress
    )
    vectors = embed_inputs(encoder, split.suffix, inputs).numpy()
    gallery = Gallery(
        catalog["product_id"].to_numpy(str), catalog["category"].to_numpy(str), catalog["split"].to_numpy(str), vectors
    )
    shopper = shopper_queries(
        encoder, catalog, data_dir, cache_dir, data_md5, limit=shopper_limit, workers=workers, progress=progress
    )
    result = add_robustness(
        evaluate_vectors(encoder, gallery, shopper),
        encoder,
        gallery,
        catalog,
        data_dir,
        *heldout,
        cache_dir=cache_dir,
        data_md5=data_md5,
        progress=progress,
    )
    return Baseline(int(mv.version), result)


champion_on_eval_set_task = stage(champion_on_eval_set, name="evaluate-champion")
version_on_eval_set_task = stage(version_on_eval_set, name="evaluate-version")
