"""The reindex flow on the tiny model: only the changes are embedded and applied; a failure changes nothing."""

import lancedb
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lensflow.core.champion import resolve_champion, status
from lensflow.core.dvc import dir_md5
from lensflow.core.index import IndexConfig, table_dir
from lensflow.core.settings import get_settings
from lensflow.flows.reindex import ReindexParams, reindex
from lensflow.flows.retrain import RetrainParams, retrain
from lensflow.serving.search import search
from lensflow.serving.served import load_champion
from lensflow.tasks.promote import GateConfig
from lensflow.tasks.reindex import IndexPolicy
from tests.conftest import write_synthetic_catalog

pytestmark = pytest.mark.flow


def trained(project, per_category=12, **kw):
    catalog = write_synthetic_catalog(project.data_path, per_category=per_category)
    retrain(
        params=RetrainParams(
            preset="tiny",
            epochs=2,
            batch_size=8,
            approval="auto-approve",
            progress=False,
            gate=GateConfig(floors={}, tolerance=1.0),
            **kw,
        )
    )
    return catalog


def change_catalog(project, catalog, rng=np.random.default_rng(7)):
    """3 added (bright green photos), p0001's photo replaced under the same id and path, p1002 retitled,
    p2003 and p2005 removed."""
    data = project.data_path
    new = []
    for i in range(3):
        pid = f"new{i}"
        Image.fromarray(
            np.clip(np.array((20, 240, 40)) + rng.normal(0, 10, (30, 40, 3)), 0, 255).astype(np.uint8)
        ).save(data / f"images/{pid}.png")
        new.append(
            {
                "product_id": pid,
                "title": f"Green bag novelty {i}",
                "category": "Green bag",
                "image_path": f"images/{pid}.png",
                "split": "train",
            }
        )
    path = catalog.set_index("product_id").loc["p0001", "image_path"]
    Image.fromarray(np.full((30, 40, 3), (250, 250, 250), np.uint8)).save(data / path)
    out = catalog[~catalog.product_id.isin(["p2003", "p2005"])].copy()
    out.loc[out.product_id == "p1002", "title"] = "Green bag, renamed"
    out = pd.concat([out, pd.DataFrame(new)], ignore_index=True)
    out.to_parquet(data / "catalog.parquet", index=False)
    return out


def test_reindex_embeds_and_applies_only_the_changes(project, prefect_harness):
    catalog = trained(project)
    before = status(project)
    base = before["champion"]["index"]
    base_md5 = dir_md5(table_dir(base["uri"], base["table"]))
    new_catalog = change_catalog(project, catalog)
    from lensflow.serving.watcher import ChampionWatcher

    watcher = ChampionWatcher(project, poll_s=60)
    assert watcher.check() and watcher.live.served.champion.index["table"] == "lensflow-encoder-v1"

    out = reindex(params=ReindexParams(progress=False))
    assert out["outcome"] == "reindexed" and out["diff"] == {
        "added": 3,
        "removed": 2,
        "changed_image": 1,
        "changed_text": 1,
    }
    assert out["embedded"] == 4 and out["rows"] == len(new_catalog) == len(catalog) + 1
    st = status(project)
    assert st["consistent"], st["problems"]
    idx = st["champion"]["index"]
    assert (
        st["champion"]["version"] == 1
        and idx["table"] == "lensflow-encoder-v1-r1"
        and idx["data_md5"] == out["data_md5"]
    )
    assert (
        idx["data_md5"] != before["champion"]["data_md5"]
        and st["champion"]["data_md5"] == before["champion"]["data_md5"]
    )
    # the search service swaps to the new table (same model version) on its next check
    assert watcher.check() and watcher.live.version == 1 and watcher.live.served.table.count_rows() == len(new_catalog)
    assert watcher.live.served.champion.index["table"] == "lensflow-encoder-v1-r1" and watcher.swaps == 1
    # the served table was never written
    assert dir_md5(table_dir(base["uri"], base["table"])) == base_md5 == base["fingerprint"]

    served = load_champion(project)
    for i in range(3):  # each new product is found by its own photo
        assert search(served, image=project.data_path / f"images/new{i}.png", k=1)[0]["product_id"] == f"new{i}"
    everything = {h["product_id"] for h in search(served, text="Red shirt", k=100)}
    assert len(everything) == len(new_catalog) and not everything & {"p2003", "p2005"}
    rows = (
        served.table.search()
        .where("product_id IN ('p1002', 'p0001')")
        .select(["product_id", "title", "vector"])
        .limit(2)
        .to_list()
    )
    by_id = {r["product_id"]: r for r in rows}
    assert by_id["p1002"]["title"] == "Green bag, renamed"
    vec = served.encoder.encode_images(
        served.encoder.preprocess([Image.open(project.data_path / catalog.image_path[1]).convert("RGB")])
    )
    assert np.allclose(
        by_id["p0001"]["vector"], vec[0].detach().numpy(), atol=1e-5
    )  # p0001 re-embedded from its new photo

    # enrichment: computed for the embedded products from their new photos, carried over for the rest
    table = served.table.to_pandas().set_index("product_id")
    assert table.predicted_category.notna().all() and table.colours.notna().all()
    assert [table.loc[f"new{i}", "colours"] for i in range(3)] == ["green"] * 3
    assert table.loc["p0001", "colours"] == "white"
    assert set(table.predicted_category) <= set(new_catalog.category)

    again = reindex(params=ReindexParams(progress=False))
    assert again["outcome"] == "unchanged"


def test_failed_reindex_leaves_the_served_index_untouched(project, prefect_harness, monkeypatch):
    catalog = trained(project)
    before = status(project)
    tags_before = resolve_champion(project).tags
    change_catalog(project, catalog)
    import lensflow.tasks.reindex as module

    def broken(*a, **k):
        raise OSError("disk full while pushing to the DVC remote")

    monkeypatch.setattr(module, "track_dir", broken)
    with pytest.raises(OSError, match="disk full"):
        reindex(params=ReindexParams(progress=False))
    assert status(project) == before and resolve_champion(project).tags == tags_before
    assert not table_dir(before["champion"]["index"]["uri"], "lensflow-encoder-v1-r1").exists()
    assert lancedb.connect(project.lancedb_path).list_tables().tables == ["lensflow-encoder-v1"]


def test_reindex_keeps_the_ann_index_fresh_and_rebuilds_on_drift(project, prefect_harness):
    catalog = trained(project, per_category=150, ann_min_rows=300)  # 450 rows, IVF_PQ
    assert resolve_champion(project).index["ann"]
    change_catalog(project, catalog)
    out = reindex(params=ReindexParams(progress=False))
    assert not out["rebuilt"] and out["reason"].startswith("incremental: 5 new rows searched exactly")
    tbl = lancedb.connect(project.lancedb_path).open_table(out["table"])
    assert (
        tbl.index_stats("vector_idx").num_unindexed_rows == 5
    )  # 3 added, 1 new photo, 1 retitled (an update rewrites the row)
    served = load_champion(project)
    assert search(served, image=project.data_path / "images/new0.png", k=1)[0]["product_id"] == "new0"
    # above merge_fraction the delta is merged into the IVF_PQ index; recall is measured after the merge
    df = pd.read_parquet(project.data_path / "catalog.parquet")
    df[df.product_id != "p0007"].to_parquet(project.data_path / "catalog.parquet", index=False)
    merged = reindex(params=ReindexParams(progress=False, policy=IndexPolicy(merge_fraction=0.0, recall_tolerance=1.0)))
    assert not merged["rebuilt"] and "merged into the ANN index" in merged["reason"] and merged["recall_at_10"] > 0
    stats = lancedb.connect(project.lancedb_path).open_table(merged["table"]).index_stats("vector_idx")
    assert stats.num_unindexed_rows == 0 and stats.num_indexed_rows == merged["rows"]
    # a policy that tolerates no drift rebuilds the index from scratch
    df[~df.product_id.isin(["p0007", "p0008"])].to_parquet(project.data_path / "catalog.parquet", index=False)
    third = reindex(params=ReindexParams(progress=False, policy=IndexPolicy(rebuild_fraction=0.0)))
    assert (
        third["rebuilt"] and "changed since the last full build" in third["reason"] and third["table"].endswith("-r3")
    )
    assert status(project)["consistent"] and status(project)["champion"]["index"]["built"] == "full"
    # the rebuild is sized for the table as it is now, by the index preset (not the first build's partitions)
    dim = tbl.schema.field("vector").type.list_size
    assert third["index"]["ann"] == IndexConfig.preset(min_rows=1).ann(third["rows"], dim)


def test_reindex_on_dask_shards_embeds_the_changes_as_one_process_would(project, prefect_harness, monkeypatch):
    """LENSFLOW_EMBED_RUNNER=dask: the changed products are embedded on a local Dask cluster; the new rows'
    vectors are the champion encoder's own."""
    catalog = trained(project)
    change_catalog(project, catalog)
    monkeypatch.setenv("LENSFLOW_EMBED_RUNNER", "dask")
    get_settings.cache_clear()
    monkeypatch.setattr("lensflow.flows.shard.embed_catalog_task", lambda *a, **k: pytest.fail("embedded in-process"))
    out = reindex(params=ReindexParams(progress=False))
    assert out["outcome"] == "reindexed" and out["embedded"] == 4 and out["rows"] == len(catalog) + 1
    served = load_champion(get_settings())
    rows = (
        served.table.search()
        .where("product_id IN ('new0', 'p0001')")
        .select(["product_id", "vector"])
        .limit(2)
        .to_list()
    )
    paths = {"new0": project.data_path / "images/new0.png", "p0001": project.data_path / catalog.image_path[1]}
    for r in rows:
        vec = served.encoder.encode_images(
            served.encoder.preprocess([Image.open(paths[r["product_id"]]).convert("RGB")])
        )
        assert np.allclose(r["vector"], vec[0].detach().numpy(), atol=1e-5), r["product_id"]
