"""Describe a shopper's photo from the served (encoder, index) pair: its category (a similarity-weighted vote
of its nearest catalog products), its dominant colours as names, a suggested title and short description built
from those and the nearest catalog titles, and the similar products. No HTTP here (serving/routes.py).

A captioning model, when the user has one (models/caption.py, LENSFLOW_CAPTION_MODEL), writes the
description instead; the attribute describer is the offline default.
"""

from __future__ import annotations

import colorsys
from collections import Counter

import numpy as np
from PIL import Image

from lensflow.core.index import best_of, category_vote
from serving.served import Served

NEIGHBOURS = 20  # catalog products that vote on the category
MIN_SHARE = 0.12  # a colour covering less of the product than this is not named
HUES = ((15, "red"), (70, "yellow"), (160, "green"), (195, "teal"), (255, "blue"), (290, "purple"), (345, "pink"))


def category_scores(rows: list[dict]) -> list[dict]:
    """Categories with confidences from the neighbours' similarity-weighted vote, best first."""
    vote = category_vote([r["category"] for r in rows], [r["score"] for r in rows])
    return [{"category": c, "score": round(v, 4)} for c, v in vote]


def colour_name(rgb: tuple[float, float, float]) -> str:
    """A plain colour name for an RGB triple (0-255): achromatic by lightness, else by hue."""
    h, light, sat = colorsys.rgb_to_hls(*(c / 255 for c in rgb))
    if sat < 0.18 or light < 0.12 or light > 0.92:
        return "black" if light < 0.2 else "white" if light > 0.85 else "grey"
    deg = h * 360
    if 15 <= deg < 45:  # orange hues: brown when dark, beige when pale
        return "brown" if light < 0.4 else "beige" if light > 0.7 else "orange"
    for limit, name in HUES:
        if deg < limit:
            return "navy" if name == "blue" and light < 0.3 else name
    return "red"


def dominant_colours(image: Image.Image, k: int = 4, seed: int = 0) -> list[dict]:
    """The product's main colours: k-means over its pixels, the backdrop (the colour along the border) left out;
    [{name, share, rgb}] by share, names merged, those under MIN_SHARE dropped."""
    small = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), np.float32).reshape(-1, 3)
    grid = small.reshape(64, 64, 3)
    border = np.concatenate([grid[[0, -1]].reshape(-1, 3), grid[:, [0, -1]].reshape(-1, 3)])
    backdrop = np.median(border, axis=0)
    pixels = small[np.linalg.norm(small - backdrop, axis=1) > 40]
    if len(pixels) < 50:  # nothing stands out from the backdrop: the photo is the product's colour
        pixels = small
    rng = np.random.default_rng(seed)
    centres = pixels[rng.choice(len(pixels), size=min(k, len(pixels)), replace=False)]
    for _ in range(12):
        label = np.argmin(((pixels[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        centres = np.stack([pixels[label == i].mean(0) if (label == i).any() else c for i, c in enumerate(centres)])
    shares: Counter = Counter()
    rgb_of: dict[str, np.ndarray] = {}
    for i, centre in enumerate(centres):
        name, share = colour_name(tuple(centre)), float((label == i).mean())
        shares[name] += share
        rgb_of.setdefault(name, centre)
    return [
        {"name": n, "share": round(s, 3), "rgb": [int(v) for v in rgb_of[n]]}
        for n, s in shares.most_common()
        if s >= MIN_SHARE
    ]


def suggest(category: str, colours: list[dict], titles: list[str]) -> tuple[str, str]:
    """A title ("Blue sneaker") and a short description from the category, colours and the nearest titles."""
    noun = category.replace("/", " or ").lower()
    names = [c["name"] for c in colours[:2]]
    title = " ".join([*(names[:1]), noun]).capitalize()
    colour_text = " and ".join(names) if names else "neutral"
    like = "; ".join(titles[:2])
    description = f"A {colour_text} {noun}." + (f" Similar to: {like}." if like else "")
    return title, description


def describe(served: Served, image: Image.Image, columns: tuple[str, ...], captioner=None) -> dict:
    """Everything /describe and `lensflow describe` return for one upright RGB photo."""
    import torch

    with torch.inference_mode():
        views = served.encoder.photo_views(image)  # located once: the vectors and the colours both use it
        vectors = served.encoder.encode_images(served.encoder.preprocess(views)).cpu().numpy()
    rows = best_of(served.table, vectors, NEIGHBOURS, columns=columns)
    categories = category_scores(rows)
    crop = views[0]
    colours = dominant_colours(crop)
    best = categories[0]["category"] if categories else ""
    title, description = suggest(best, colours, [r["title"] for r in rows if r["category"] == best])
    if captioner is not None:
        description = captioner.caption(crop)
    return {
        "category": best,
        "confidence": categories[0]["score"] if categories else 0.0,
        "categories": categories[:3],
        "colours": colours,
        "title": title,
        "description": description,
        "similar": [r["product_id"] for r in rows[:10]],
    }


def describe_file(served: Served, path, limits: tuple[int, int], captioner=None) -> dict:
    """`describe` for a photo file, decoded exactly as an upload to /describe is (`lensflow describe`)."""
    from pathlib import Path

    from serving.search import RESULT_COLUMNS, decode_image, photo_side

    image = decode_image(Path(path).read_bytes(), *limits, photo_side(served.encoder))
    return describe(served, image, tuple(c for c in RESULT_COLUMNS if c in served.table.schema.names), captioner)
