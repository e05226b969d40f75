"""Reading catalog images in parallel workers and encoding them in batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lensflow.core.runtime import tune_malloc
from lensflow.models.augment import ShopperAugment
from lensflow.models.preprocess import ImagePreprocess
from lensflow.tasks.helpers.progress import progress_bar

BATCH = 128  # images per encoder forward when embedding a catalog or views (a CPU sweet spot; GPUs take more)


class CatalogImages(Dataset):
    """Catalog images as uint8 arrays; with `augment`, each re-photographed with its own fixed draw
    (keyed by image path and `seed`, so any worker order gives the same pixels)."""

    def __init__(
        self,
        data_dir: Path,
        image_paths: list[str],
        preprocess: ImagePreprocess,
        augment: ShopperAugment | None = None,
        seed: int = 0,
    ):
        self.data_dir, self.paths, self.preprocess = data_dir, list(image_paths), preprocess
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        with Image.open(self.data_dir / self.paths[i]) as im:
            if self.augment is not None:
                im = self.augment(im, self.augment.rng(self.paths[i], self.seed))
            return self.preprocess.to_array(im)


def auto_workers(n_images: int, augment: ShopperAugment | None) -> int:
    """Loader processes for a pass when none are configured. Measured on 2 cores (BENCHMARKS.md): a
    worker pays off when each image costs real CPU before the model (shopper augmentation: 393 vs 286
    img/s), not for small catalog images (409 vs 733 img/s: the model wants both cores), and never for
    a few thousand images (starting a worker imports torch: ~3 s)."""
    return 1 if augment is not None and n_images >= 5000 and (os.cpu_count() or 1) >= 2 else 0


@contextmanager
def threads_beside(workers: int):
    """While `workers` loader processes run, the model uses the remaining cores: oversubscribed
    OpenMP threads spin-wait on each other (measured 2-3x slower on 2 cores)."""
    before = torch.get_num_threads()
    if workers > 0:
        torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def image_batches(
    data_dir: Path,
    image_paths: list[str],
    preprocess: ImagePreprocess,
    batch_size: int = BATCH,
    workers: int | None = None,
    augment: ShopperAugment | None = None,
    seed: int = 0,
) -> Iterator[torch.Tensor]:
    """Normalised pixel batches in catalog order; with workers > 0 decoding runs in that many
    spawned processes (not forked: the flow's process holds Prefect, LanceDB and torch threads);
    None picks by `auto_workers`."""
    workers = auto_workers(len(image_paths), augment) if workers is None else workers
    loader = DataLoader(
        CatalogImages(data_dir, image_paths, preprocess, augment, seed),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=np.stack,
        prefetch_factor=4 if workers else None,
        multiprocessing_context="spawn" if workers else None,
    )
    with threads_beside(workers):
        for arrays in loader:
            yield preprocess.to_tensor(arrays)


def iter_encoded(
    fn,
    data_dir: Path,
    image_paths: list[str],
    preprocess: ImagePreprocess,
    device: str = "cpu",
    batch_size: int = BATCH,
    workers: int | None = None,
    desc: str = "encode images",
    progress: bool = True,
    augment: ShopperAugment | None = None,
    seed: int = 0,
    dtype=np.float32,
    done: int = 0,
) -> Iterator[np.ndarray]:
    """`fn(pixels) -> [B, ...]` batch by batch, in input order (memory stays flat in the number of images);
    `done`: images encoded earlier (a resumed run), counted in the progress bar."""
    tune_malloc()
    pin = device.startswith("cuda")
    with progress_bar(total=len(image_paths) + done, initial=done, desc=desc, unit="img", disable=not progress) as bar:
        for pixels in image_batches(data_dir, image_paths, preprocess, batch_size, workers, augment, seed):
            if pin:
                pixels = pixels.pin_memory()
            with torch.inference_mode():  # per batch: a generator must not leave the caller in inference mode
                out = fn(pixels.to(device, non_blocking=True)).float().cpu().numpy().astype(dtype, copy=False)
            bar.update(len(pixels))
            yield out
