"""Shopper-photo augmentation: a catalog image re-photographed the way a shopper would.

The same family of transforms makes the shopper-photo evaluation queries (fixed draws per
product) and the augmented training views (other draws), so the model learns what the
evaluation asks: crop and scale, rotation, a textured background instead of the studio one,
a colour cast, blur and JPEG artefacts.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from models.preprocess import draft, to_rgb


@dataclass(frozen=True)
class ShopperAugment:
    size: int = 112  # output side in pixels
    rotate: float = 20.0  # max rotation, degrees either way
    scale: tuple[float, float] = (0.8, 1.15)  # object scale; above 1 crops the product
    shift: float = 0.08  # max translation, fraction of the side
    background: float = 0.8  # probability of a textured background
    tint: float = 0.25  # max per-channel gain change
    blur: float = 1.2  # max Gaussian blur radius, output pixels
    jpeg: tuple[int, int] = (30, 85)  # JPEG quality range
    bg_threshold: int = 24  # max distance (0-255) from the border colour that counts as studio background

    def fingerprint(self) -> dict:
        return {"kind": "shopper-photo", **asdict(self)}

    def rng(self, key: str, seed: int) -> np.random.Generator:
        """A generator for one (item, seed) pair: the same draw wherever and in whatever order it runs."""
        digest = hashlib.sha256(f"{seed}|{key}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        s = self.size
        image = to_rgb(draft(image, s))
        src = np.asarray(image, dtype=np.float32)
        border = tuple(int(v) for v in _border_colour(src))
        mask = Image.fromarray(self._product_mask(src, border).astype(np.uint8) * 255).resize((s, s), Image.Resampling.BILINEAR)
        photo = image.resize((s, s), Image.Resampling.BICUBIC)
        angle = rng.uniform(-self.rotate, self.rotate)
        zoom = rng.uniform(*self.scale)
        dx, dy = rng.uniform(-self.shift, self.shift, size=2) * s
        coeffs = _affine_coeffs(s, angle, zoom, dx, dy)
        photo = photo.transform((s, s), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=border)
        mask = mask.transform((s, s), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0)
        if rng.random() < self.background:
            photo = Image.composite(photo, _texture(s, rng), mask)
        rgb = np.asarray(photo, dtype=np.float32) * (1 + rng.uniform(-self.tint, self.tint, size=3)).astype(np.float32)
        out = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        radius = rng.uniform(0, self.blur)
        if radius > 0.2:
            out = out.filter(ImageFilter.GaussianBlur(radius))
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(rng.integers(self.jpeg[0], self.jpeg[1] + 1)))
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    def _product_mask(self, rgb: np.ndarray, border: tuple[int, int, int]) -> np.ndarray:
        """True on the product: everything but the studio background connected to the border."""
        near = np.abs(rgb - np.array(border, dtype=np.float32)).max(axis=-1) <= self.bg_threshold
        labels, _ = ndimage.label(near)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        return ~np.isin(labels, edge[edge > 0])


def _border_colour(rgb: np.ndarray) -> np.ndarray:
    return np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]), axis=0)


def _affine_coeffs(size: int, angle: float, zoom: float, dx: float, dy: float) -> tuple[float, ...]:
    """PIL AFFINE coefficients (output -> input) for rotate + zoom about the centre, then shift."""
    t = np.deg2rad(angle)
    c = (size - 1) / 2
    a, b = np.cos(t) / zoom, np.sin(t) / zoom
    # input = R^-1 (output - centre - shift) + centre
    x0, y0 = -c - dx, -c - dy
    return (a, b, a * x0 + b * y0 + c, -b, a, -b * x0 + a * y0 + c)


def _texture(size: int, rng: np.random.Generator) -> Image.Image:
    """A smooth surface in one random hue with grain (a table, a bed, a floor)."""
    cells = int(rng.integers(2, 6))
    base = rng.uniform(0, 255, size=3)
    coarse = np.clip(base + rng.normal(0, 40, size=(cells, cells, 3)), 0, 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = rng.normal(0, rng.uniform(2, 14), size=(size, size, 1)).astype(np.float32)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))
