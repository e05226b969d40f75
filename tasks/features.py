"""Frozen-tower features, computed once and cached on disk.

The cache key is everything that decides the numbers: the data version (DVC md5), what computes
them (the tower or tower prefix fingerprint: architecture, weights, preprocessing), and, for
augmented views, the augmentation config and seed. A change of any of them misses the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.augment import ShopperAugment
from models.encoder import DualEncoder
from models.preprocess import ImagePreprocess
from models.towers import TowerSplit
from models.train import TrainConfig
from tasks.images import encode_image_files


def feature_cache_key(data_md5: str, fingerprint: str, augment: ShopperAugment | None = None, seed: int = 0) -> str:
    aug = json.dumps(augment.fingerprint(), sort_keys=True) if augment else "none"
    return hashlib.sha256(f"{data_md5}|{fingerprint}|{aug}|{seed}".encode()).hexdigest()[:24]


def cached_image_features(fn: Callable, fingerprint: str, preprocess: ImagePreprocess, catalog: pd.DataFrame, data_dir: Path,
                          cache_dir: Path, data_md5: str, augment: ShopperAugment | None = None, seed: int = 0,
                          device: str = "cpu", batch_size: int = 128, workers: int | None = None, dtype=np.float32,
                          desc: str = "image features", progress: bool = True) -> tuple[np.ndarray, bool]:
    """`fn(pixels)` for every catalog row (augmented when asked), aligned with the rows, and whether
    it came from the cache. A cached entry serves any subset or order of the rows it holds."""
    folder = cache_dir / "features" / feature_cache_key(data_md5, fingerprint, augment, seed)
    ids = catalog["product_id"].tolist()
    if (folder / "features.npy").exists():
        cached_ids = json.loads((folder / "ids.json").read_text())
        pos = {pid: i for i, pid in enumerate(cached_ids)}
        if all(pid in pos for pid in ids):
            feats = np.load(folder / "features.npy", mmap_mode="r")
            rows = [pos[p] for p in ids]
            return (np.array(feats) if rows == list(range(len(cached_ids))) else np.ascontiguousarray(feats[rows])), True
    feats = encode_image_files(fn, data_dir, catalog["image_path"].tolist(), preprocess, device=device, batch_size=batch_size,
                               workers=workers, desc=desc, progress=progress, augment=augment, seed=seed, dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "features.tmp.npy"
    np.save(tmp, feats)
    (folder / "ids.json").write_text(json.dumps(ids))
    (folder / "key.json").write_text(json.dumps({"data_md5": data_md5, "fingerprint": fingerprint, "seed": seed,
                                                 "augment": augment.fingerprint() if augment else None}, indent=1))
    tmp.rename(folder / "features.npy")
    return feats, False


def encoder_split(encoder: DualEncoder) -> TowerSplit:
    """The frozen prefix / trained suffix of the encoder's image tower, as it was fine-tuned
    (an encoder that records no fine-tuning is all frozen: the prefix is the whole tower)."""
    strategy = encoder.config.get("fine_tune", {})
    blocks = TrainConfig(**strategy).image_blocks if strategy else 0
    return encoder.image_tower.split(blocks)


def suffix_inputs(encoder: DualEncoder, catalog: pd.DataFrame, data_dir: Path, cache_dir: Path, data_md5: str,
                  augment: ShopperAugment | None = None, seed: int = 0, batch_size: int = 128, workers: int | None = None,
                  progress: bool = True) -> tuple[TowerSplit, np.ndarray, bool]:
    """Cached outputs of the frozen prefix for these rows (optionally of their shopper views), the
    split they belong to, and whether they came from the cache."""
    split = encoder_split(encoder)
    full = isinstance(split.prefix, torch.nn.Identity)
    desc = ("pixels" if full else "frozen tower features") + (f" (shopper views, seed {seed})" if augment else "")
    feats, hit = cached_image_features(split.prefix, split.fingerprint, encoder.preprocess, catalog, data_dir, cache_dir, data_md5,
                                       augment, seed, str(encoder.device), batch_size, workers,
                                       dtype=np.float16 if full else np.float32, desc=desc, progress=progress)
    return split, feats, hit
