"""Held-out shopper photos: catalog products re-photographed by a generator that training never sees.

This module shares no code, parameters or seeds with the training augmentation (models/augment.py):
its own product cut-out (filled silhouette, not border flood-fill), its own backgrounds, lighting,
optics and file encodings, drawn from generators keyed by `SEED_NAMESPACE`. So a model that only
learned the training recipe scores lower here, and the gap is reported ("train recipe vs held out").

Each condition changes one thing about the catalog photo; `combined` draws all of them at once.
Photos come back as encoded files (JPEG or PNG bytes, some with an EXIF orientation tag), because
that is what a shopper uploads: they are decoded by the same code as a query to the service.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from scipy import ndimage

SEED_NAMESPACE = "lensflow-heldout-photos-v1"  # never a training seed: training draws from integer seeds 1..V
GENERATOR = 2  # bump whenever the photos change: it keys the cached query pixels and the eval set's md5
CONDITIONS = (
    "framing",
    "rotation",
    "dark",
    "bright",
    "textured",
    "photographic",
    "cluttered",
    "light",
    "blur",
    "noise",
    "jpeg",
    "exif",
    "second_product",
)
COMBINED = "combined"
BACKGROUNDS = ("dark", "bright", "textured", "photographic", "cluttered")


@dataclass(frozen=True)
class Photo:
    """One shopper photo: the encoded file and where the product is in the upright frame (x0, y0, x1, y1 pixels)."""

    data: bytes
    box: tuple[int, int, int, int]
    condition: str


def photo_rng(condition: str, product_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{SEED_NAMESPACE}|{condition}|{product_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[8:16], "big"))


def cutout(image: Image.Image) -> Image.Image:
    """The product as RGBA: pixels that differ from the studio colour, with the silhouette's holes
    filled, so dark parts inside a garment stay part of it."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    studio = np.array(studio_colour(image), np.float32)
    diff = np.sqrt(((rgb - studio) ** 2).sum(axis=-1))
    solid = ndimage.binary_fill_holes(ndimage.binary_closing(diff > 30, iterations=1))
    alpha = np.maximum(np.clip(diff / 60.0, 0, 1), solid.astype(np.float32))
    if alpha.max() < 0.5:  # nothing stands out from the border: the whole photo is the product
        alpha[:] = 1.0
    return Image.fromarray(np.dstack([rgb, alpha * 255]).astype(np.uint8), "RGBA")


def studio_colour(image: Image.Image) -> tuple[int, int, int]:
    """The colour most of the photo's edge has (the product may touch the edge: a median, not a mean)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return tuple(int(v) for v in np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]), axis=0))


# ------------------------------------------------------------------ backgrounds (all w x h RGB)


def _gradient(w: int, h: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    t = np.deg2rad(rng.uniform(0, 360))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    p = np.cos(t) * xx / w + np.sin(t) * yy / h
    p = (p - p.min()) / max(1e-6, float(np.ptp(p)))
    return a[None, None] * (1 - p[..., None]) + b[None, None] * p[..., None]


def dark_background(w, h, rng):
    a, b = rng.uniform(0, 45, 3), rng.uniform(0, 45, 3)
    return _gradient(w, h, a, b, rng)


def bright_background(w, h, rng):
    a, b = rng.uniform(200, 255, 3), rng.uniform(200, 255, 3)
    return _gradient(w, h, a, b, rng)


def textured_background(w, h, rng):
    """Woven fabric or wood grain: a periodic pattern with jitter."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base, other = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
    if rng.random() < 0.5:  # weave
        period = rng.uniform(4, 14)
        v = 0.5 + 0.25 * (np.sin(2 * np.pi * xx / period) + np.sin(2 * np.pi * yy / period))
    else:  # grain: stripes bent by a smooth random warp
        coarse = rng.uniform(0, 255, (max(2, h // 24), max(2, w // 24))).astype(np.uint8)
        warp = (
            np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255 - 0.5
        ) * rng.uniform(40, 120)
        v = 0.5 + 0.5 * np.sin(2 * np.pi * (yy + warp) / rng.uniform(6, 20))
    v = np.clip(v + rng.standard_normal((h, w), dtype=np.float32) * 0.08, 0, 1)
    return base[None, None] * (1 - v[..., None]) + other[None, None] * v[..., None]


def photographic_background(w, h, rng):
    """An out-of-focus room: a wall and a floor in two tones, soft blobs of light, fine grain."""
    wall, floor = rng.uniform(40, 240, 3), rng.uniform(20, 200, 3)
    horizon = int(h * rng.uniform(0.35, 0.8))
    out = np.empty((h, w, 3), np.float32)
    out[:horizon], out[horizon:] = wall, floor
    for cells, amp in ((3, 28.0), (6, 22.0), (12, 16.0)):  # smooth colour variation at three scales
        field = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
        out += (
            (np.asarray(Image.fromarray(field).resize((w, h), Image.Resampling.BICUBIC), np.float32) - 127.5)
            * amp
            / 127.5
        )
    small = (max(1, w // 8), max(1, h // 8))
    yy, xx = np.mgrid[0 : small[1], 0 : small[0]].astype(np.float32)
    glow = np.zeros((small[1], small[0], 3), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cy, cx, r = rng.uniform(0, small[1]), rng.uniform(0, small[0]), rng.uniform(0.05, 0.25) * max(small)
        glow += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(-60, 80, 3).astype(
            np.float32
        )
    glow_img = np.clip(glow + 128, 0, 255).astype(np.uint8)
    out += np.asarray(Image.fromarray(glow_img).resize((w, h), Image.Resampling.BILINEAR), np.float32) - 128
    out = np.asarray(
        Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3)), np.float32
    )
    return out + rng.standard_normal((h, w, 1), dtype=np.float32) * 3


def cluttered_background(w, h, rng):
    """A table top with things on it: rectangles, ellipses and lines in random colours."""
    canvas = Image.fromarray(
        np.clip(_gradient(w, h, rng.uniform(60, 220, 3), rng.uniform(60, 220, 3), rng), 0, 255).astype(np.uint8)
    )
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(10, 30))):
        x0, y0 = rng.uniform(-0.1, 1, 2) * (w, h)
        x1, y1 = x0 + rng.uniform(0.05, 0.35) * w, y0 + rng.uniform(0.05, 0.35) * h
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))
    return np.asarray(canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5))), dtype=np.float32)


BACKGROUND_MAKERS: dict[str, Callable] = {
    "dark": dark_background,
    "bright": bright_background,
    "textured": textured_background,
    "photographic": photographic_background,
    "cluttered": cluttered_background,
}


# ------------------------------------------------------------------ the scene


@dataclass
class Scene:
    """What to draw: every field has a neutral value (the catalog photo, framed as in the catalog)."""

    width: int = 320
    height: int = 320
    fill: float = 0.9  # product's longer side / frame's shorter side
    centre: tuple[float, float] = (0.5, 0.5)  # product centre, fraction of the frame
    angle: float = 0.0  # degrees, counter-clockwise
    background: str | None = None  # None: the catalog's studio colour
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)  # coloured light
    falloff: float = 0.0  # light falling off across the frame (0: even)
    blur: float = 0.0  # Gaussian radius, pixels
    motion: int = 0  # motion-blur length, pixels
    noise: float = 0.0  # sensor noise sigma (0-255)
    quality: int | None = None  # JPEG quality; None: PNG
    orientation: int = 1  # EXIF orientation tag the file is stored with
    second: Image.Image | None = None  # another product in the frame


def render(product: Image.Image, scene: Scene, rng: np.random.Generator) -> Photo:
    w, h = scene.width, scene.height
    if scene.background is None:
        bg = np.broadcast_to(np.array(studio_colour(product), np.float32), (h, w, 3)).copy()
    else:
        bg = BACKGROUND_MAKERS[scene.background](w, h, rng)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).convert("RGBA")
    if scene.second is not None:  # the other product: smaller, in the corner opposite the product's
        other = _placed(cutout(scene.second), 0.35 * min(w, h), rng.uniform(-20, 20))
        ox = int((0.05 if scene.centre[0] > 0.5 else 0.95) * w - other.width / 2)
        oy = int((0.05 if scene.centre[1] > 0.5 else 0.95) * h - other.height / 2)
        canvas.alpha_composite(other, (max(0, min(w - other.width, ox)), max(0, min(h - other.height, oy))))
    item = _placed(cutout(product), scene.fill * min(w, h), scene.angle)
    if item.width > w or item.height > h:  # a rotated product wider than the frame: step back until it fits
        k = min(w / item.width, h / item.height)
        item = item.resize((max(1, int(item.width * k)), max(1, int(item.height * k))), Image.Resampling.LANCZOS)
    x = int(round(scene.centre[0] * w - item.width / 2))
    y = int(round(scene.centre[1] * h - item.height / 2))
    x, y = max(0, min(w - item.width, x)), max(0, min(h - item.height, y))
    canvas.alpha_composite(item, (x, y))
    bbox = item.getchannel("A").getbbox() or (0, 0, item.width, item.height)
    box = (x + bbox[0], y + bbox[1], x + bbox[2], y + bbox[3])
    out = np.asarray(canvas.convert("RGB"), dtype=np.float32)
    if scene.falloff or scene.gains != (1.0, 1.0, 1.0):
        light = _gradient(w, h, np.full(3, 1.0), np.full(3, 1.0 - scene.falloff), rng)
        out = out * light * np.array(scene.gains, np.float32)
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if scene.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(scene.blur))
    if scene.motion > 1:
        image = image.filter(ImageFilter.BoxBlur(0)).filter(_motion_kernel(scene.motion, rng))
    if scene.noise > 0:
        arr = (
            np.asarray(image, dtype=np.float32)
            + rng.standard_normal((h, w, 1), dtype=np.float32) * scene.noise
            + rng.standard_normal((h, w, 3), dtype=np.float32) * (scene.noise / 2)
        )
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return Photo(_encode(image, scene.quality, scene.orientation), box, "")


def _placed(cut: Image.Image, side: float, angle: float) -> Image.Image:
    """The cut-out scaled so its longer side is `side` pixels, then rotated (canvas grows to fit)."""
    bbox = cut.getchannel("A").getbbox() or (0, 0, cut.width, cut.height)
    cut = cut.crop(bbox)
    scale = max(1.0, side) / max(cut.size)
    cut = cut.resize((max(1, round(cut.width * scale)), max(1, round(cut.height * scale))), Image.Resampling.LANCZOS)
    return cut.rotate(angle, Image.Resampling.BICUBIC, expand=True) if angle else cut


def _motion_kernel(length: int, rng: np.random.Generator) -> ImageFilter.Kernel:
    k = np.zeros((5, 5), np.float32)
    if rng.random() < 0.5:
        k[2, :] = 1
    else:
        np.fill_diagonal(k, 1)
    return ImageFilter.Kernel((5, 5), k.ravel().tolist(), scale=float(k.sum()))


_STORE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def _encode(image: Image.Image, quality: int | None, orientation: int) -> bytes:
    """The file a camera would write: the sensor's pixels (sideways for a phone held on its side) and an
    EXIF tag saying how to show them upright."""
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        image = image.transpose(_STORE[orientation])
        exif[0x0112] = orientation
    if quality is None:
        image.save(buf, format="PNG", compress_level=1, exif=exif.tobytes() if orientation != 1 else None)
    else:
        image.save(buf, format="JPEG", quality=quality, exif=exif.tobytes() if orientation != 1 else b"")
    return buf.getvalue()


# ------------------------------------------------------------------ conditions


def scene_for(condition: str, rng: np.random.Generator, other: Image.Image | None = None) -> Scene:
    """The scene of one condition: that condition drawn at random, everything else neutral."""
    side = int(rng.integers(256, 481))
    s = Scene(width=side, height=int(side * rng.choice([1.0, 0.75, 4 / 3])))
    if condition == "framing":
        s.fill = rng.uniform(0.4, 1.0)
        s.centre = _off_centre(s.fill, rng)
    elif condition == "rotation":
        s.angle = rng.choice([-1, 1]) * rng.uniform(8, 30)
        s.fill = 0.8
    elif condition in BACKGROUNDS:
        s.background, s.fill = condition, rng.uniform(0.6, 0.9)
    elif condition == "light":
        s.gains = tuple(float(g) for g in rng.uniform(0.6, 1.35, 3))
        s.falloff = rng.uniform(0.0, 0.5)
    elif condition == "blur":
        if rng.random() < 0.5:
            s.blur = rng.uniform(1.5, 4.0)
        else:
            s.motion = 5
    elif condition == "noise":
        s.noise = rng.uniform(6, 22)
    elif condition == "jpeg":
        s.quality = int(rng.integers(30, 91))
    elif condition == "exif":
        s.orientation = int(rng.choice([3, 6, 8]))
        s.quality = 88
    elif condition == "second_product":
        s.fill, s.second = rng.uniform(0.5, 0.7), other
        s.centre = _off_centre(s.fill, rng)
    elif condition == COMBINED:
        s.fill = rng.uniform(0.4, 0.95)
        s.centre = _off_centre(s.fill, rng)
        s.angle = rng.uniform(-30, 30)
        s.background = str(rng.choice(BACKGROUNDS))
        s.gains = tuple(float(g) for g in rng.uniform(0.7, 1.3, 3))
        s.falloff = rng.uniform(0, 0.4)
        s.blur = rng.uniform(0, 2.5)
        s.noise = rng.uniform(0, 14)
        s.quality = int(rng.integers(30, 91))
        s.orientation = int(rng.choice([1, 1, 3, 6, 8]))
        if other is not None and rng.random() < 0.3:
            s.second, s.fill = other, min(s.fill, 0.7)
    else:
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join((*CONDITIONS, COMBINED))}")
    return s


def _off_centre(fill: float, rng: np.random.Generator) -> tuple[float, float]:
    room = max(0.0, (1 - fill) / 2)
    return tuple(float(0.5 + rng.uniform(-room, room)) for _ in range(2))


def shopper_photo(product: Image.Image, product_id: str, condition: str, other: Image.Image | None = None) -> Photo:
    """The held-out photo of `product` under `condition` (the same bytes every time for this product)."""
    rng = photo_rng(condition, product_id)
    photo = render(product, scene_for(condition, rng, other), rng)
    return Photo(photo.data, photo.box, condition)


def other_product(ids: list[str], product_id: str, condition: str) -> str:
    """The product that shares the frame with `product_id` (a fixed draw among the other ids)."""
    rng = photo_rng(f"{condition}/other", product_id)
    while True:
        pick = ids[int(rng.integers(len(ids)))]
        if pick != product_id or len(ids) == 1:
            return pick


def upright(photo: Photo) -> Image.Image:
    """The photo as a viewer shows it (EXIF applied)."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(photo.data))).convert("RGB")
