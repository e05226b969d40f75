"""Fine-tune the encoder with the chosen strategy on cached tower inputs.

The frozen part of the image tower (all of it for `heads`, all but the last blocks for `partial`,
nothing for `full`) runs once per data version and is cached; so is its output on the shopper-
augmented training views. A heads retrain on unchanged data never runs the image tower again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lensflow.models.augment import ShopperAugment
from lensflow.models.encoder import DualEncoder, build_encoder
from lensflow.models.localize import Localizer, catalog_look
from lensflow.models.preprocess import to_rgb
from lensflow.models.train import TrainConfig, TrainData, Trainer, tower_outputs, validation_scores
from lensflow.tasks import stage
from lensflow.tasks.helpers.catalog import category_text
from lensflow.tasks.helpers.features import suffix_inputs
from lensflow.tasks.helpers.images import BATCH
from lensflow.tasks.helpers.progress import StageProgress


@dataclass
class TrainResult:
    encoder: DualEncoder
    model_dir: Path
    history: list[dict]
    seconds: float
    feature_seconds: float
    feature_cache_hit: bool
    tower_features: (
        np.ndarray
    )  # trained image tower's features for every catalog row (the embed stage only runs the head)
    params: dict = field(default_factory=dict)


def train_encoder(
    preset: str | dict,
    catalog: pd.DataFrame,
    data_dir: Path,
    data_md5: str,
    cache_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    device: str = "cpu",
    batch_size: int = BATCH,
    loader_workers: int | None = None,
    augment: ShopperAugment | None = None,
    progress: bool = True,
) -> TrainResult:
    """Build the encoder from a preset, fine-tune it on the train split (early stopping on the
    val split when there is one), save it to out_dir."""
    augment = augment or ShopperAugment()
    encoder = build_encoder(preset, seed=cfg.seed).to(device)
    encoder.config["fine_tune"] = cfg.as_dict()
    if encoder.localizer is not None:
        match_catalog_look(encoder, catalog, data_dir)
    train = (catalog["split"] == "train").to_numpy()
    val = (catalog["split"] == "val").to_numpy()
    if train.sum() < 2:
        raise ValueError(f"the catalog has {int(train.sum())} train rows; at least 2 are needed to fine-tune")
    t0 = time.perf_counter()
    split, clean, hit = suffix_inputs(
        encoder,
        catalog,
        data_dir,
        cache_dir,
        data_md5,
        batch_size=batch_size,
        workers=loader_workers,
        progress=progress,
    )
    learn = train | val
    views = None
    if cfg.aug_views:
        per_view = []
        for v in range(cfg.aug_views):
            _, feats, view_hit = suffix_inputs(
                encoder,
                catalog[learn],
                data_dir,
                cache_dir,
                data_md5,
                augment,
                seed=v + 1,
                batch_size=batch_size,
                workers=loader_workers,
                progress=progress,
            )
            per_view.append(feats)
            hit = hit and view_hit
        views = torch.from_numpy(np.stack(per_view, axis=1))  # [train+val rows, V, ...]
    feature_seconds = time.perf_counter() - t0

    # Each product is paired with its title or its category's name (drawn per step), so that
    # category searches work whatever wording the titles use.
    titles, categories = catalog["title"].tolist(), catalog["category"].tolist()
    cats = sorted(set(categories))
    texts = sorted(set(titles) | {category_text(c) for c in cats})
    where = {t: i for i, t in enumerate(texts)}
    text_index = torch.tensor([[where[t], where[category_text(c)]] for t, c in zip(titles, categories)])
    label_of = {c: i for i, c in enumerate(cats)}
    labels = torch.tensor([label_of[c] for c in categories])
    clean_t = torch.from_numpy(np.asarray(clean))
    tr, va = torch.from_numpy(np.flatnonzero(train)), torch.from_numpy(np.flatnonzero(val))
    view_of = torch.from_numpy(np.cumsum(learn) - 1)  # catalog row -> its position among the viewed (train + val) rows
    data = TrainData(clean_t[tr], views[view_of[tr]] if views is not None else None, texts, text_index[tr], labels[tr])
    validate = None
    if len(va) >= 2:
        val_views = views[view_of[va]] if views is not None else None

        def validate():
            return validation_scores(
                encoder,
                split.suffix,
                clean_t[va],
                val_views,
                labels[va],  # noqa: E731
                [category_text(c) for c in cats],
                list(range(len(cats))),
            )

    trainer = Trainer(encoder, split.suffix, cfg)
    t1 = time.perf_counter()
    stage = StageProgress(f"fine-tune ({cfg.strategy})", cfg.epochs)

    def on_epoch(epoch: int, record: dict) -> None:
        score = f", val_score {record['val_score']:.4f}" if "val_score" in record else ""
        stage.update(epoch + 1, force=True, note=f"epochs; loss {record['loss']:.4f}{score}")

    history = trainer.fit(data, validate, on_epoch=on_epoch, progress=progress)
    seconds = time.perf_counter() - t1
    tower_features = clean if cfg.strategy == "heads" else tower_outputs(split.suffix, clean_t, encoder.device).numpy()
    encoder.save(out_dir)
    best = max(reversed(history), key=lambda h: h.get("val_score", -1)) if validate else history[-1]  # last of the ties
    params = {
        "preset": encoder.config.get("name", "custom"),
        **cfg.as_dict(),
        "train_rows": int(train.sum()),
        "val_rows": int(val.sum()),
        "distinct_texts": len(texts),
        "embed_dim": encoder.embed_dim,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "augment": augment.fingerprint(),
    }
    return TrainResult(encoder, out_dir, history, seconds, feature_seconds, hit, np.asarray(tower_features), params)


def match_catalog_look(encoder: DualEncoder, catalog: pd.DataFrame, data_dir: Path, sample: int = 500) -> None:
    """Record in the encoder's localizer (and config) what its catalog's photos look like (studio colour,
    grayscale: models.localize.catalog_look), so query crops are made to look the same."""
    paths = catalog["image_path"].sort_values().tolist()
    images = []
    for path in paths[:: max(1, len(paths) // sample)][:sample]:
        with Image.open(data_dir / path) as im:
            images.append(to_rgb(im))
    look = catalog_look(images)
    encoder.localizer = Localizer(encoder.localizer.model, replace(encoder.localizer.config, **look))
    encoder.config["localize"] = dict(
        encoder.config["localize"],
        background=list(look["background"]) if look["background"] else None,
        grayscale=look["grayscale"],
    )


train_encoder_task = stage(train_encoder, name="fine-tune")
