"""Sentence-transformer text tower (e.g. all-MiniLM-L6-v2): a transformers encoder with mean pooling.

transformers is imported when a tower is built, not when this module is imported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lensflow.models.towers.base import Tower
from lensflow.models.towers.sources import resolve_source


class HFMeanPoolTextTower(Tower):
    """A transformers encoder (e.g. all-MiniLM-L6-v2) with attention-masked mean pooling."""

    kind = "hf-mean-pool"

    def __init__(self, source: str = "minilm", max_length: int = 64, _folder: Path | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.source, self.max_length = source, max_length
        folder = _folder or resolve_source(source)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder))
        self.out_dim = self.model.config.hidden_size

    def forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        tokens = {k: v.to(self.model.device) for k, v in tokens.items()}
        hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def _tail(self, n: int) -> list[nn.Module]:
        return list(self.model.encoder.layer[-n:])

    def spec(self) -> dict:
        return {
            "type": self.kind,
            "source": str(self.source),
            "max_length": self.max_length,
            "model_type": self.model.config.model_type,
            "hidden": self.out_dim,
        }

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))

    @classmethod
    def from_spec(cls, spec: dict, directory: Path | None) -> HFMeanPoolTextTower:
        return cls(spec.get("source", "minilm"), spec.get("max_length", 64), _folder=directory)
