"""The shopper-photo query set: each test product re-photographed once, with fixed draws.

The photos are a pure function of the catalog image, the augmentation recipe and SHOPPER_SEED,
so they are not stored: they are made again (and their frozen-tower features come from the
cache) whenever a model is evaluated, and `example_sheet` renders some for people to look at.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from lensflow.models.augment import ShopperAugment
from lensflow.models.encoder import DualEncoder
from lensflow.models.preprocess import to_rgb
from lensflow.models.train import embed_inputs
from lensflow.tasks.evaluate import ShopperQueries
from lensflow.tasks.helpers.features import suffix_inputs
from lensflow.tasks.helpers.images import BATCH

SHOPPER_SEED = 1_000_003  # training views use seeds 1..V: never the evaluation draws


def shopper_rows(catalog: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """The test products that get a shopper photo (all of them, or the first `limit` by product id)."""
    test = catalog[catalog["split"] == "test"].sort_values("product_id")
    return test if limit is None else test.head(limit)


def shopper_photo(data_dir: Path, image_path: str, augment: ShopperAugment, seed: int = SHOPPER_SEED) -> Image.Image:
    with Image.open(data_dir / image_path) as im:
        return augment(im, augment.rng(image_path, seed))


def shopper_queries(
    encoder: DualEncoder,
    catalog: pd.DataFrame,
    data_dir: Path,
    cache_dir: Path,
    data_md5: str,
    augment: ShopperAugment | None = None,
    limit: int | None = None,
    batch_size: int = BATCH,
    workers: int | None = None,
    progress: bool = True,
) -> ShopperQueries:
    """Embed the shopper photos of the test products with `encoder`."""
    augment = augment or ShopperAugment()
    rows = shopper_rows(catalog, limit)
    split, inputs, _ = suffix_inputs(
        encoder,
        rows,
        data_dir,
        cache_dir,
        data_md5,
        augment,
        SHOPPER_SEED,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )
    vectors = embed_inputs(encoder, split.suffix, inputs).numpy()
    return ShopperQueries(rows["product_id"].tolist(), vectors, augment.fingerprint(), SHOPPER_SEED)


def example_sheet(
    catalog: pd.DataFrame, data_dir: Path, out: Path, augment: ShopperAugment | None = None, n: int = 8
) -> Path:
    """A PNG grid: catalog photo, then its shopper photo, for `n` test products."""
    augment = augment or ShopperAugment()
    rows = shopper_rows(catalog, n)
    s = augment.size
    sheet = Image.new("RGB", (2 * s, s * max(1, len(rows))), "white")
    for r, path in enumerate(rows["image_path"]):
        with Image.open(data_dir / path) as im:
            sheet.paste(to_rgb(im).resize((s, s)), (0, r * s))
        sheet.paste(shopper_photo(data_dir, path, augment), (s, r * s))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
