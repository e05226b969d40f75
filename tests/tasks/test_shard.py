import numpy as np
import pyarrow as pa
import pytest

from lensflow.flows.shard import embed_sharded
from lensflow.models.encoder import build_encoder
from lensflow.tasks.embed import embed_catalog
from lensflow.tasks.shard import embed_shard, shard_bounds, shard_vectors


@pytest.mark.parametrize(
    "n, shards, bounds",
    [
        (10, 3, [(0, 4), (4, 7), (7, 10)]),
        (9, 3, [(0, 3), (3, 6), (6, 9)]),
        (7, 1, [(0, 7)]),
        (2, 5, [(0, 1), (1, 2)]),
        (0, 4, []),
    ],
)
def test_shard_bounds_are_contiguous_balanced_and_never_empty(n, shards, bounds):
    assert shard_bounds(n, shards) == bounds


def test_shard_bounds_need_a_shard():
    with pytest.raises(ValueError, match="shards must be >= 1"):
        shard_bounds(10, 0)


@pytest.fixture
def model(project, tmp_path):
    enc = build_encoder("tiny")
    return enc, str(enc.save(tmp_path / "model"))


def _reference(enc, catalog, data_dir):
    return embed_catalog(enc, catalog, data_dir, progress=False)


def _same_vectors(results, catalog, ref):
    got = np.concatenate(list(shard_vectors(results, catalog)))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    return got


@pytest.mark.flow
def test_local_cluster_shards_give_the_single_process_vectors_and_index(
    project, tiny_catalog, model, tmp_path, prefect_harness
):
    import lancedb

    from lensflow.tasks.index import build_index

    enc, model_dir = model
    ref = _reference(enc, tiny_catalog, project.data_path)
    results = embed_sharded(
        model_dir, tiny_catalog, project.data_path, tmp_path / "shards", shards=3, workers=2, progress=False
    )
    assert [r.rows for r in results] == [12, 12, 12] and {r.device for r in results} == {"cpu"}
    pids = {r.pid for r in results}
    assert len(pids) == 2 and all(r.worker in {"0", "1"} for r in results)  # two worker processes, not this one
    assert sum(r.load_seconds > 0 for r in results) == 2  # each loaded the encoder once
    got = _same_vectors(results, tiny_catalog, ref)
    ids = pa.concat_tables(pa.ipc.open_file(r.path).read_all() for r in results)["product_id"].to_pylist()
    assert ids == tiny_catalog["product_id"].tolist()
    info = build_index(
        str(tmp_path / "db"), "m-v1", tiny_catalog, shard_vectors(results, tiny_catalog), {}, dim=enc.embed_dim
    )
    tbl = lancedb.connect(str(tmp_path / "db")).open_table("m-v1").to_arrow()
    assert info.rows == len(tiny_catalog) == tbl.num_rows
    np.testing.assert_array_equal(np.stack(tbl["vector"].to_numpy(zero_copy_only=False)), got)


@pytest.mark.flow
def test_existing_cluster_by_address(project, tiny_catalog, model, tmp_path, prefect_harness):
    from distributed import LocalCluster

    enc, model_dir = model
    ref = _reference(enc, tiny_catalog, project.data_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        results = embed_sharded(
            model_dir,
            tiny_catalog,
            project.data_path,
            tmp_path / "shards",
            shards=2,
            address=cluster.scheduler_address,
            progress=False,
        )
    assert len({r.pid for r in results}) == 2 and [r.rows for r in results] == [18, 18]
    _same_vectors(results, tiny_catalog, ref)


def _rewrite(path, keep=None, rename=None):
    table = pa.ipc.open_file(path).read_all()
    if keep is not None:
        table = table.slice(0, keep)
    if rename is not None:
        ids = table["product_id"].to_pylist()
        ids[rename] = "intruder"
        table = table.set_column(0, "product_id", pa.array(ids, pa.string()))
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


@pytest.mark.parametrize(
    "tamper, error, message",
    [
        ("missing", FileNotFoundError, r"shard-1\.arrow is missing \(catalog rows 18\.\.35\)"),
        ("renamed", ValueError, r"shard-1\.arrow, row 5: product_id 'intruder', but catalog row 23 has 'p1011'"),
        ("short", ValueError, r"shard-1\.arrow has 10 rows; the shard embedded 18 \(catalog rows from 18\)"),
        ("garbage", ValueError, r"shard-1\.arrow is not a readable Arrow file"),
        ("swapped", ValueError, r"shard-1\.arrow, row 0: product_id 'p1006', but catalog row 0 has 'p0000'"),
        ("dropped", ValueError, r"the shards cover 18 of the catalog's 36 rows"),
    ],
)
def test_tampered_shards_fail_with_the_file_and_row(project, tiny_catalog, model, tmp_path, tamper, error, message):
    enc, model_dir = model
    results = [
        embed_shard(
            model_dir, tiny_catalog.iloc[a:b], str(project.data_path), str(tmp_path / f"shard-{i}.arrow"), "cpu"
        )
        for i, (a, b) in enumerate(shard_bounds(len(tiny_catalog), 2))
    ]
    assert results[0].pid == results[1].pid and results[1].load_seconds == 0.0  # cached in this process
    path = results[1].path
    if tamper == "missing":
        (tmp_path / "shard-1.arrow").unlink()
    elif tamper == "renamed":
        _rewrite(path, rename=5)
    elif tamper == "short":
        _rewrite(path, keep=10)
    elif tamper == "garbage":
        (tmp_path / "shard-1.arrow").write_bytes(b"not arrow")
    elif tamper == "swapped":
        results = results[::-1]
    elif tamper == "dropped":
        results = results[:1]
    with pytest.raises(error, match=message):
        list(shard_vectors(results, tiny_catalog))
