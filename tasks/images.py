"""Reading catalog images in parallel workers and encoding them in batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lensflow.runtime import tune_malloc
from models.augment import ShopperAugment
from models.preprocess import ImagePreprocess


class CatalogImages(Dataset):
    """Catalog images as uint8 arrays; with `augment`, each re-photographed with its own fixed draw
    (keyed by image path and `seed`, so any worker order gives the same pixels)."""

    def __init__(self, data_dir: Path, image_paths: list[str], preprocess: ImagePreprocess,
                 augment: ShopperAugment | None = None, seed: int = 0):
        self.data_dir, self.paths, self.preprocess = data_dir, list(image_paths), preprocess
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        with Image.open(self.data_dir / self.paths[i]) as im:
            if self.augment is not None:
                im = self.augment(im, self.augment.rng(self.paths[i], self.seed))
            return self.preprocess.to_array(im)


def image_batches(data_dir: Path, image_paths: list[str], preprocess: ImagePreprocess, batch_size: int = 128,
                  workers: int = 0, augment: ShopperAugment | None = None, seed: int = 0) -> Iterator[torch.Tensor]:
    """Normalised pixel batches in catalog order; with workers > 0 decoding runs in that many
    spawned processes (not forked: the flow's process holds Prefect, LanceDB and torch threads)."""
    loader = DataLoader(CatalogImages(data_dir, image_paths, preprocess, augment, seed), batch_size=batch_size, num_workers=workers,
                        collate_fn=np.stack, prefetch_factor=4 if workers else None,
                        multiprocessing_context="spawn" if workers else None)
    for arrays in loader:
        yield preprocess.to_tensor(arrays)


@torch.inference_mode()
def encode_image_files(fn, data_dir: Path, image_paths: list[str], preprocess: ImagePreprocess, device: str = "cpu",
                       batch_size: int = 128, workers: int = 0, desc: str = "encode images", progress: bool = True,
                       augment: ShopperAugment | None = None, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Apply `fn(pixels) -> [B, ...]` to every image (augmented when asked); [N, ...] in input order."""
    tune_malloc()
    out = []
    with tqdm(total=len(image_paths), desc=desc, unit="img", disable=not progress) as bar:
        for pixels in image_batches(data_dir, image_paths, preprocess, batch_size, workers, augment, seed):
            out.append(fn(pixels.to(device, non_blocking=True)).float().cpu().numpy().astype(dtype, copy=False))
            bar.update(len(pixels))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
