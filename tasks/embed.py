"""Embed the catalog in batches with the trained encoder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lensflow.models.encoder import DualEncoder
from lensflow.tasks import stage
from lensflow.tasks.helpers.images import BATCH, iter_encoded
from lensflow.tasks.helpers.progress import progress_bar


def embedding_batches(
    encoder: DualEncoder,
    catalog: pd.DataFrame,
    data_dir: Path,
    tower_features: np.ndarray | None = None,
    batch_size: int = BATCH,
    loader_workers: int | None = None,
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """L2-normalised float32 embeddings in catalog order, one batch at a time (stream them into LanceDB
    with `tasks.index.build_index` to keep memory flat in catalog size).

    With `tower_features` (the frozen image tower's output for these rows, e.g. from the
    training feature cache) only the head runs; otherwise every image is read and encoded.
    """
    if tower_features is not None:
        if len(tower_features) != len(catalog):
            raise ValueError(f"tower_features has {len(tower_features)} rows but the catalog has {len(catalog)}")
        for i in progress_bar(
            range(0, len(catalog), 4096), desc="embed (head on cached features)", disable=not progress
        ):
            with torch.inference_mode():  # per batch: a generator must not leave the caller in inference mode
                feats = torch.from_numpy(np.asarray(tower_features[i : i + 4096])).to(encoder.device)
                out = encoder.embed_features(feats).cpu().numpy().astype(np.float32, copy=False)
            yield out
        return
    yield from iter_encoded(
        encoder.encode_images,
        data_dir,
        catalog["image_path"].tolist(),
        encoder.preprocess,
        device=str(encoder.device),
        batch_size=batch_size,
        workers=loader_workers,
        desc="embed catalog",
        progress=progress,
    )


def embed_catalog(
    encoder: DualEncoder,
    catalog: pd.DataFrame,
    data_dir: Path,
    tower_features: np.ndarray | None = None,
    batch_size: int = BATCH,
    loader_workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """L2-normalised float32 [N, D] image embeddings in catalog order."""
    out = list(embedding_batches(encoder, catalog, data_dir, tower_features, batch_size, loader_workers, progress))
    return np.concatenate(out) if out else np.zeros((0, encoder.embed_dim), np.float32)


@torch.inference_mode()
def embed_texts(encoder: DualEncoder, texts: list[str], batch_size: int = 256) -> np.ndarray:
    return torch.cat(
        [encoder.encode_texts(texts[i : i + batch_size]).cpu() for i in range(0, len(texts), batch_size)]
    ).numpy()


embed_catalog_task = stage(embed_catalog, name="embed-catalog")
