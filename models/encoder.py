"""The dual encoder: image tower + text tower + projection heads, saved as one directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lensflow.models.heads import ProjectionHead
from lensflow.models.localize import Localizer
from lensflow.models.towers import Tower, build_tower

FORMAT = 1
CONFIG_FILE = "lensflow.json"
CONFIGS_DIR = Path(__file__).parent / "configs"


class DualEncoder(nn.Module):
    """`encode_images(pixels)` and `encode_texts(texts)` -> L2-normalised float32 [N, D].

    With `instance_dim` > 0 an image vector has two parts: the category space shared with text
    (weight sqrt(w), w = `category_weight`) and an instance space (weight sqrt(1 - w)) trained to
    recognise the same product in a shopper's photo. Text vectors live in the first part only
    (zeros in the second), so text search ranks by the category space alone, while photo search
    ranks by w * category similarity + (1 - w) * instance similarity: one index serves both.

    A shopper's photo goes through `encode_photos`: with a `localize` config the product is found
    and cropped first, and embedded upright and turned (models/localize.py); catalog photos go straight
    to `encode_images`.
    """

    def __init__(self, config: dict, image_tower: Tower, text_tower: Tower, localizer: Localizer | None = None):
        super().__init__()
        self.config = config
        self.localizer = localizer
        self.image_tower, self.text_tower = image_tower, text_tower
        dim, hidden = config["embed_dim"], config.get("head_hidden", 0)
        self.image_head = ProjectionHead(image_tower.out_dim, dim, hidden)
        self.text_head = ProjectionHead(text_tower.out_dim, dim, hidden)
        inst = config.get("instance_dim", 0)
        self.instance_head = ProjectionHead(image_tower.out_dim, inst, hidden) if inst else None
        self.category_weight = float(config.get("category_weight", 0.3)) if inst else 1.0
        if not 0 < self.category_weight <= 1:
            raise ValueError(f"category_weight must be in (0, 1], got {self.category_weight}")
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.get("temperature", 0.07))))

    @property
    def embed_dim(self) -> int:
        """Dimension of the served vectors (category part + instance part)."""
        return self.config["embed_dim"] + self.config.get("instance_dim", 0)

    def image_parts(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit category and instance embeddings of image-tower features (instance None without that head)."""
        return self.image_head(features), self.instance_head(features) if self.instance_head is not None else None

    def combine(self, category: torch.Tensor, instance: torch.Tensor | None) -> torch.Tensor:
        if instance is None:
            return category.float()
        w = self.category_weight
        return torch.cat([math.sqrt(w) * category.float(), math.sqrt(1 - w) * instance.float()], dim=-1)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Served image vectors from image-tower features."""
        return self.combine(*self.image_parts(features))

    @property
    def preprocess(self):
        return self.image_tower.preprocess

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.image_tower(pixels.to(self.device))).float()

    def photo_views(self, image, box: tuple[float, float, float, float] | None = None) -> list:
        """What of a shopper's photo gets embedded: the product's crop and its turned copies (inside `box`,
        pixels, when given); without a localizer, the photo (or box) itself."""
        if self.localizer is not None:
            return self.localizer.views(image, box)
        return [image.crop(tuple(int(round(v)) for v in box)) if box is not None else image]

    def encode_photos(self, images: list, boxes: list | None = None) -> torch.Tensor:
        """[N, R, D] vectors of shopper photos (upright RGB PIL images, models.preprocess.to_rgb), R views each:
        a product's score for photo i is its best over the R vectors (tasks.index.best_of)."""
        boxes = boxes or [None] * len(images)
        views = [self.photo_views(im, b) for im, b in zip(images, boxes)]
        flat = self.encode_images(self.preprocess([v for vs in views for v in vs]))
        return flat.reshape(len(images), -1, flat.shape[-1])

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        t = self.text_head(self.text_tower(list(texts))).float()
        pad = self.embed_dim - t.shape[-1]
        return torch.cat([t, t.new_zeros(t.shape[0], pad)], dim=-1) if pad else t

    def heads_state(self) -> dict[str, torch.Tensor]:
        state = {f"image_head.{k}": v for k, v in self.image_head.state_dict().items()}
        state |= {f"text_head.{k}": v for k, v in self.text_head.state_dict().items()}
        if self.instance_head is not None:
            state |= {f"instance_head.{k}": v for k, v in self.instance_head.state_dict().items()}
        state["logit_scale"] = self.logit_scale.detach()
        return state

    def save(self, directory: str | Path) -> Path:
        """Write config, heads and both towers into `directory` (self-contained)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "config": self.config,
            "image_tower": self.image_tower.spec(),
            "text_tower": self.text_tower.spec(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.heads_state().items()},
            str(directory / "heads.safetensors"),
        )
        self.image_tower.save(directory / "image_tower")
        self.text_tower.save(directory / "text_tower")
        if self.localizer is not None:
            self.localizer.save(directory / "localizer")
        return directory


def read_preset(name_or_path: str, folder: Path = CONFIGS_DIR, what: str = "encoder preset") -> dict:
    """A JSON preset `<folder>/<name>.json`, or a JSON file path; the error lists the known names."""
    path = Path(name_or_path)
    if not path.exists():
        path = folder / f"{name_or_path}.json"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.json"))
        raise ValueError(f"unknown {what} {name_or_path!r}; known presets: {known}")
    return json.loads(path.read_text())


def load_preset(name_or_path: str) -> dict:
    """An encoder preset from models/configs/<name>.json, or a JSON file path."""
    return read_preset(name_or_path)


def build_encoder(config: dict | str, seed: int = 0) -> DualEncoder:
    """A fresh encoder from a preset (pretrained towers, randomly initialised heads)."""
    config = load_preset(config) if isinstance(config, str) else dict(config)
    torch.manual_seed(seed)
    localizer = Localizer.load(config["localize"]) if "localize" in config else None
    encoder = DualEncoder(config, build_tower(config["image_tower"]), build_tower(config["text_tower"]), localizer)
    return encoder.eval()


def load_encoder(directory: str | Path, device: str = "cpu") -> DualEncoder:
    """Load an encoder saved by `DualEncoder.save`, needing nothing outside `directory`."""
    directory = Path(directory)
    meta_path = directory / CONFIG_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory} is not a lensflow encoder directory (no {CONFIG_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unsupported encoder format {meta.get('format')!r} (expected {FORMAT})")
    image_tower = build_tower(meta["image_tower"], directory / "image_tower")
    text_tower = build_tower(meta["text_tower"], directory / "text_tower")
    localizer = (
        Localizer.load(meta["config"]["localize"], directory / "localizer") if "localize" in meta["config"] else None
    )
    encoder = DualEncoder(meta["config"], image_tower, text_tower, localizer)
    state = load_file(str(directory / "heads.safetensors"))
    with torch.no_grad():
        encoder.image_head.load_state_dict(
            {k[len("image_head.") :]: v for k, v in state.items() if k.startswith("image_head.")}
        )
        encoder.text_head.load_state_dict(
            {k[len("text_head.") :]: v for k, v in state.items() if k.startswith("text_head.")}
        )
        if encoder.instance_head is not None:
            encoder.instance_head.load_state_dict(
                {k[len("instance_head.") :]: v for k, v in state.items() if k.startswith("instance_head.")}
            )
        encoder.logit_scale.copy_(state["logit_scale"])
    return encoder.to(device).eval()
