import pandas as pd
import pytest

from lensflow.tasks.helpers.catalog import CatalogError, hash_split, load_catalog


def test_csv_catalog_gets_rows_and_hash_splits(tmp_path):
    pd.DataFrame(
        {"product_id": ["a", "b"], "title": ["x", "y"], "category": ["c", "c"], "image_path": ["i/a.png", "i/b.png"]}
    ).to_csv(tmp_path / "catalog.csv", index=False)
    df = load_catalog(tmp_path)
    assert df["row"].tolist() == [1, 2]
    assert df["split"].tolist() == [hash_split("a"), hash_split("b")]


def test_hash_split_is_deterministic_and_proportional():
    splits = [hash_split(f"id-{i}") for i in range(4000)]
    assert splits == [hash_split(f"id-{i}") for i in range(4000)]
    assert 0.12 < splits.count("test") / 4000 < 0.18 and 0.03 < splits.count("val") / 4000 < 0.07


def test_missing_columns_are_named(tmp_path):
    pd.DataFrame({"product_id": ["a"], "title": ["x"]}).to_parquet(tmp_path / "catalog.parquet")
    with pytest.raises(CatalogError, match=r"missing required column\(s\) \['category', 'image_path'\]"):
        load_catalog(tmp_path)


def test_empty_and_absent_catalogs(tmp_path):
    with pytest.raises(CatalogError, match="no catalog in"):
        load_catalog(tmp_path)
    (tmp_path / "catalog.csv").write_text("product_id,title,category,image_path\n")
    with pytest.raises(CatalogError, match="has no rows"):
        load_catalog(tmp_path)


def test_non_utf8_csv_is_reported(tmp_path):
    (tmp_path / "catalog.csv").write_bytes(
        "product_id,title,category,image_path\na,caf\xe9,c,x.png\n".encode("latin-1")
    )
    with pytest.raises(CatalogError, match="catalog.csv"):
        load_catalog(tmp_path)


def test_two_catalogs_are_an_error_naming_both(tmp_path):
    """A sample catalog.parquet beside the user's catalog.csv must not silently win."""
    row = {"product_id": ["a"], "title": ["x"], "category": ["c"], "image_path": ["i/a.png"]}
    pd.DataFrame(row).to_parquet(tmp_path / "catalog.parquet")
    pd.DataFrame(row).to_csv(tmp_path / "catalog.csv", index=False)
    with pytest.raises(CatalogError) as err:
        load_catalog(tmp_path)
    assert str(tmp_path / "catalog.parquet") in str(err.value) and str(tmp_path / "catalog.csv") in str(err.value)
