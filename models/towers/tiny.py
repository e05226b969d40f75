"""Tiny random towers for tests: a conv net and a character-trigram text tower; no downloads, built in milliseconds."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from lensflow.models.preprocess import ImagePreprocess
from lensflow.models.towers.base import Tower


class TinyConvTower(Tower):
    """A tiny random conv net for tests: seconds to build, no downloads."""

    kind = "tiny-conv"

    def __init__(self, size: int = 32, width: int = 16, seed: int = 0):
        super().__init__()
        self.size, self.width, self.seed = size, width, seed
        self.preprocess = ImagePreprocess(size=size)
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        self.out_dim = width * 2

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels).mean(dim=(2, 3))

    def _split_blocks(self, n: int) -> tuple[nn.Module, nn.Module]:
        cut = len(self.net) - 2 * n  # a block is conv + relu
        if cut < 0:
            raise ValueError(f"the tiny tower has {len(self.net) // 2} blocks; cannot unfreeze {n}")
        return self.net[:cut], nn.Sequential(*self.net[cut:], _MeanPool())

    def spec(self) -> dict:
        return {
            "type": self.kind,
            "size": self.size,
            "width": self.width,
            "seed": self.seed,
            "preprocess": self.preprocess.fingerprint(),
        }


class _MeanPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


# ----------------------------------------------------------------------------- text towers


class HashTextTower(Tower):
    """Character-trigram hashing bag of embeddings, random init: a tokenizer-free text tower for tests."""

    kind = "hash-text"

    def __init__(self, dim: int = 32, buckets: int = 4096, seed: int = 0):
        super().__init__()
        self.dim, self.buckets, self.seed = dim, buckets, seed
        gen = torch.Generator().manual_seed(seed)
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean")
        with torch.no_grad():
            self.bag.weight.copy_(torch.randn(buckets, dim, generator=gen))
        self.out_dim = dim

    def _ids(self, text: str) -> list[int]:
        t = f"  {text.lower().strip()} "
        grams = [t[i : i + 3] for i in range(len(t) - 2)] or [t]
        return [
            int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little") % self.buckets for g in grams
        ]

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = [self._ids(t) for t in texts]
        flat = torch.tensor([i for row in ids for i in row], dtype=torch.long, device=self.bag.weight.device)
        offsets = torch.tensor([0] + [len(r) for r in ids[:-1]], device=flat.device).cumsum(0)
        return self.bag(flat, offsets)

    def _tail(self, n: int) -> list[nn.Module]:
        return [self.bag]

    def spec(self) -> dict:
        return {"type": self.kind, "dim": self.dim, "buckets": self.buckets, "seed": self.seed}
