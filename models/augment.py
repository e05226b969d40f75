"""Shopper-photo augmentation: a catalog image re-photographed the way a shopper would, then cut
down to the product the way the query path's localizer does (models/localize.py).

One call draws a scene: the product at any size and place, turned up to `rotate` degrees, on one of
several backgrounds (the studio colour, a smooth surface, a noise field, clutter, stripes), under
coloured, uneven light, with blur, sensor noise and JPEG artefacts. Then the view is cropped to a
square around the product's true box with a random margin and a random offset, as a localizer with
some error would crop it. Training on these views teaches invariance to what localization leaves
(background at the margins, residual tilt, light, optics), not to one recipe. The held-out
evaluation (tasks/helpers/heldout_photos.py) uses none of this code.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from lensflow.models.localize import edge_colour
from lensflow.models.preprocess import draft, to_rgb

SCENES = ("studio", "surface", "noise", "clutter", "stripes")


@dataclass(frozen=True)
class ShopperAugment:
    size: int = 96  # output side in pixels (the image tower's input: no second resize)
    rotate: float = 35.0  # max rotation, degrees either way
    fill: tuple[float, float] = (0.3, 1.0)  # product's longer side / scene side
    studio: float = 0.2  # probability of the catalog's own background colour
    tint: float = 0.35  # max per-channel gain change (coloured light)
    shade: float = 0.5  # max light falloff across the scene
    blur: float = 2.0  # max Gaussian blur radius, output pixels
    noise: float = 16.0  # max sensor-noise sigma (0-255)
    jpeg: tuple[int, int] = (25, 95)  # JPEG quality range
    margin: tuple[float, float] = (0.0, 0.12)  # crop margin around the product box, share of its side (localizer: 0.03)
    jitter: float = 0.06  # max crop-centre offset, share of the box side (localizer error)
    bg_threshold: int = 24  # max distance (0-255) from the border colour that counts as studio background

    def fingerprint(self) -> dict:
        return {"kind": "shopper-photo-v2", **asdict(self)}

    def rng(self, key: str, seed: int) -> np.random.Generator:
        """A generator for one (item, seed) pair: the same draw wherever and in whatever order it runs."""
        digest = hashlib.sha256(f"{seed}|{key}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        s = self.size
        scene_side = s * 3 // 2
        image = to_rgb(draft(image, s))
        src = np.asarray(image, dtype=np.float32)
        border = edge_colour(image)
        mask = Image.fromarray(self._product_mask(src, border).astype(np.uint8) * 255)
        # the product, scaled and turned, on a transparent layer the size of the scene
        side = rng.uniform(*self.fill) * scene_side
        k = side / max(image.size)
        size = (max(1, round(image.width * k)), max(1, round(image.height * k)))
        angle = rng.uniform(-self.rotate, self.rotate)
        product = image.resize(size, Image.Resampling.BICUBIC).rotate(
            angle, Image.Resampling.BILINEAR, expand=True, fillcolor=border
        )
        alpha = mask.resize(size, Image.Resampling.BILINEAR).rotate(
            angle, Image.Resampling.BILINEAR, expand=True, fillcolor=0
        )
        if max(product.size) > scene_side:
            k = scene_side / max(product.size)
            size = (max(1, int(product.width * k)), max(1, int(product.height * k)))
            product, alpha = (
                product.resize(size, Image.Resampling.BILINEAR),
                alpha.resize(size, Image.Resampling.BILINEAR),
            )
        x = int(rng.integers(0, scene_side - product.width + 1))
        y = int(rng.integers(0, scene_side - product.height + 1))
        kind = "studio" if rng.random() < self.studio else SCENES[1 + int(rng.integers(len(SCENES) - 1))]
        scene = _scene(kind, scene_side, border, rng)
        scene.paste(product, (x, y), alpha)
        # light, optics, file
        rgb = np.asarray(scene, dtype=np.float32) * (1 + rng.uniform(-self.tint, self.tint, size=3)).astype(np.float32)
        rgb *= _falloff(scene_side, rng.uniform(0, self.shade), rng)[..., None]
        rgb += rng.normal(0, rng.uniform(0, self.noise), size=(scene_side, scene_side, 1)).astype(np.float32)
        out = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        radius = rng.uniform(0, self.blur) * 1.5  # the scene is 1.5 times the output side
        if radius > 0.4:
            out = out.filter(ImageFilter.GaussianBlur(radius))
        # the localizer's crop: a square around the product's box, with margin and error
        box = alpha.getbbox() or (0, 0, product.width, product.height)
        bw, bh = box[2] - box[0], box[3] - box[1]
        half = max(bw, bh) * (1 + 2 * rng.uniform(*self.margin)) / 2
        cx = x + (box[0] + box[2]) / 2 + rng.uniform(-self.jitter, self.jitter) * bw
        cy = y + (box[1] + box[3]) / 2 + rng.uniform(-self.jitter, self.jitter) * bh
        out = out.crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half))).resize(
            (s, s), Image.Resampling.BILINEAR
        )
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


def _texture(size: int, rng: np.random.Generator) -> Image.Image:
    """A smooth surface in one random hue with grain (a table, a bed, a floor)."""
    cells = int(rng.integers(2, 6))
    base = rng.uniform(0, 255, size=3)
    coarse = np.clip(base + rng.normal(0, 40, size=(cells, cells, 3)), 0, 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = rng.normal(0, rng.uniform(2, 14), size=(size, size, 1)).astype(np.float32)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def _falloff(size: int, depth: float, rng: np.random.Generator) -> np.ndarray:
    """Light that fades by `depth` across the scene in a random direction."""
    t = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ramp = np.cos(t) * xx + np.sin(t) * yy
    ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    return 1 - depth * ramp


def _scene(kind: str, size: int, studio: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    """A background: the studio colour, a smooth surface, a noise field, clutter or stripes."""
    if kind == "studio":
        return Image.new("RGB", (size, size), studio)
    if kind == "surface":
        return _texture(size, rng)
    if kind == "noise":
        field = (
            sum(
                np.asarray(
                    Image.fromarray(rng.uniform(0, 255, (c, c, 3)).astype(np.uint8)).resize(
                        (size, size), Image.Resampling.BILINEAR
                    ),
                    dtype=np.float32,
                )
                for c in (4, 8, 16)
            )
            / 3
        )
        return Image.fromarray(field.astype(np.uint8))
    if kind == "stripes":
        t = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        wave = 0.5 + 0.5 * np.sign(np.sin((np.cos(t) * xx + np.sin(t) * yy) * 2 * np.pi / rng.uniform(3, 16)))
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        return Image.fromarray((a * wave[..., None] + b * (1 - wave[..., None])).astype(np.uint8))
    canvas = _texture(size, rng)  # clutter: things lying around on a surface
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(5, 25))):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.4, 2) * size
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=colour)
    return canvas
