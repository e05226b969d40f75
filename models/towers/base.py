"""The Tower interface every feature extractor implements, and the fingerprints that name its outputs.

A tower can describe itself (`spec`), save its weights into a folder and be rebuilt from that
folder alone, so a trained encoder directory never depends on where the weights came from. Its
fingerprint covers architecture, preprocessing and weights, so cached features are keyed by it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "model.safetensors"


def _fingerprint(spec: dict) -> str:
    """Short stable hash of a json-able spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def weights_digest(modules) -> str:
    """sha256 of the parameters and buffers of `modules` (a fine-tuned tower gets a new identity)."""
    h = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().reshape(-1).clone().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class TowerSplit:
    """forward(x) == suffix(prefix(x)); the prefix stays frozen (its outputs can be cached under
    `fingerprint`), the suffix is trained."""

    prefix: nn.Module
    suffix: nn.Module
    fingerprint: str


class Tower(nn.Module):
    """Common interface: `spec` (json-able config), `save(dir)`, `fingerprint`, `split`, `tail`."""

    kind: str = ""
    out_dim: int = 0

    def spec(self) -> dict:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / WEIGHTS))

    def load_weights(self, directory: Path) -> None:
        self.load_state_dict(load_file(str(directory / WEIGHTS)))

    @classmethod
    def from_spec(cls, spec: dict, directory: Path | None) -> Tower:
        """Rebuild from `spec` (keys named like __init__'s parameters); load weights from `directory`.

        Without a directory a tower that has pretrained weights starts from them.
        """
        params = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in spec.items() if k in params and k != "self"}
        if "pretrained" in params:
            kwargs["pretrained"] = directory is None
        tower = cls(**kwargs)
        if directory is not None:
            tower.load_weights(directory)
        return tower

    def fingerprint(self) -> str:
        """Identity of what this tower computes (architecture, preprocessing and the weights themselves)."""
        return _fingerprint(self.spec() | {"weights": weights_digest([self])})

    def split(self, trainable_blocks: int | None) -> TowerSplit:
        """Frozen prefix + trainable suffix: 0 = all frozen (`heads`), N = last N blocks trainable
        (`partial`), None = everything trainable (`full`)."""
        if trainable_blocks == 0:
            return TowerSplit(self, nn.Identity(), self.fingerprint())
        if trainable_blocks is None:
            return TowerSplit(nn.Identity(), self, _fingerprint({"identity": self.spec().get("preprocess")}))
        if trainable_blocks < 0:
            raise ValueError(f"trainable_blocks must be >= 0 or None, got {trainable_blocks}")
        prefix, suffix = self._split_blocks(trainable_blocks)
        spec = self.spec() | {"prefix_of": trainable_blocks, "weights": weights_digest([prefix])}
        return TowerSplit(prefix, suffix, _fingerprint(spec))

    def _split_blocks(self, n: int) -> tuple[nn.Module, nn.Module]:
        raise ValueError(
            f"the {self.kind} tower cannot unfreeze its last blocks alone; use the 'heads' or 'full' strategy"
        )

    def tail(self, n: int | None) -> list[nn.Module]:
        """The modules to train when the last `n` layers of this tower are unfrozen (None: all)."""
        if n is None:
            return [self]
        if n == 0:
            return []
        return self._tail(n)

    def _tail(self, n: int) -> list[nn.Module]:
        raise ValueError(
            f"the {self.kind} tower cannot unfreeze its last layers alone; use the 'heads' or 'full' strategy"
        )
