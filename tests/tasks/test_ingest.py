"""`lensflow data import`'s core: a user's catalog and photos brought into data/, nothing lost or overwritten."""

import json
import os

import pandas as pd
import pytest
from PIL import Image

from lensflow.tasks.helpers.catalog import CatalogError, load_catalog
from lensflow.tasks.ingest import import_catalog, read_categories


def _shop(root):
    """A user's shop folder: photos in nested folders, absolute and relative paths, one photo missing."""
    (root / "photos" / "tops").mkdir(parents=True)
    for name in ("tops/a.jpg", "tops/b.png", "c.webp"):
        Image.new("RGB", (20, 30), "red").save(root / "photos" / name)
    df = pd.DataFrame(
        {
            "product_id": ["A-1", "B-2", "C-3", "D-4", "E-5"],
            "title": ["a", "b", "c", "d", "e"],
            "category": ["Tops", "Tops", "Shoes", "Shoes", "Tops"],
            "colour": ["red"] * 5,
            "image_path": [
                "tops/a.jpg",
                str(root / "photos" / "tops" / "b.png"),
                "c.webp",
                "tops/A.JPG",
                "../secret.png",
            ],
        }
    )
    df.to_csv(root / "catalog.csv", index=False)
    return df


def test_import_copies_the_catalog_and_its_photos_and_keeps_every_row(tmp_path):
    shop, data = tmp_path / "shop", tmp_path / "data"
    src = _shop(shop)
    imp = import_catalog(shop / "catalog.csv", shop / "photos", data)
    assert imp.rows == 5 and imp.images == 3 and imp.categories == ["Shoes", "Tops"] and not imp.linked
    df = load_catalog(data)
    assert (
        df["product_id"].tolist() == src["product_id"].tolist() and df["colour"].tolist() == ["red"] * 5
    )  # own columns kept
    assert df["image_path"].tolist()[:3] == ["images/tops/a.jpg", "images/tops/b.png", "images/c.webp"]
    assert all(
        (data / p).read_bytes() == (shop / "photos" / q).read_bytes()
        for p, q in zip(df["image_path"][:3], ["tops/a.jpg", "tops/b.png", "c.webp"])
    )
    # not found photos are reported (with the case hint) and their rows kept for validation to quarantine
    assert imp.missing[0].startswith("row 4: 'tops/A.JPG' is not in") and "'tops/a.jpg' is" in imp.missing[0]
    assert "row 5: '../secret.png' is outside --images" in imp.missing[1]
    assert json.loads((data / "categories.json").read_text()) == ["Shoes", "Tops"]
    assert (shop / "catalog.csv").exists() and len(list((shop / "photos").rglob("*.*"))) == 3  # the source untouched


def test_image_paths_written_relative_to_the_catalogs_folder_are_found_too(tmp_path):
    shop, data = tmp_path / "shop", tmp_path / "data"
    _shop(shop)
    pd.DataFrame(
        {"product_id": ["A"], "title": ["a"], "category": ["Tops"], "image_path": ["photos/tops/a.jpg"]}
    ).to_csv(shop / "catalog.csv", index=False)
    imp = import_catalog(shop / "catalog.csv", shop / "photos", data)
    assert imp.images == 1 and not imp.missing and load_catalog(data)["image_path"].tolist() == ["images/tops/a.jpg"]
    # --images at the shop folder itself, paths that start with images/: stored once, not images/images/
    (shop / "images").mkdir()
    Image.new("RGB", (8, 8)).save(shop / "images" / "x.png")
    pd.DataFrame(
        {
            "product_id": ["A", "B"],
            "title": ["a", "b"],
            "category": ["Tops"] * 2,
            "image_path": ["images/x.png", str(shop / "images" / "x.png")],
        }
    ).to_csv(shop / "catalog.csv", index=False)
    imp = import_catalog(shop / "catalog.csv", shop, data, force=True)
    assert imp.images == 1 and load_catalog(data)["image_path"].tolist() == ["images/x.png", "images/x.png"]


def test_import_refuses_to_replace_files_it_did_not_create_unless_forced(tmp_path):
    shop, data = tmp_path / "shop", tmp_path / "data"
    _shop(shop)
    import_catalog(shop / "catalog.csv", shop / "photos", data)
    (data / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt.*--force"):
        import_catalog(shop / "catalog.csv", shop / "photos", data)
    assert (data / "notes.txt").read_text() == "mine"
    pd.read_csv(shop / "catalog.csv").head(2).to_parquet(shop / "catalog.parquet")
    imp = import_catalog(shop / "catalog.parquet", shop / "photos", data, force=True)
    assert not (data / "notes.txt").exists() and not (data / "catalog.csv").exists()  # exactly one catalog left
    assert imp.rows == 2 and len(load_catalog(data)) == 2


def test_import_replaces_lensflows_own_sample_without_asking(tmp_path):
    from lensflow.tasks.sample import SAMPLE_MARK

    shop, data = tmp_path / "shop", tmp_path / "data"
    _shop(shop)
    (data / "images" / "train").mkdir(parents=True)
    Image.new("L", (28, 28)).save(data / "images" / "train" / "fm-tr-00000.png")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "product_id": ["fm-tr-00000"],
            "title": ["t"],
            "category": ["Bag"],
            "image_path": ["images/train/fm-tr-00000.png"],
            "split": ["train"],
        }
    )
    pq.write_table(table.replace_schema_metadata({SAMPLE_MARK: '{"limit": 1}'}), data / "catalog.parquet")
    (data / "categories.json").write_text('["Bag"]')
    imp = import_catalog(shop / "catalog.csv", shop / "photos", data)
    assert imp.replaced_sample == 3 and not (data / "catalog.parquet").exists()
    assert not (data / "images" / "train" / "fm-tr-00000.png").exists()


def test_link_and_categories_file(tmp_path):
    shop, data = tmp_path / "shop", tmp_path / "data"
    _shop(shop)
    (shop / "categories.txt").write_text("# ours\nTops\nShoes\nBags\n")
    imp = import_catalog(
        shop / "catalog.csv", shop / "photos", data, categories_file=shop / "categories.txt", link=True
    )
    assert imp.linked and imp.categories == ["Tops", "Shoes", "Bags"] and imp.categories_from.endswith("categories.txt")
    assert os.stat(data / "images" / "tops" / "a.jpg").st_ino == os.stat(shop / "photos" / "tops" / "a.jpg").st_ino
    with pytest.raises(CatalogError, match="JSON list"):
        (shop / "bad.json").write_text('{"a": 1}')
        read_categories(shop / "bad.json")
    with pytest.raises(CatalogError, match="already in the data folder"):
        import_catalog(data / "catalog.csv", data, data)
