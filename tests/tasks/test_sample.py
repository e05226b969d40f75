import json

import pandas as pd
import pytest

from tasks.sample import CATEGORIES, build_sample_catalog, split_counts
from tasks.versioning import dir_md5
from tests.conftest import needs_fashion_mnist


def test_split_counts_keep_proportions():
    assert split_counts(None) == (55_000, 5_000, 10_000)
    train, val, test = split_counts(700)
    assert (train, val, test) == (550, 50, 100)
    with pytest.raises(ValueError, match="at least 10"):
        split_counts(5)


@needs_fashion_mnist
def test_sample_is_deterministic_and_follows_the_contract(tmp_path):
    df = build_sample_catalog(tmp_path / "a", limit=140)
    build_sample_catalog(tmp_path / "b", limit=140)
    assert dir_md5(tmp_path / "a") == dir_md5(tmp_path / "b")
    on_disk = pd.read_parquet(tmp_path / "a" / "catalog.parquet")
    assert list(on_disk.columns) == ["product_id", "title", "category", "image_path", "split"]
    assert len(on_disk) == 140 and on_disk["product_id"].is_unique
    assert set(on_disk["category"]) <= set(CATEGORIES)
    assert on_disk["split"].value_counts().to_dict() == {"train": 110, "test": 20, "val": 10}
    assert all((tmp_path / "a" / p).exists() for p in df["image_path"])
    assert json.loads((tmp_path / "a" / "categories.json").read_text()) == CATEGORIES


def test_missing_dataset_explains_the_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        build_sample_catalog(tmp_path, source=tmp_path / "nowhere")


@needs_fashion_mnist
def test_refuses_to_overwrite_a_user_catalog(tmp_path):
    pd.DataFrame({"product_id": ["a"]}).to_parquet(tmp_path / "catalog.parquet")
    with pytest.raises(FileExistsError, match="--force"):
        build_sample_catalog(tmp_path, limit=20)
