"""Frozen-tower features, computed once per (data version, tower, preprocessing) and cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.encoder import DualEncoder
from tasks.images import encode_image_files


def feature_cache_key(data_md5: str, tower_fingerprint: str) -> str:
    return hashlib.sha256(f"{data_md5}|{tower_fingerprint}".encode()).hexdigest()[:24]


def image_tower_features(encoder: DualEncoder, catalog: pd.DataFrame, data_dir: Path, cache_dir: Path, data_md5: str,
                         batch_size: int = 128, workers: int = 0, progress: bool = True) -> tuple[np.ndarray, bool]:
    """Image tower features [N, F] aligned with catalog rows, and whether they came from the cache."""
    key = feature_cache_key(data_md5, encoder.image_tower.fingerprint())
    folder = cache_dir / "features" / key
    ids = catalog["product_id"].tolist()
    if (folder / "features.npy").exists():
        cached_ids = json.loads((folder / "ids.json").read_text())
        pos = {pid: i for i, pid in enumerate(cached_ids)}
        if all(pid in pos for pid in ids):
            feats = np.load(folder / "features.npy", mmap_mode="r")
            return np.ascontiguousarray(feats[[pos[p] for p in ids]]), True
    feats = encode_image_files(encoder.image_tower, data_dir, catalog["image_path"].tolist(), encoder.preprocess,
                               device=str(encoder.device), batch_size=batch_size, workers=workers,
                               desc="image tower features", progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "features.tmp.npy"
    np.save(tmp, feats)
    (folder / "ids.json").write_text(json.dumps(ids))
    (folder / "tower.json").write_text(json.dumps({"data_md5": data_md5, "tower": encoder.image_tower.spec()}, indent=1))
    tmp.rename(folder / "features.npy")
    return feats, False
