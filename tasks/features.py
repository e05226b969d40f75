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

from models.augment import ShopperAugment
from models.encoder import DualEncoder
from models.preprocess import ImagePreprocess
from tasks.images import encode_image_files


def feature_cache_key(data_md5: str, fingerprint: str, augment: ShopperAugment | None = None, seed: int = 0) -> str:
    aug = json.dumps(augment.fingerprint(), sort_keys=True) if augment else "none"
    return hashlib.sha256(f"{data_md5}|{fingerprint}|{aug}|{seed}".encode()).hexdigest()[:24]


def cached_image_features(fn: Callable, fingerprint: str, preprocess: ImagePreprocess, catalog: pd.DataFrame, data_dir: Path,
                          cache_dir: Path, data_md5: str, augment: ShopperAugment | None = None, seed: int = 0,
                          device: str = "cpu", batch_size: int = 128, workers: int = 0, dtype=np.float32,
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


def image_tower_features(encoder: DualEncoder, catalog: pd.DataFrame, data_dir: Path, cache_dir: Path, data_md5: str,
                         batch_size: int = 128, workers: int = 0, progress: bool = True,
                         augment: ShopperAugment | None = None, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Image tower features [N, F] aligned with catalog rows, and whether they came from the cache."""
    tower = encoder.image_tower
    desc = "image tower features" + (f" (shopper views, seed {seed})" if augment else "")
    return cached_image_features(tower, tower.fingerprint(), encoder.preprocess, catalog, data_dir, cache_dir, data_md5,
                                 augment, seed, str(encoder.device), batch_size, workers, desc=desc, progress=progress)
