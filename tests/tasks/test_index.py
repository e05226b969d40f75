import numpy as np
import pandas as pd
import pytest

from tasks.index import ann_params, build_index, table_metadata, vector_search
from tasks.versioning import dir_md5


def _catalog(n, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cats = np.array(["Bag", "Coat"])[np.arange(n) % 2]
    df = pd.DataFrame({"product_id": [f"p{i}" for i in range(n)], "title": [f"{c} item {i}" for i, c in enumerate(cats)],
                       "category": cats, "image_path": [f"images/{i}.png" for i in range(n)], "split": "train"})
    return df, vecs


def test_small_table_is_exact_with_fts_and_metadata(tmp_path):
    df, vecs = _catalog(200)
    info = build_index(str(tmp_path), "m-v1", df, vecs, {"model_name": "m", "model_version": 1}, ann_min_rows=1000)
    import lancedb

    tbl = lancedb.connect(str(tmp_path)).open_table("m-v1")
    assert info.rows == 200 and info.ann is None and info.version == tbl.version
    assert info.fingerprint == dir_md5(tmp_path / "m-v1.lance")
    meta = table_metadata(tbl)
    assert meta["model_name"] == "m" and meta["model_version"] == 1 and meta["embed_dim"] == 16
    hits = vector_search(tbl, vecs[7], 3)
    assert hits[0]["product_id"] == "p7" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert all(h["category"] == "Coat" for h in vector_search(tbl, vecs[8], 5, where="category = 'Coat'"))
    fts = tbl.search("item 42", query_type="fts").limit(5).select(["product_id"]).to_list()
    assert "p42" in [r["product_id"] for r in fts]


def test_large_table_gets_ann_index_with_good_recall(tmp_path):
    df, vecs = _catalog(3000, dim=32)
    info = build_index(str(tmp_path), "m-v2", df, vecs, {}, ann_min_rows=2000)
    assert info.ann == ann_params(3000, 32) and info.ann["num_partitions"] == 11
    import lancedb

    tbl = lancedb.connect(str(tmp_path)).open_table("m-v2")
    found = [vector_search(tbl, vecs[i], 10)[0]["product_id"] == f"p{i}" for i in range(0, 3000, 150)]
    assert np.mean(found) >= 0.95  # refine_factor re-ranks with full vectors


def test_existing_table_is_never_overwritten(tmp_path):
    df, vecs = _catalog(20)
    build_index(str(tmp_path), "m-v1", df, vecs, {})
    with pytest.raises(FileExistsError, match="never overwritten"):
        build_index(str(tmp_path), "m-v1", df, vecs, {})


def test_ann_params_divide_the_dimension():
    p = ann_params(70_000, 256)
    assert p["num_sub_vectors"] == 32 and 256 % p["num_sub_vectors"] == 0
    assert p["num_partitions"] == 264
    assert 12 % ann_params(5000, 12)["num_sub_vectors"] == 0


def test_optional_columns_keep_types_and_missing_values(tmp_path):
    df, vecs = _catalog(4)
    df["price"] = [9.5, None, 3.0, 1.25]
    df["brand"] = ["acme", None, "acme", float("nan")]
    build_index(str(tmp_path), "m-v1", df, vecs, {})
    import lancedb

    got = lancedb.connect(str(tmp_path)).open_table("m-v1").to_arrow()
    assert got.schema.field("price").type == "double" and got["price"].to_pylist()[0] == 9.5
    assert got["brand"].to_pylist() == ["acme", None, "acme", None]
