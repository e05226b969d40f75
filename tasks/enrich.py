"""Catalog enrichment, stored as index columns next to the catalog's own: each product's predicted category and
its confidence (a similarity-weighted vote of its nearest other products, over the index vectors) and its colour
tags (models/colours.py). The tags are full-text searchable and filterable (serving/search.py); a confident
prediction that disagrees with the row's category marks a likely mislabelled row (tasks/mislabel.py)."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lensflow.core.index import category_vote, connect
from lensflow.models.colours import colour_tags
from lensflow.models.preprocess import draft, to_rgb
from lensflow.tasks import stage
from lensflow.tasks.evaluate import Gallery
from lensflow.tasks.helpers.progress import progress_bar

ENRICH_COLUMNS = ("predicted_category", "category_confidence", "colours")
NEIGHBOURS = 20  # products that vote on a product's category
TAG_BATCH = 512


def neighbours(
    queries: np.ndarray, base: np.ndarray, k: int = NEIGHBOURS, exclude: np.ndarray | None = None, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(indices [Q, k] into `base`, cosine scores [Q, k]) of each query's k nearest base rows, exact, best first;
    `exclude[q]` is a base row query q must not get (itself), or -1. Chunked matmul + top-k in torch (both
    multi-threaded: 70k x 70k in ~8x less time than numpy's single-threaded argpartition)."""
    import torch

    unit_b = torch.from_numpy(_unit(base))
    k = min(k, len(unit_b) - (0 if exclude is None else 1))
    idx = np.empty((len(queries), k), np.int64)
    sim = np.empty((len(queries), k), np.float32)
    with torch.inference_mode():
        for a in range(0, len(queries), chunk):
            s = torch.from_numpy(_unit(queries[a : a + chunk])) @ unit_b.T
            if exclude is not None:
                cols = torch.from_numpy(np.asarray(exclude[a : a + chunk], np.int64))
                rows = torch.arange(len(s))[cols >= 0]
                s[rows, cols[cols >= 0]] = -torch.inf
            top = torch.topk(s, k, dim=1, sorted=True)
            idx[a : a + chunk], sim[a : a + chunk] = top.indices.numpy(), top.values.numpy()
    return idx, sim


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return np.ascontiguousarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))


def vote_categories(
    vectors: np.ndarray, categories: np.ndarray, rows: np.ndarray | None = None
) -> tuple[list[str], list[float]]:
    """(predicted category, share of the vote) for `rows` of the table (all when None): the neighbours among the
    other rows vote, weighted by similarity. With fewer than two rows nothing votes: ("", 0.0)."""
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, np.int64)
    if len(vectors) < 2:
        return [""] * len(rows), [0.0] * len(rows)
    idx, sim = neighbours(vectors[rows], vectors, exclude=rows)
    voted = [category_vote(categories[i].tolist(), s.tolist())[0] for i, s in zip(idx, sim)]
    return [c for c, _ in voted], [round(float(v), 4) for _, v in voted]


def catalog_colours(data_dir: Path, image_paths: list[str], progress: bool = True) -> list[str]:
    """Colour tags of the catalog's photos, decoded as everywhere else (models.preprocess.to_rgb); photos are
    read in threads (PIL decodes without the GIL)."""

    def one(path: str) -> Image.Image:
        with Image.open(data_dir / path) as im:
            return to_rgb(draft(im, 64))  # a large JPEG decodes at reduced scale: colours need no detail

    out: list[str] = []
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        progress_bar(total=len(image_paths), desc="colour tags", unit="img", disable=not progress) as bar,
    ):
        for i in range(0, len(image_paths), TAG_BATCH):
            out += colour_tags(list(pool.map(one, image_paths[i : i + TAG_BATCH])))
            bar.update(min(TAG_BATCH, len(image_paths) - i))
    return out


@dataclass
class Enriched:
    catalog: pd.DataFrame  # the catalog with ENRICH_COLUMNS
    vectors: np.ndarray  # [N, D], catalog order (read once, for the index build)


def enrich_catalog(
    catalog: pd.DataFrame, data_dir: Path, vectors: np.ndarray | Iterable[np.ndarray], progress: bool = True
) -> Enriched:
    """The catalog with its enrichment columns, for a full index build: every row's predicted category from all
    other rows, and every photo's colour tags."""
    if not isinstance(vectors, np.ndarray):  # batches streamed from the embedder: the vote needs them all
        vectors = np.concatenate(list(vectors)).astype(np.float32, copy=False)
    if len(vectors) != len(catalog):
        raise ValueError(f"{len(vectors)} vectors for {len(catalog)} catalog rows")
    predicted, confidence = vote_categories(vectors, catalog["category"].astype(str).to_numpy())
    out = catalog.assign(
        predicted_category=predicted,
        category_confidence=confidence,
        colours=catalog_colours(data_dir, catalog["image_path"].tolist(), progress),
    )
    return Enriched(out, vectors)


def enrich_changes(
    uri: str,
    base_table: str,
    catalog: pd.DataFrame,
    todo: pd.DataFrame,
    vectors: np.ndarray,
    data_dir: Path,
    progress: bool = True,
) -> pd.DataFrame | None:
    """ENRICH_COLUMNS for the products a reindex embeds (`todo`, with their new `vectors`), indexed by product_id:
    their categories voted by the products the updated catalog keeps (the base table's vectors, the re-embedded
    ones replaced), their photos' colour tags. None when the base table has no enrichment columns (built before
    them): then the new table has none either."""
    table = connect(uri).open_table(base_table)
    if "predicted_category" not in table.schema.names:
        return None
    if not len(todo):
        return pd.DataFrame(columns=list(ENRICH_COLUMNS), index=pd.Index([], name="product_id"))
    base = Gallery.from_table(table)
    base_ids, base_vectors = base.ids, base.vectors
    category_of = catalog.set_index("product_id")["category"].astype(str)
    # the products the new catalog keeps, unchanged images: removed ones and re-embedded ones do not vote
    # (hashed lookups: np.isin on string ids compares every pair, minutes at 70k)
    ids_of_base = pd.Index(base_ids)
    keep = ids_of_base.isin(category_of.index) & ~ids_of_base.isin(todo["product_id"])
    ids = np.concatenate([base_ids[keep], todo["product_id"].to_numpy().astype(str)])
    all_vectors = np.concatenate([base_vectors[keep], np.asarray(vectors, np.float32)])
    rows = np.arange(int(keep.sum()), len(ids))
    predicted, confidence = vote_categories(all_vectors, category_of.loc[ids].to_numpy(), rows)
    colours = catalog_colours(data_dir, todo["image_path"].tolist(), progress)
    return pd.DataFrame(
        {"predicted_category": predicted, "category_confidence": confidence, "colours": colours},
        index=pd.Index(todo["product_id"].tolist(), name="product_id"),
    )


enrich_catalog_task = stage(enrich_catalog, name="enrich-catalog")
enrich_changes_task = stage(enrich_changes, name="enrich-changes")
