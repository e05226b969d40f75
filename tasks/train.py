"""Fine-tune the encoder's projection heads on frozen, cached tower features."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tasks import stage

from models.encoder import DualEncoder, build_encoder
from models.train import HeadsTrainConfig, train_heads
from tasks.catalog import category_text
from tasks.features import image_tower_features


@dataclass
class TrainResult:
    encoder: DualEncoder
    model_dir: Path
    history: list[dict]
    seconds: float
    feature_seconds: float
    feature_cache_hit: bool
    tower_features: np.ndarray  # image tower features for every catalog row (frozen towers: reusable by embed)
    params: dict = field(default_factory=dict)


@torch.inference_mode()
def text_tower_features(encoder: DualEncoder, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    return torch.cat([encoder.text_tower(texts[i : i + batch_size]).float().cpu() for i in range(0, len(texts), batch_size)])


def train_encoder(
    preset: str | dict,
    catalog: pd.DataFrame,
    data_dir: Path,
    data_md5: str,
    cache_dir: Path,
    out_dir: Path,
    cfg: HeadsTrainConfig,
    device: str = "cpu",
    batch_size: int = 128,
    loader_workers: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Build the encoder from a preset, fit its heads on the train split, save it to out_dir."""
    encoder = build_encoder(preset, seed=cfg.seed).to(device)
    t0 = time.perf_counter()
    feats, hit = image_tower_features(encoder, catalog, data_dir, cache_dir, data_md5, batch_size, loader_workers, progress)
    feature_seconds = time.perf_counter() - t0
    train = (catalog["split"] == "train").to_numpy()
    if train.sum() < 2:
        raise ValueError(f"the catalog has {int(train.sum())} train rows; at least 2 are needed to fine-tune")
    # Each product is paired with its title or its category's name (drawn per batch), so that
    # category searches work whatever wording the titles use.
    titles = catalog.loc[train, "title"].tolist()
    categories = catalog.loc[train, "category"].tolist()
    unique = sorted(set(titles) | {category_text(c) for c in categories})
    text_feats = text_tower_features(encoder, unique)
    where = {t: i for i, t in enumerate(unique)}
    text_index = torch.tensor([[where[t], where[category_text(c)]] for t, c in zip(titles, categories)])
    cats = sorted(set(categories))
    label_of = {c: i for i, c in enumerate(cats)}
    labels = torch.tensor([label_of[c] for c in categories])
    t1 = time.perf_counter()
    history = train_heads(encoder, torch.from_numpy(feats[train]), text_feats, text_index, labels, cfg, progress=progress)
    seconds = time.perf_counter() - t1
    encoder.save(out_dir)
    params = {"preset": encoder.config.get("name", "custom"), "strategy": "heads", **vars(cfg),
              "train_rows": int(train.sum()), "distinct_titles": len(unique), "embed_dim": encoder.embed_dim}
    return TrainResult(encoder, out_dir, history, seconds, feature_seconds, hit, feats, params)


train_encoder_task = stage(train_encoder, name="fine-tune-heads")
