"""The held-out robustness evaluation: shopper photos from tasks/helpers/heldout_photos.py, condition by condition.

Every condition's photos are decoded like an upload (EXIF applied) and embedded through the path a
query takes (`DualEncoder.encode_photos`: localize, crop, encode), then searched against every served
product. Per condition: instance R@1 and R@10 (the photographed product itself) and category P@10.
The gate reads `heldout_combined_recall_at_1`; `generalisation_gap` is the training-recipe shopper
R@1 minus it (how much of the flow's own shopper score is the recipe, not the photo).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lensflow.models.encoder import DualEncoder
from lensflow.models.preprocess import to_rgb
from lensflow.tasks.evaluate import EvalResult, Gallery
from lensflow.tasks.helpers.heldout_photos import (
    COMBINED,
    CONDITIONS,
    GENERATOR,
    SEED_NAMESPACE,
    other_product,
    shopper_photo,
    upright,
)
from lensflow.tasks.helpers.metrics import topk
from lensflow.tasks.helpers.progress import progress_bar

DEFAULT_PER_CONDITION = 50  # photos per single condition (R@1 to about +-0.07)
DEFAULT_COMBINED = 300  # photos with every condition at once (the gated figure, R@1 to about +-0.03)


def heldout_rows(catalog: pd.DataFrame, n: int) -> pd.DataFrame:
    """The test products that get photographed, spread over the split (every k-th by product id)."""
    test = catalog[catalog["split"] == "test"].sort_values("product_id")
    if len(test) <= n:
        return test
    return test.iloc[np.linspace(0, len(test) - 1, n).round().astype(int)]


def heldout_photos(
    catalog: pd.DataFrame, data_dir: Path, condition: str, n: int
) -> tuple[list[str], list[Image.Image]]:
    """(product ids, upright photos) of `n` test products under `condition`."""
    rows = heldout_rows(catalog, n)
    ids = catalog["product_id"].tolist()
    path_of = dict(zip(catalog["product_id"], catalog["image_path"]))
    photos = []
    for pid, path in zip(rows["product_id"], rows["image_path"]):
        other = None
        if condition in ("second_product", COMBINED) and len(ids) > 1:
            with Image.open(data_dir / path_of[other_product(ids, pid, condition)]) as im:
                other = to_rgb(im)
        with Image.open(data_dir / path) as im:
            photo = shopper_photo(to_rgb(im), pid, condition, other)
        photos.append(to_rgb(upright(photo)))
    return rows["product_id"].tolist(), photos


def query_pixels(
    encoder: DualEncoder,
    catalog: pd.DataFrame,
    data_dir: Path,
    condition: str,
    n: int,
    cache_dir: Path | None = None,
    data_md5: str = "",
) -> tuple[list[str], np.ndarray]:
    """(product ids, the tower's input pixels of each photo after localization). The pixels depend on the
    photos, the localizer and the preprocessing, not on the heads: they are cached (with `cache_dir`), so the
    champion measured on the same eval set, and the next retrain, do not localize the photos again."""
    loc = encoder.localizer.config.fingerprint() if encoder.localizer is not None else None
    key = hashlib.sha256(
        json.dumps(
            [data_md5, SEED_NAMESPACE, GENERATOR, condition, n, loc, encoder.preprocess.fingerprint()],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:24]
    path = cache_dir / "heldout" / f"{key}.npz" if cache_dir is not None and data_md5 else None
    if path is not None and path.exists():
        saved = np.load(path)
        return saved["ids"].tolist(), saved["pixels"]
    ids, photos = heldout_photos(catalog, data_dir, condition, n)
    side = encoder.preprocess.size
    pixels = (
        np.stack([np.stack([encoder.preprocess.to_array(v) for v in encoder.photo_views(p)]) for p in photos])
        if photos
        else np.zeros((0, 1, side, side, 3), np.uint8)
    )  # [N, R views, H, W, 3]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".tmp.npz"), ids=np.array(ids), pixels=pixels)
        path.with_suffix(".tmp.npz").rename(path)
    return ids, pixels


def pixel_vectors(encoder: DualEncoder, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """[N, R, D] vectors of [N, R, H, W, 3] view pixels."""
    n, r = pixels.shape[:2]
    flat = pixels.reshape(n * r, *pixels.shape[2:])
    out = []
    with torch.inference_mode():
        for i in range(0, len(flat), batch_size):
            out.append(
                encoder.encode_images(encoder.preprocess.to_tensor(flat[i : i + batch_size])).float().cpu().numpy()
            )
    return (np.concatenate(out) if out else np.zeros((0, encoder.embed_dim), np.float32)).reshape(n, r, -1)


def best_ranking(vectors: np.ndarray, gallery: np.ndarray, k: int = 10) -> np.ndarray:
    """Top-k gallery rows per photo by its best score over its views ([N, R, D] or [N, D] vectors), as the
    service ranks a photo's views (serving.search.by_vector)."""
    if vectors.ndim == 2:
        return topk(vectors, gallery, k)
    scores = np.max(np.einsum("nrd,md->nrm", vectors, gallery, optimize=True), axis=1)
    top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def condition_metrics(query_ids: list[str], vectors: np.ndarray, gallery: Gallery) -> dict[str, float]:
    row_of = {pid: i for i, pid in enumerate(gallery.ids)}
    truth = np.array([row_of[p] for p in query_ids])
    ranked = best_ranking(vectors, gallery.vectors, 10)
    hit = ranked == truth[:, None]
    return {
        "recall_at_1": float(hit[:, 0].mean()),
        "recall_at_10": float(hit.any(axis=1).mean()),
        "category_precision_at_10": float((gallery.categories[ranked] == gallery.categories[truth][:, None]).mean()),
    }


def robustness(
    encoder: DualEncoder,
    gallery: Gallery,
    catalog: pd.DataFrame,
    data_dir: Path,
    per_condition: int = DEFAULT_PER_CONDITION,
    combined: int = DEFAULT_COMBINED,
    conditions: tuple[str, ...] = CONDITIONS,
    cache_dir: Path | None = None,
    data_md5: str = "",
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """{condition: {recall_at_1, recall_at_10, category_precision_at_10, queries}} for each single condition
    and `combined`, against every product in `gallery`."""
    out = {}
    plan = [(c, per_condition) for c in conditions if per_condition > 0] + [(COMBINED, combined)]
    bar = progress_bar(
        total=sum(n for _, n in plan), desc="held-out shopper photos", unit="photo", disable=not progress
    )
    for condition, n in plan:
        ids, pixels = query_pixels(encoder, catalog, data_dir, condition, n, cache_dir, data_md5)
        out[condition] = condition_metrics(ids, pixel_vectors(encoder, pixels), gallery) | {"queries": len(ids)}
        bar.update(n)
    bar.close()
    logging.getLogger(__name__).info(
        "held-out combined: R@1 %.3f R@10 %.3f category P@10 %.3f",
        out[COMBINED]["recall_at_1"],
        out[COMBINED]["recall_at_10"],
        out[COMBINED]["category_precision_at_10"],
    )
    return out


def flat_metrics(table: dict[str, dict[str, float]], train_recipe_r1: float | None = None) -> dict[str, float]:
    """MLflow-ready names: heldout_<condition>_<metric>, and the gap to the training-recipe shopper R@1."""
    flat = {f"heldout_{c}_{m}": v for c, ms in table.items() for m, v in ms.items() if m != "queries"}
    if train_recipe_r1 is not None and COMBINED in table:
        flat["generalisation_gap"] = train_recipe_r1 - table[COMBINED]["recall_at_1"]
    return flat


def table_of(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """The per-condition table back from flat metric names (conditions in the order they are generated)."""
    out: dict[str, dict[str, float]] = {}
    for c in (*CONDITIONS, COMBINED):
        row = {
            m: metrics[f"heldout_{c}_{m}"]
            for m in ("recall_at_1", "recall_at_10", "category_precision_at_10")
            if f"heldout_{c}_{m}" in metrics
        }
        if row:
            out[c] = row
    return out


def add_robustness(
    result: EvalResult,
    encoder: DualEncoder,
    gallery: Gallery,
    catalog: pd.DataFrame,
    data_dir: Path,
    per_condition: int = DEFAULT_PER_CONDITION,
    combined: int = DEFAULT_COMBINED,
    cache_dir: Path | None = None,
    data_md5: str = "",
    progress: bool = True,
) -> EvalResult:
    """`result` with the held-out table in its metrics (heldout_*, generalisation_gap) and its eval-set identity."""
    table = robustness(
        encoder,
        gallery,
        catalog,
        data_dir,
        per_condition,
        combined,
        cache_dir=cache_dir,
        data_md5=data_md5,
        progress=progress,
    )
    result.metrics |= flat_metrics(table, result.metrics.get("shopper_recall_at_1"))
    result.queries |= {f"heldout_{c}": int(r["queries"]) for c, r in table.items()}
    result.eval_set_md5 = hashlib.md5(
        f"{result.eval_set_md5}|{SEED_NAMESPACE}|{GENERATOR}|{per_condition}|{combined}".encode()
    ).hexdigest()
    return result
