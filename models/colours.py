"""Colour names for product photos: each pixel of the product (the backdrop, the colour along the border, left
out) gets a plain name by lightness and hue, and the names covering enough of the product are its colours.
One definition for the catalog's colour tags (tasks/enrich.py) and for /describe (serving/describe.py), so a
catalog photo searched by photo is described with the tags it was indexed with."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

NAMES = ("black", "white", "grey", "brown", "beige", "orange", "red", "yellow", "green", "teal", "blue", "navy")
NAMES += ("purple", "pink")
MIN_SHARE = 0.12  # a colour covering less of the product than this is not named
BACKDROP_DISTANCE = 40  # pixels this close (RGB) to the border's median colour are backdrop
# hue upper bounds (degrees) outside the orange band (15-45), in order
HUES = ((15, "red"), (70, "yellow"), (160, "green"), (195, "teal"), (255, "blue"), (290, "purple"), (345, "pink"))


def name_pixels(rgb: np.ndarray) -> np.ndarray:
    """[N, 3] RGB (0-255) -> [N] indexes into NAMES: achromatic by lightness, else by hue (HLS as `colorsys`)."""
    x = np.asarray(rgb, np.float64).reshape(-1, 3) / 255.0
    hi, lo = x.max(1), x.min(1)
    light, span = (hi + lo) / 2, hi - lo
    chroma = np.where(span > 0, span, 1.0)
    sat = np.where(span > 0, span / np.where(light <= 0.5, np.maximum(hi + lo, 1e-6), np.maximum(2 - hi - lo, 1e-6)), 0)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    hue = np.where(hi == r, (g - b) / chroma, np.where(hi == g, 2 + (b - r) / chroma, 4 + (r - g) / chroma))
    deg = (hue / 6 % 1.0) * 360
    out = np.full(len(x), NAMES.index("red"), np.int64)  # 345-360 degrees
    for limit, name in reversed(HUES):
        out[deg < limit] = NAMES.index(name)
    out[(out == NAMES.index("blue")) & (light < 0.3)] = NAMES.index("navy")
    orange = (deg >= 15) & (deg < 45)
    out[orange] = np.where(light[orange] < 0.4, 3, np.where(light[orange] > 0.7, 4, 5))  # brown, beige, orange
    grey = (sat < 0.18) | (light < 0.12) | (light > 0.92)
    out[grey] = np.where(light[grey] < 0.2, 0, np.where(light[grey] > 0.85, 1, 2))  # black, white, grey
    return out


@functools.cache
def _name_table() -> np.ndarray:
    """NAMES indexes for every 6-bit-per-channel RGB cell (262,144, named at the cell's centre; built once, ~0.1 s):
    naming a photo's pixels is then one lookup each."""
    levels = np.arange(64, dtype=np.float64) * 4 + 1.5
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    return name_pixels(grid).astype(np.uint8)


def pixel_names(pixels: np.ndarray) -> np.ndarray:
    """[N, 3] RGB (0-255) -> [N] indexes into NAMES, through the 6-bit table (what photos are named with)."""
    q = np.clip(np.asarray(pixels), 0, 255).astype(np.uint8) >> 2
    return _name_table()[(q[:, 0].astype(np.int64) << 12) | (q[:, 1].astype(np.int64) << 6) | q[:, 2]]


def colour_name(rgb: tuple[float, float, float]) -> str:
    """A plain colour name for one RGB triple (0-255)."""
    return NAMES[int(name_pixels(np.asarray([rgb]))[0])]


def thumbnails(images: list[Image.Image], side: int) -> np.ndarray:
    """[B, side, side, 3] float32 RGB looks at the photos (bilinear)."""
    return np.stack(
        [np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), np.float32) for im in images]
    )


def product_mask(thumbs: np.ndarray) -> np.ndarray:
    """[B, side*side] bool: the product's pixels, those that stand out from the border's median colour (all of them
    when almost none does: then the photo is the product's colour), its outline left out."""
    b = len(thumbs)
    border = np.concatenate([thumbs[:, [0, -1]].reshape(b, -1, 3), thumbs[:, :, [0, -1]].reshape(b, -1, 3)], axis=1)
    pixels = thumbs.reshape(b, -1, 3)
    mask = ((pixels - np.median(border, axis=1)[:, None]) ** 2).sum(2) > BACKDROP_DISTANCE**2
    mask[mask.sum(1) < pixels.shape[1] // 80] = True
    # the product's outline is a blend with the backdrop (white on navy reads as blue): leave it out, unless the
    # product is so thin that little else would be left
    m = mask.reshape(thumbs.shape[:3])
    inner = m.copy()
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    inner[:, :, 1:] &= m[:, :, :-1]
    inner[:, :, :-1] &= m[:, :, 1:]
    inner = inner.reshape(b, -1)
    thick = inner.sum(1) >= mask.sum(1) // 3
    return np.where(thick[:, None], inner, mask)


def colour_shares(thumbs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """[B, len(NAMES)]: the share of each photo's product pixels (`product_mask`) that each colour name covers."""
    b, n = len(thumbs), len(NAMES)
    mask = product_mask(thumbs) if mask is None else mask
    names = pixel_names(thumbs.reshape(-1, 3)).reshape(b, -1) + n * np.arange(b)[:, None]
    counts = np.bincount(names.ravel(), weights=mask.ravel(), minlength=b * n).reshape(b, n)
    return counts / counts.sum(1, keepdims=True)


def named(shares: np.ndarray) -> list[int]:
    """Indexes into NAMES of one photo's colours: share >= MIN_SHARE, largest first."""
    return [int(i) for i in np.argsort(-shares, kind="stable") if shares[i] >= MIN_SHARE]


def dominant_colours(image: Image.Image, side: int = 64) -> list[dict]:
    """The product's main colours, [{name, share, rgb}] by share; `rgb` is the mean of the pixels with that name."""
    thumbs = thumbnails([image], side)
    mask = product_mask(thumbs)
    shares = colour_shares(thumbs, mask)[0]
    pixels, mask = thumbs.reshape(-1, 3), mask[0]
    names = pixel_names(pixels)
    return [
        {"name": NAMES[i], "share": round(float(shares[i]), 3), "rgb": mean_rgb(pixels[mask & (names == i)])}
        for i in named(shares)
    ]


def mean_rgb(pixels: np.ndarray) -> list[int]:
    return [int(v) for v in pixels.mean(0)]


def colour_tags(images: list[Image.Image], side: int = 32) -> list[str]:
    """The catalog's colour tags, one string per photo: its colour names, space-separated, largest first (a 32 px
    look is enough for names and ~4x cheaper than /describe's 64 px)."""
    return [" ".join(NAMES[i] for i in named(row)) for row in colour_shares(thumbnails(images, side))]
