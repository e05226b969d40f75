import pandas as pd

from lensflow.tasks.helpers.diff import diff_catalogs
from lensflow.tasks.reindex import next_table_name


def cat(rows):
    return pd.DataFrame(rows, columns=["product_id", "title", "category", "image_path", "price"])


def test_diff_added_removed_changed_image_and_text():
    old = cat(
        [
            ("a", "A", "x", "images/a.png", 1.0),
            ("b", "B", "x", "images/b.png", 2.0),
            ("c", "C", "y", "images/c.png", None),
            ("d", "D", "y", "images/d.png", 4.0),
            ("e", "E", "y", "images/e.png", 5.0),
        ]
    )
    new = cat(
        [
            ("a", "A", "x", "images/a.png", 1.0),  # unchanged
            ("b", "B", "x", "images/b.png", 2.0),  # same path, new bytes -> changed image
            ("c", "C", "y", "images/c2.png", None),  # other file with identical bytes, new path -> changed image
            ("d", "D v2", "y", "images/d.png", 4.0),  # title only -> text change, vector kept
            ("f", "F", "x", "images/f.png", 6.0),
        ]
    )  # added; e removed
    old_files = {
        "images/a.png": "1",
        "images/b.png": "2",
        "images/c.png": "3",
        "images/d.png": "4",
        "images/e.png": "5",
    }
    new_files = {
        "images/a.png": "1",
        "images/b.png": "2b",
        "images/c2.png": "3",
        "images/d.png": "4",
        "images/f.png": "6",
    }
    d = diff_catalogs(old, new, old_files, new_files)
    assert d.added == ["f"] and d.removed == ["e"] and d.changed_image == ["b", "c"] and d.changed_text == ["d"]
    assert d.to_embed == ["f", "b", "c"] and d.n_changes == 5
    same = diff_catalogs(old, old.copy(), old_files, old_files)
    assert same.n_changes == 0
    # NaN and None prices are the same missing value; a price change is a text change
    priced = old.copy()
    priced.loc[priced.product_id == "a", "price"] = 9.0
    assert diff_catalogs(old, priced, old_files, old_files).changed_text == ["a"]


def test_next_table_name():
    assert next_table_name(["m-v3"], "m-v3") == "m-v3-r1"
    assert next_table_name(["m-v3", "m-v3-r1"], "m-v3-r1") == "m-v3-r2"
    assert next_table_name(["m-v3", "m-v3-r1", "m-v3-r2"], "m-v3-r1") == "m-v3-r3"
