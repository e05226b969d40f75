"""Search over one served (encoder, index) pair: text, photo, photo + text modifier, more-like-this,
filters inside the vector search, hybrid full-text + vector fusion, pagination. No HTTP here."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lensflow.core.index import best_of, table_metadata
from lensflow.core.settings import Settings
from lensflow.core.storage import sql_quote
from lensflow.models.colours import NAMES
from lensflow.models.preprocess import draft, to_rgb
from lensflow.serving.exact import ExactIndex
from lensflow.serving.served import Served

RESULT_COLUMNS = ("product_id", "title", "category", "price")
ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}
DEFAULT_LIMITS = {k: Settings.model_fields[k].default for k in ("max_image_pixels", "max_image_side")}
DEFAULT_EXACT_MAX_ROWS = Settings.model_fields["exact_search_max_rows"].default
DEFAULT_MAX_BATCH = Settings.model_fields["serve_max_batch"].default
# optional columns (the catalog's own and the enrichment's: tasks/enrich.py) counted for facets
FACET_COLUMNS = ("category", "color", "brand", "colours")
FILTER_COLUMNS = ("color", "brand", "predicted_category", "colours")  # what `filter=COLUMN:VALUE` may name
TAG_COLUMNS = {"colours": NAMES}  # space-separated tags from a fixed vocabulary: filtered and counted per tag
FACET_POOL = 100  # candidates the facet counts are taken over
RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al. 2009)


class BadQuery(ValueError):
    """The request is wrong in a way the caller can fix (a 4xx with this message)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Filters:
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # optional catalog column -> value (color, brand)


def parse_attributes(items: list[str]) -> dict[str, str]:
    """`filter=COLUMN:VALUE` query parameters -> {column: value} (checked against the catalog by `where_clause`)."""
    out = {}
    for item in items:
        column, sep, value = item.partition(":")
        if not sep or not column.strip() or not value.strip():
            raise BadQuery(f"filter {item!r}: expected COLUMN:VALUE, e.g. color:red")
        out[column.strip()] = value.strip()
    return out


@dataclass
class Catalog:
    """What a served table knows about its products: ids -> image path/category, the category list."""

    image_paths: dict[str, str]
    categories: list[str]
    has_price: bool
    columns: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # the table's lensflow metadata (ANN and query settings), read once
    category_of: dict[str, str] = field(default_factory=dict)
    exact: ExactIndex | None = None  # the vectors in memory for unfiltered queries (serving/exact.py)

    @property
    def facet_columns(self) -> tuple[str, ...]:
        return tuple(c for c in FACET_COLUMNS if c in self.columns)

    @property
    def result_columns(self) -> tuple[str, ...]:
        return tuple(c for c in RESULT_COLUMNS if c in self.columns)

    @property
    def ranked_columns(self) -> tuple[str, ...]:
        """What a ranking reads per candidate: the result columns and the facet columns."""
        return tuple(dict.fromkeys((*self.result_columns, *self.facet_columns)))

    @classmethod
    def of(cls, table, exact_max_rows: int = DEFAULT_EXACT_MAX_ROWS, max_batch: int = DEFAULT_MAX_BATCH) -> Catalog:
        cols = table.schema.names
        t = (
            table.search()
            .select(["product_id", "image_path", "category"])
            .limit(max(1, table.count_rows()))
            .to_arrow()
            .to_pydict()
        )
        return cls(
            dict(zip(t["product_id"], t["image_path"])),
            sorted(set(t["category"])),
            "price" in cols,
            cols,
            table_metadata(table),
            dict(zip(t["product_id"], t["category"])),
        ).with_exact(table, exact_max_rows, max_batch)

    def with_exact(self, table, max_rows: int, max_batch: int = DEFAULT_MAX_BATCH) -> Catalog:
        self.exact = ExactIndex.of(table, self.ranked_columns, max_rows, max_batch)
        return self

    def nearest(self, table, vec: np.ndarray, n: int, where: str | None, columns: tuple[str, ...]) -> list[dict]:
        """The n products nearest to `vec` (or to the best of its views): exactly in memory when there is no
        filter and the table fits, else through LanceDB (prefiltered, the table's own ANN settings)."""
        if where is None and self.exact is not None:
            return self.exact.top(vec, n)
        return best_of(table, vec, n, where, columns=columns, meta=self.meta)


def where_clause(filters: Filters, catalog: Catalog, exclude_id: str | None = None) -> str | None:
    """SQL filter applied inside the vector search (prefilter), validated against the catalog."""
    parts = []
    if filters.category is not None:
        if filters.category not in catalog.categories:
            raise BadQuery(f"unknown category {filters.category!r}; known: {', '.join(catalog.categories)}")
        parts.append(f"category = {sql_quote(filters.category)}")
    if filters.min_price is not None or filters.max_price is not None:
        if not catalog.has_price:
            raise BadQuery("this catalog has no price column: drop min_price/max_price")
        for name, value in (("min_price", filters.min_price), ("max_price", filters.max_price)):
            if value is not None and not math.isfinite(value):  # "inf" would reach the SQL filter as a column name
                raise BadQuery(f"{name} must be a finite number, not {value}")
        if filters.min_price is not None:
            parts.append(f"price >= {float(filters.min_price)}")
        if filters.max_price is not None:
            parts.append(f"price <= {float(filters.max_price)}")
        if filters.min_price is not None and filters.max_price is not None and filters.min_price > filters.max_price:
            raise BadQuery("min_price is greater than max_price")
    for column, value in filters.attributes.items():
        if column not in FILTER_COLUMNS or column not in catalog.columns:
            usable = [c for c in FILTER_COLUMNS if c in catalog.columns]
            raise BadQuery(f"cannot filter on {column!r}; this catalog's filterable columns: {', '.join(usable)}")
        if column == "predicted_category" and value not in catalog.categories:
            raise BadQuery(f"filter {column}:{value}: unknown category; known: {', '.join(catalog.categories)}")
        if column in TAG_COLUMNS:  # one tag among the row's tags
            if value not in TAG_COLUMNS[column]:
                raise BadQuery(f"filter {column}:{value}: unknown tag; known: {', '.join(TAG_COLUMNS[column])}")
            parts.append(f"array_has(string_to_array({column}, ' '), {sql_quote(value)})")
        else:
            parts.append(f"{column} = {sql_quote(value)}")  # the column from a fixed list, the value a quoted literal
    if exclude_id is not None:
        parts.append(f"product_id != {sql_quote(exclude_id)}")
    return " AND ".join(parts) or None


def decode_image(data: bytes, max_pixels: int, max_side: int, model_side: int | None = None) -> Image.Image:
    """A decoded, upright RGB image (EXIF orientation applied, transparency composited onto the
    models' background: models.preprocess.to_rgb), or BadQuery: not an image, unsupported format, too many
    pixels (checked from the header, before decoding: decompression bombs), truncated or corrupt. With `model_side`
    a large JPEG is decoded at reduced scale, as the catalog's images were (models.preprocess.draft)."""
    if not data:
        raise BadQuery("the request body is empty: send the photo's bytes")
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise BadQuery(f"image has too many pixels (limit {max_pixels})", 413) from None
    except Exception:
        raise BadQuery("the body is not an image this service can read (JPEG, PNG, WebP, GIF, BMP)", 415) from None
    if im.format not in ALLOWED_FORMATS:
        raise BadQuery(f"unsupported image format {im.format}; send JPEG, PNG, WebP, GIF or BMP", 415)
    w, h = im.size
    if w < 1 or h < 1 or w > max_side or h > max_side or w * h > max_pixels:
        raise BadQuery(f"image is {w}x{h}: limits are {max_side} px per side and {max_pixels} pixels", 413)
    if model_side:
        draft(im, model_side)
    try:
        im.load()
    except Image.DecompressionBombError:
        raise BadQuery(f"image has too many pixels (limit {max_pixels})", 413) from None
    except Exception:
        raise BadQuery("the image is truncated or corrupt", 400) from None
    upright = (h, w) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)  # EXIF-rotated by a quarter turn
    rgb = to_rgb(im)
    rgb.info["upright_size"] = upright  # the photo's size as the shopper sees it (boxes are given in it)
    return rgb


def text_query(q: str) -> str:
    """A query or modifier text without surrounding whitespace, or BadQuery when nothing is left."""
    q = q.strip()
    if not q:
        raise BadQuery("the query is empty")
    return q


def text_vector(served: Served, text: str) -> np.ndarray:
    """A query's vector [D], encoded in one forward with the queries other request threads send meanwhile."""
    return served.text_batcher(text)


def parse_box(text: str | None, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """`x0,y0,x1,y1` -> a pixel box inside a `size` (w, h) photo. Relative when every value is <= 1
    (fractions of the width and height), pixels otherwise."""
    if text is None or not text.strip():
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise BadQuery(f"box must be four numbers x0,y0,x1,y1 (relative 0-1 or pixels), got {text!r}") from None
    if not all(math.isfinite(v) and v >= 0 for v in (x0, y0, x1, y1)):
        raise BadQuery(f"box values must be finite and >= 0, got {text!r}")
    w, h = size
    if max(x0, y0, x1, y1) <= 1:
        x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
    x0, y0, x1, y1 = min(x0, w), min(y0, h), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise BadQuery(f"box {text!r} is empty inside the {w}x{h} photo: give x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def photo_box(image: Image.Image, text: str | None) -> tuple[float, float, float, float] | None:
    """`box` (x0,y0,x1,y1, relative or in pixels of the upright photo as sent) in the pixels of `image`, which
    `decode_image` may have decoded at reduced scale."""
    full = image.info.get("upright_size", image.size)
    box = parse_box(text, full)
    if box is None or tuple(full) == image.size:
        return box
    sx, sy = image.width / full[0], image.height / full[1]
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def photo_side(encoder) -> int:
    """The smallest side a query photo should keep when decoded (models.preprocess.draft): a product that
    fills 40% of the photo still gets the model's resolution after the localizer crops it."""
    side = encoder.preprocess.size
    return side if encoder.localizer is None else max(encoder.localizer.config.side, round(side / 0.4))


def image_vector(
    served: Served, image: Image.Image, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """A shopper photo's [R, D] vectors: the product found and cropped (inside `box` when given), upright and
    turned (models.localize); `by_vector` ranks each product by its best score over them."""
    import torch

    with torch.inference_mode():
        return served.encoder.encode_photos([image], [box])[0].cpu().numpy()


def photo_regions(served: Served, image: Image.Image) -> list[dict]:
    """The products the localizer finds in a photo, most salient first: {box (pixels), relative, score}."""
    if served.encoder.localizer is None:
        return [{"box": [0, 0, image.width, image.height], "relative": [0.0, 0.0, 1.0, 1.0], "score": 1.0}]
    w, h = image.size
    return [
        {
            "box": list(r.box),
            "relative": [
                round(r.box[0] / w, 4),
                round(r.box[1] / h, 4),
                round(r.box[2] / w, 4),
                round(r.box[3] / h, 4),
            ],
            "score": round(r.score, 4),
        }
        for r in served.encoder.localizer.regions(image)
    ]


def with_modifier(image_vec: np.ndarray, text_vec: np.ndarray, weight: float) -> np.ndarray:
    """ "Like this photo, but <text>": (1 - weight) x photo + weight x text, renormalised (each view of a photo)."""
    v = (1 - weight) * image_vec + weight * text_vec
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 0, v / np.where(n > 0, n, 1), image_vec)


def product_vector(served: Served, product_id: str) -> np.ndarray:
    rows = served.table.search().where(f"product_id = {sql_quote(product_id)}").select(["vector"]).limit(1).to_list()
    if not rows:
        raise BadQuery(f"unknown product id {product_id!r}", 404)
    return np.asarray(rows[0]["vector"], dtype=np.float32)


def result_row(r: dict) -> dict:
    """A result row as the API returns it: the result columns (a NaN price as null), the score rounded."""
    out = {k: r.get(k) for k in RESULT_COLUMNS if k in r}
    if out.get("price") is not None and out["price"] != out["price"]:  # NaN
        out["price"] = None
    return {**out, "score": round(float(r["score"]), 6)} if "score" in r else out


def facet_counts(rows: list[dict], columns: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """{column: {value: count}} over candidate rows, most frequent first (missing values not counted; a tag column
    counts each tag)."""
    out = {}
    for c in columns:
        counts: dict[str, int] = {}
        for r in rows:
            if r.get(c) is not None:
                for value in str(r[c]).split() if c in TAG_COLUMNS else [str(r[c])]:
                    counts[value] = counts.get(value, 0) + 1
        out[c] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def by_vector(
    served: Served,
    catalog: Catalog,
    vec: np.ndarray,
    limit: int,
    offset: int,
    filters: Filters,
    exclude_id: str | None = None,
) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """One page of the products nearest to `vec` (or to the best of its views), and the facet counts over the
    top FACET_POOL matching candidates (or the page, when deeper)."""
    where = where_clause(filters, catalog, exclude_id)
    n = max(offset + limit, FACET_POOL)
    rows = catalog.nearest(served.table, vec, n, where, catalog.ranked_columns)
    return [result_row(r) for r in rows[offset : offset + limit]], facet_counts(rows, catalog.facet_columns)


def hybrid(
    served: Served, catalog: Catalog, text: str, vec: np.ndarray, limit: int, offset: int, filters: Filters
) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """Full-text (BM25 on titles) and vector results fused by reciprocal rank; each hit keeps both ranks.
    Facet counts are taken over every fused candidate."""
    n = max(50, 2 * (offset + limit))
    where = where_clause(filters, catalog)
    cols = list(catalog.ranked_columns)
    vec_rows = catalog.nearest(served.table, vec, n, where, tuple(cols))
    q = served.table.search(text, query_type="fts")
    if where:
        q = q.where(where, prefilter=True)
    try:
        fts_rows = q.select([*cols, "_score"]).limit(n).to_list()
    except Exception:  # a query FTS cannot parse (only punctuation, ...): vector results alone
        fts_rows = []
    fused: dict[str, dict] = {}
    for source, rows in (("vector_rank", vec_rows), ("text_rank", fts_rows)):
        for rank, r in enumerate(rows, 1):
            facets = {c: r.get(c) for c in catalog.facet_columns}
            hit = fused.setdefault(
                r["product_id"], {**result_row(r), **facets, "score": 0.0, "vector_rank": None, "text_rank": None}
            )
            hit[source] = rank
            hit["score"] += 1.0 / (RRF_K + rank)
    ranked = sorted(fused.values(), key=lambda h: (-h["score"], h["product_id"]))
    page = [{**result_row(h), "vector_rank": h["vector_rank"], "text_rank": h["text_rank"]} for h in ranked]
    return page[offset : offset + limit], facet_counts(ranked, catalog.facet_columns)


def search(
    served: Served,
    text: str | None = None,
    image: Path | None = None,
    k: int = 10,
    category: str | None = None,
    box: str | None = None,
    limits: tuple[int, int] | None = None,
    exact_max_rows: int = DEFAULT_EXACT_MAX_ROWS,
) -> list[dict]:
    """One search by text or by a photo file, ranked exactly as the API ranks it (`lensflow search` uses this).
    The photo is decoded as an upload is (`decode_image`, within `limits` = (max pixels, max side); default:
    the service's), then located and cropped, inside `box` (as the API's `box=`) when given. Tables up to
    `exact_max_rows` are searched exactly in memory, as the service does."""
    if (text is None) == (image is None):
        raise BadQuery("give exactly one of text or image")
    if box is not None and image is None:
        raise BadQuery("a box needs a photo")
    catalog = Catalog.of(served.table, exact_max_rows)
    if text is not None:
        vec = text_vector(served, text_query(text))
    else:
        max_pixels, max_side = limits or (DEFAULT_LIMITS["max_image_pixels"], DEFAULT_LIMITS["max_image_side"])
        photo = decode_image(Path(image).read_bytes(), max_pixels, max_side, photo_side(served.encoder))
        vec = image_vector(served, photo, photo_box(photo, box))
    return by_vector(served, catalog, vec, k, 0, Filters(category=category))[0]
