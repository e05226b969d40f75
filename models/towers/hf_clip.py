"""CLIP and SigLIP towers: the vision and text halves of a transformers checkpoint in a local folder.

transformers is imported when a tower is built, not when this module is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lensflow.models.preprocess import ImagePreprocess
from lensflow.models.towers.base import Tower
from lensflow.models.towers.sources import resolve_source


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
        model_type = config.model_type  # clip | siglip | clip_vision_model | siglip_vision_model
        family = "siglip" if model_type.startswith("siglip") else "clip"
        cls = transformers.SiglipVisionModel if family == "siglip" else transformers.CLIPVisionModelWithProjection
        self.family = family
        self.model = load_hf_half(cls, folder, "vision")
        self.preprocess = self._preprocess_from(folder, self.model.config.image_size)
        self.out_dim = self.model.config.hidden_size if family == "siglip" else self.model.config.projection_dim

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
