import json

import pandas as pd
import pytest

from lensflow.core.dvc import dir_md5
from lensflow.tasks.sample import CATEGORIES, build_sample_catalog, split_counts
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


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_fashion_mnist
def test_a_users_csv_catalog_and_photos_are_never_deleted(tmp_path):
    """The data-loss bug: a user's catalog.csv and photos under data/images were wiped by a sample build."""
    from tests.conftest import write_synthetic_catalog

    data = tmp_path / "data"
    write_synthetic_catalog(data).to_csv(data / "catalog.csv", index=False)
    (data / "catalog.parquet").unlink()
    (data / "categories.json").unlink()
    before = _snapshot(data)
    with pytest.raises(FileExistsError) as err:
        build_sample_catalog(data, limit=20)
    assert _snapshot(data) == before  # nothing deleted, nothing written
    assert str(data / "catalog.csv") in str(err.value) and f"{data / 'images'}/ (36 files)" in str(err.value)
    assert "--force" in str(err.value)
    # the user's photos alone (no catalog file yet) are protected too
    (data / "catalog.csv").unlink()
    with pytest.raises(FileExistsError):
        build_sample_catalog(data, limit=20)
    assert len(list((data / "images").iterdir())) == 36


@needs_fashion_mnist
def test_a_sample_rebuild_replaces_only_its_own_files_and_force_names_the_rest(tmp_path):
    first = build_sample_catalog(tmp_path, limit=40)
    second = build_sample_catalog(tmp_path, limit=20)  # its own earlier files: replaced without asking
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")}
    assert on_disk == set(second["image_path"]) and len(first) == 40
    (tmp_path / "images" / "mine.jpg").write_bytes(b"not lensflow's")
    with pytest.raises(FileExistsError, match=r"mine\.jpg|images/ \(1 file\)"):
        build_sample_catalog(tmp_path, limit=30)
    assert (tmp_path / "images" / "mine.jpg").exists() and len(pd.read_parquet(tmp_path / "catalog.parquet")) == 20
    build_sample_catalog(tmp_path, limit=30, force=True)  # --force: deletes exactly what the refusal listed
    assert not (tmp_path / "images" / "mine.jpg").exists() and len(pd.read_parquet(tmp_path / "catalog.parquet")) == 30
