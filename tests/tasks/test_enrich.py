"""Catalog enrichment: predicted categories and colour tags, stored in the index, searchable and filterable,
and computed by a reindex for the rows it embeds."""

import numpy as np
import pandas as pd
from PIL import Image

from lensflow.core.index import connect
from lensflow.serving.search import Catalog, Filters, facet_counts, where_clause
from lensflow.tasks.enrich import ENRICH_COLUMNS, enrich_catalog, enrich_changes
from lensflow.tasks.helpers.diff import CatalogDiff
from lensflow.tasks.index import build_index
from lensflow.tasks.mislabel import mislabelled
from lensflow.tasks.reindex import IndexPolicy, apply_changes

COLOURS = {"Bag": (40, 60, 210), "Coat": (200, 30, 30), "Shoe": (30, 170, 60)}


def photo(rgb):
    img = np.full((48, 48, 3), 255, np.uint8)
    img[8:40, 12:36] = rgb
    return Image.fromarray(img)


def catalog_with_photos(data, n_per=30, dim=16, seed=0):
    """Three categories, each a cluster of vectors and one colour; row 5 is labelled Coat but looks like a Bag."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 4
    cats = np.repeat(list(COLOURS), n_per)
    vectors = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    (data / "images").mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(cats):
        photo(COLOURS[c]).save(data / "images" / f"{i}.png")
    labels = cats.copy()
    labels[5] = "Coat"
    df = pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(len(cats))],
            "title": [f"item {i}" for i in range(len(cats))],
            "category": labels,
            "image_path": [f"images/{i}.png" for i in range(len(cats))],
            "split": "train",
        }
    )
    return df, vectors


def test_full_build_stores_searchable_filterable_enrichment(tmp_path):
    df, vectors = catalog_with_photos(tmp_path / "data")
    batches = (vectors[i : i + 32] for i in range(0, len(vectors), 32))  # as the embedder streams them
    enriched = enrich_catalog(df, tmp_path / "data", batches, progress=False)
    out = enriched.catalog
    assert len(enriched.vectors) == len(df) and set(ENRICH_COLUMNS) <= set(out.columns)
    assert (out.predicted_category == np.repeat(list(COLOURS), 30)).all()  # row 5's neighbours vote Bag
    assert out.category_confidence.between(0, 1).all() and out.category_confidence.min() > 0.9
    assert (
        out.colours == [{"Bag": "blue", "Coat": "red", "Shoe": "green"}[c] for c in np.repeat(list(COLOURS), 30)]
    ).all()
    flagged = mislabelled(out.product_id, out.category, out.predicted_category, out.category_confidence)
    assert flagged.product_id.tolist() == ["p5"] and flagged.predicted.tolist() == ["Bag"]

    build_index(str(tmp_path / "db"), "m-v1", out, enriched.vectors, {})
    tbl = connect(str(tmp_path / "db")).open_table("m-v1")
    assert {"predicted_category", "category_confidence", "colours"} <= set(tbl.schema.names)
    assert str(tbl.schema.field("category_confidence").type) == "double"
    # full text: "blue" is in no title, only in the colour tags
    hits = tbl.search("blue", query_type="fts").select(["product_id"]).limit(100).to_list()
    assert len(hits) == 30 and {h["product_id"] for h in hits} == {f"p{i}" for i in range(30)}
    # filters: a colour tag and a predicted category, validated and quoted
    catalog = Catalog.of(tbl)
    where = where_clause(Filters(attributes={"colours": "red", "predicted_category": "Coat"}), catalog)
    rows = tbl.search(vectors[40]).where(where, prefilter=True).select(["product_id", "colours"]).limit(100).to_list()
    assert len(rows) == 30 and all(r["colours"] == "red" for r in rows)
    for bad in ({"colours": "x' OR '1'='1"}, {"colours": "red blue"}, {"predicted_category": "Hat"}):
        try:
            where_clause(Filters(attributes=bad), catalog)
            raise AssertionError(f"{bad} was accepted")
        except ValueError as e:
            assert "unknown" in str(e)
    assert facet_counts([{"colours": "grey white"}, {"colours": "white"}], ("colours",)) == {
        "colours": {"white": 2, "grey": 1}
    }


def test_reindex_enriches_new_rows_and_keeps_text_only_changes(tmp_path):
    data = tmp_path / "data"
    df, vectors = catalog_with_photos(data)
    enriched = enrich_catalog(df, data, vectors, progress=False)
    uri = str(tmp_path / "db")
    build_index(uri, "m-v1", enriched.catalog, vectors, {})
    # one new product that looks like a Shoe (green, near the Shoe vectors) but is filed as a Bag; p1 retitled
    photo(COLOURS["Shoe"]).save(data / "images" / "new.png")
    new = pd.DataFrame(
        [
            {
                "product_id": "new",
                "title": "new thing",
                "category": "Bag",
                "image_path": "images/new.png",
                "split": "train",
            }
        ]
    )
    catalog = pd.concat([df, new], ignore_index=True)
    catalog.loc[1, "title"] = "renamed"
    new_vec = vectors[70:71] + 0.01
    diff = CatalogDiff(added=["new"], removed=[], changed_image=[], changed_text=["p1"])
    tags = enrich_changes(uri, "m-v1", catalog, new, new_vec, data, progress=False)
    assert tags.loc["new"].to_dict() == {"predicted_category": "Shoe", "category_confidence": 1.0, "colours": "green"}
    apply_changes(uri, "m-v1", "m-v1-r1", catalog, diff, new_vec, IndexPolicy(), 0, None, tags)
    rows = connect(uri).open_table("m-v1-r1").to_pandas().set_index("product_id")
    assert rows.loc["new", "colours"] == "green" and rows.loc["new", "predicted_category"] == "Shoe"
    assert rows.loc["p1", "title"] == "renamed" and rows.loc["p1", "colours"] == "blue"
    assert rows.loc["p1", "predicted_category"] == "Bag" and rows.predicted_category.notna().all()
    # a table built before enrichment gets none: its columns stay as they were
    build_index(uri, "old-v1", df, vectors, {})
    assert enrich_changes(uri, "old-v1", catalog, new, new_vec, data, progress=False) is None
