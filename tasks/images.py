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
from models.preprocess import ImagePreprocess


class CatalogImages(Dataset):
    def __init__(self, data_dir: Path, image_paths: list[str], preprocess: ImagePreprocess):
        self.data_dir, self.paths, self.preprocess = data_dir, list(image_paths), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        with Image.open(self.data_dir / self.paths[i]) as im:
            return self.preprocess.to_array(im)


def image_batches(data_dir: Path, image_paths: list[str], preprocess: ImagePreprocess, batch_size: int = 128,
                  workers: int = 0) -> Iterator[torch.Tensor]:
    """Normalised pixel batches in catalog order; with workers > 0 decoding runs in that many
    spawned processes (not forked: the flow's process holds Prefect, LanceDB and torch threads)."""
    loader = DataLoader(CatalogImages(data_dir, image_paths, preprocess), batch_size=batch_size, num_workers=workers,
                        collate_fn=np.stack, prefetch_factor=4 if workers else None,
                        multiprocessing_context="spawn" if workers else None)
    for arrays in loader:
        yield preprocess.to_tensor(arrays)


@torch.inference_mode()
def encode_image_files(fn, data_dir: Path, image_paths: list[str], preprocess: ImagePreprocess, device: str = "cpu",
                       batch_size: int = 128, workers: int = 0, desc: str = "encode images", progress: bool = True) -> np.ndarray:
    """Apply `fn(pixels) -> [B, D]` to every image; float32 [N, D] in input order."""
    tune_malloc()
    out = []
    with tqdm(total=len(image_paths), desc=desc, unit="img", disable=not progress) as bar:
        for pixels in image_batches(data_dir, image_paths, preprocess, batch_size, workers):
            out.append(fn(pixels.to(device, non_blocking=True)).float().cpu().numpy())
            bar.update(len(pixels))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
