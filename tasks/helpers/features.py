"""Frozen-tower features, computed once and cached on disk.

The cache key is everything that decides the numbers: the data version (DVC md5), what computes
them (the tower or tower prefix fingerprint: architecture, weights, preprocessing), and, for
augmented views, the augmentation config and seed. A change of any of them misses the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lensflow.models.augment import ShopperAugment
from lensflow.models.encoder import DualEncoder
from lensflow.models.preprocess import ImagePreprocess
from lensflow.models.towers import TowerSplit
from lensflow.models.train import TrainConfig
from lensflow.tasks.helpers.images import BATCH, iter_encoded

PART_ROWS = 4096  # rows per saved part: ~5 s of encoding on 2 CPU cores, the most a killed run loses


def feature_cache_key(data_md5: str, fingerprint: str, augment: ShopperAugment | None = None, seed: int = 0) -> str:
    aug = json.dumps(augment.fingerprint(), sort_keys=True) if augment else "none"
    return hashlib.sha256(f"{data_md5}|{fingerprint}|{aug}|{seed}".encode()).hexdigest()[:24]


def cached_image_features(
    fn: Callable,
    fingerprint: str,
    preprocess: ImagePreprocess,
    catalog: pd.DataFrame,
    data_dir: Path,
    cache_dir: Path,
    data_md5: str,
    augment: ShopperAugment | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = BATCH,
    workers: int | None = None,
    dtype=np.float32,
    desc: str = "image features",
    progress: bool = True,
    part_rows: int | None = None,
) -> tuple[np.ndarray, bool]:
    """`fn(pixels)` for every catalog row (augmented when asked), aligned with the rows, and whether
    it came from the cache. A cached entry serves any subset or order of the rows it holds. While
    encoding, every `part_rows` rows are saved as they complete: a run killed midway (even SIGKILL)
    resumes from the saved parts and encodes only the rows that are missing."""
    folder = cache_dir / "features" / feature_cache_key(data_md5, fingerprint, augment, seed)
    ids = catalog["product_id"].tolist()
    if (folder / "features.npy").exists():
        cached_ids = json.loads((folder / "ids.json").read_text())
        pos = {pid: i for i, pid in enumerate(cached_ids)}
        if all(pid in pos for pid in ids):
            feats = np.load(folder / "features.npy", mmap_mode="r")
            rows = [pos[p] for p in ids]
            return (
                np.array(feats) if rows == list(range(len(cached_ids))) else np.ascontiguousarray(feats[rows])
            ), True
    paths = catalog["image_path"].tolist()
    parts = ResumableParts(folder / "parts", ids, part_rows or PART_ROWS)
    todo = parts.missing()
    if parts.done_rows:
        logging.getLogger(__name__).warning(
            f"{desc}: resuming an interrupted run: {parts.done_rows:,} of {len(ids):,} rows "
            f"already encoded, {len(ids) - parts.done_rows:,} to go"
        )
    todo_paths = [p for start, stop in todo for p in paths[start:stop]]
    batches = iter_encoded(
        fn,
        data_dir,
        todo_paths,
        preprocess,
        device=device,
        batch_size=batch_size,
        workers=workers,
        desc=desc,
        progress=progress,
        augment=augment,
        seed=seed,
        dtype=dtype,
        done=parts.done_rows,
    )
    feats = parts.fill(todo, batches)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "features.tmp.npy"
    np.save(tmp, feats)
    (folder / "ids.json").write_text(json.dumps(ids))
    (folder / "key.json").write_text(
        json.dumps(
            {
                "data_md5": data_md5,
                "fingerprint": fingerprint,
                "seed": seed,
                "augment": augment.fingerprint() if augment else None,
            },
            indent=1,
        )
    )
    tmp.rename(folder / "features.npy")
    parts.clear()
    return feats, False


class ResumableParts:
    """Rows encoded in parts of at most `part_rows`, each saved atomically (write, then rename) as soon
    as it is complete, in a file named for its row span. The parts belong to one list of ids (a
    different list starts afresh); a resumed run fills the gaps, whatever part size it uses."""

    def __init__(self, folder: Path, ids: list[str], part_rows: int):
        self.folder, self.n, self.part_rows = folder, len(ids), part_rows
        plan = {"ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(), "rows": self.n}
        plan_file = folder / "plan.json"
        saved = self._saved() if plan_file.exists() and json.loads(plan_file.read_text()) == plan else None
        if saved is None or any(b[0] < a[1] for a, b in zip(saved, saved[1:])):  # another catalog, or overlapping parts
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            plan_file.write_text(json.dumps(plan))
            saved = []
        self.done = saved
        self.done_rows = sum(stop - start for start, stop in saved)

    def _file(self, start: int, stop: int) -> Path:
        return self.folder / f"{start:012d}-{stop:012d}.npy"

    def _saved(self) -> list[tuple[int, int]]:
        return sorted(
            tuple(int(x) for x in f.stem.split("-")) for f in self.folder.glob("*-*.npy")
        )  # temp files have no "-"

    def missing(self) -> list[tuple[int, int]]:
        """The row spans no saved part covers, cut into parts of at most `part_rows`."""
        gaps, at = [], 0
        for start, stop in [*self.done, (self.n, self.n)]:
            gaps += [(a, min(a + self.part_rows, start)) for a in range(at, start, self.part_rows)]
            at = stop
        return gaps

    def fill(self, todo: list[tuple[int, int]], batches: Iterator[np.ndarray]) -> np.ndarray:
        """Save the rows of `todo` from `batches` (their outputs, in order) part by part; return all rows."""
        pending: list[np.ndarray] = []
        have = 0
        for start, stop in todo:
            while have < stop - start:
                batch = next(batches, None)
                if batch is None:
                    raise RuntimeError(f"the encoder stopped after {start + have} rows; {self.n} were expected")
                pending.append(batch)
                have += len(batch)
            rows = np.concatenate(pending)
            tmp = self.folder / f"{start:012d}.tmp.npy"
            np.save(tmp, rows[: stop - start])
            tmp.rename(self._file(start, stop))
            pending, have = ([rows[stop - start :]] if have > stop - start else []), have - (stop - start)
        spans = sorted(self.done + todo)
        loaded = [np.load(self._file(*span)) for span in spans]
        return np.concatenate(loaded) if loaded else np.zeros((0, 0), np.float32)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def encoder_split(encoder: DualEncoder) -> TowerSplit:
    """The frozen prefix / trained suffix of the encoder's image tower, as it was fine-tuned
    (an encoder that records no fine-tuning is all frozen: the prefix is the whole tower)."""
    strategy = encoder.config.get("fine_tune", {})
    blocks = TrainConfig(**strategy).image_blocks if strategy else 0
    return encoder.image_tower.split(blocks)


def suffix_inputs(
    encoder: DualEncoder,
    catalog: pd.DataFrame,
    data_dir: Path,
    cache_dir: Path,
    data_md5: str,
    augment: ShopperAugment | None = None,
    seed: int = 0,
    batch_size: int = BATCH,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[TowerSplit, np.ndarray, bool]:
    """Cached outputs of the frozen prefix for these rows (optionally of their shopper views), the
    split they belong to, and whether they came from the cache."""
    split = encoder_split(encoder)
    full = isinstance(split.prefix, torch.nn.Identity)
    desc = ("pixels" if full else "frozen tower features") + (f" (shopper views, seed {seed})" if augment else "")
    feats, hit = cached_image_features(
        split.prefix,
        split.fingerprint,
        encoder.preprocess,
        catalog,
        data_dir,
        cache_dir,
        data_md5,
        augment,
        seed,
        str(encoder.device),
        batch_size,
        workers,
        dtype=np.float16 if full else np.float32,
        desc=desc,
        progress=progress,
    )
    return split, feats, hit
