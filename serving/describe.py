"""Describe a shopper's photo from the served (encoder, index) pair: its category (a similarity-weighted vote
of its nearest catalog products), its dominant colours as names (models/colours.py, the same names as the
catalog's colour tags), a suggested title and short description built from those and the nearest catalog
titles, and the similar products. No HTTP here (serving/routes.py).

A captioning model, when the user has one (models/caption.py, LENSFLOW_CAPTION_MODEL), writes the
description instead; the attribute describer is the offline default.
"""

from __future__ import annotations

from PIL import Image

from lensflow.core.index import best_of, category_vote
from lensflow.models.colours import dominant_colours
from lensflow.serving.served import Served

NEIGHBOURS = 20  # catalog products that vote on the category


def category_scores(rows: list[dict]) -> list[dict]:
    """Categories with confidences from the neighbours' similarity-weighted vote, best first."""
    vote = category_vote([r["category"] for r in rows], [r["score"] for r in rows])
    return [{"category": c, "score": round(v, 4)} for c, v in vote]


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

    from lensflow.serving.search import RESULT_COLUMNS, decode_image, photo_side

    image = decode_image(Path(path).read_bytes(), *limits, photo_side(served.encoder))
    return describe(served, image, tuple(c for c in RESULT_COLUMNS if c in served.table.schema.names), captioner)
