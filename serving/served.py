"""The served pair: the champion's encoder and exactly the LanceDB table it records, loaded together."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lensflow.core.champion import Champion, IndexMismatch, index_problems, model_dir, resolve_champion, restore_index
from lensflow.core.dvc import DvcError
from lensflow.core.index import connect
from lensflow.core.settings import Settings
from lensflow.serving.batching import Batcher


@dataclass
class Served:
    champion: Champion
    encoder: object
    table: object
    max_batch: int = 32  # concurrent text queries encoded in one forward (LENSFLOW_SERVE_MAX_BATCH)
    text_batcher: Batcher = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.text_batcher = Batcher(self.encode_texts, self.max_batch)

    def encode_texts(self, texts: list[str]) -> list[np.ndarray]:
        """The query vectors [D] of `texts`, in one forward (`text_batcher(text)` batches concurrent queries)."""
        import torch

        with torch.inference_mode():
            return list(self.encoder.encode_texts(texts).cpu().numpy())


def load_champion(settings: Settings, device: str = "cpu") -> Served:
    """The champion encoder and exactly its index (pulled from DVC when missing); IndexMismatch when they
    do not match."""
    import mlflow

    from lensflow.models.encoder import load_encoder

    champ = resolve_champion(settings)
    try:
        restore_index(settings, champ)
    except DvcError as exc:
        raise IndexMismatch(
            f"refusing to serve {champ.name} v{champ.version}: its index is not on disk and {exc}"
        ) from exc
    problems = index_problems(champ)
    if problems:
        raise IndexMismatch(f"refusing to serve {champ.name} v{champ.version}: " + "; ".join(problems))
    mlflow.set_tracking_uri(settings.tracking_uri)
    encoder = load_encoder(model_dir(champ.source), device=device)
    table = connect(champ.index["uri"]).open_table(champ.index["table"])
    return Served(champ, encoder, table, settings.serve_max_batch)
