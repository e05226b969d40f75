import numpy as np
import pandas as pd
import pytest

from lensflow.core.dvc import dir_md5
from lensflow.core.index import IndexConfig, table_metadata, vector_search
from lensflow.tasks.index import build_index


def config(min_rows):
    return IndexConfig.preset(min_rows=min_rows)


def _catalog(n, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cats = np.array(["Bag", "Coat"])[np.arange(n) % 2]
    df = pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(n)],
            "title": [f"{c} item {i}" for i, c in enumerate(cats)],
            "category": cats,
            "image_path": [f"images/{i}.png" for i in range(n)],
            "split": "train",
        }
    )
    return df, vecs


def test_small_table_is_exact_with_fts_and_metadata(tmp_path):
    df, vecs = _catalog(200)
    info = build_index(str(tmp_path), "m-v1", df, vecs, {"model_name": "m", "model_version": 1}, config(1000))
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
    info = build_index(str(tmp_path), "m-v2", df, vecs, {}, config(2000))
    assert info.ann == config(2000).ann(3000, 32) and info.ann["num_partitions"] == 11
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
    ann_params = IndexConfig.preset(min_rows=1).ann
    p = ann_params(70_000, 256)
    assert p["num_sub_vectors"] == 16 and 256 % p["num_sub_vectors"] == 0
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


def test_vector_batches_stream_into_the_table_in_chunks(tmp_path):
    import lancedb

    df, vecs = _catalog(50)
    batches = (vecs[i : i + 7] for i in range(0, 50, 7))  # ragged batches, appended in chunks of >= 16 rows
    info = build_index(str(tmp_path), "m-v1", df, batches, {}, dim=16, chunk_rows=16)
    got = lancedb.connect(str(tmp_path)).open_table("m-v1").to_arrow()
    assert info.rows == 50 and got["product_id"].to_pylist() == df["product_id"].tolist()
    np.testing.assert_array_equal(np.stack(got["vector"].to_numpy(zero_copy_only=False)), vecs)


@pytest.mark.parametrize("n_vectors, message", [(30, "30 vectors for 50 catalog rows"), (57, "more vectors than")])
def test_a_short_or_long_stream_fails_and_leaves_no_table(tmp_path, n_vectors, message):
    import lancedb

    df, _ = _catalog(50)
    _, vecs = _catalog(n_vectors)
    with pytest.raises(ValueError, match=message):
        build_index(
            str(tmp_path), "m-v1", df, (vecs[i : i + 8] for i in range(0, n_vectors, 8)), {}, dim=16, chunk_rows=16
        )
    assert "m-v1" not in lancedb.connect(str(tmp_path)).list_tables().tables


def test_batches_of_the_wrong_width_name_the_row(tmp_path):
    df, vecs = _catalog(20)
    with pytest.raises(ValueError, match=r"shape \(10, 8\) at row 10; expected \[n, 16\]"):
        build_index(str(tmp_path), "m-v1", df, iter([vecs[:10], vecs[10:, :8]]), {}, dim=16)


def test_best_of_ranks_each_product_by_its_best_view(tmp_path):
    from lensflow.core.index import best_of
    from lensflow.tasks.robustness import best_ranking

    df, vecs = _catalog(300)
    build_index(str(tmp_path), "m-v1", df, vecs, {}, config(1000))
    import lancedb

    tbl = lancedb.connect(str(tmp_path)).open_table("m-v1")
    views = np.stack(
        [vecs[3], 0.6 * vecs[10] + 0.8 * vecs[11]]
    )  # view 1 is product 3 itself; view 2 sits between 10 and 11
    hits = best_of(tbl, views, 5)
    assert [h["product_id"] for h in hits[:1]] == ["p3"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert "p11" in {h["product_id"] for h in hits} and len({h["product_id"] for h in hits}) == 5
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    exact = np.max(views @ vecs.T, axis=0)  # the same ranking in numpy, as the held-out evaluation computes it
    assert [f"p{i}" for i in best_ranking(views[None], vecs, 5)[0]] == [h["product_id"] for h in hits]
    assert [f"p{i}" for i in np.argsort(-exact)[:5]] == [h["product_id"] for h in hits]
    assert best_of(tbl, vecs[7], 3)[0]["product_id"] == "p7"  # one vector: plain vector search
