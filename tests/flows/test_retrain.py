"""The whole retrain flow on the tiny random model and a tiny synthetic catalog, under the Prefect harness."""


import lancedb
import pytest

from flows.retrain import RetrainParams, retrain
from tasks.champion import IndexMismatch, load_champion, search, status
from tasks.promote import GateConfig
from tasks.registry import client, version_tags

pytestmark = pytest.mark.flow


def tiny_params(**kw):
    base = dict(preset="tiny", epochs=3, batch_size=8, auto_approve=True, progress=False,
                gate=GateConfig(floors={}, tolerance=1.0))
    return RetrainParams(**(base | kw))


def test_retrain_end_to_end_then_second_version(project, tiny_catalog, prefect_harness):
    first = retrain(params=tiny_params())
    assert first["outcome"] == "promoted" and first["version"] == 1
    st = status(project)
    assert st["consistent"] is True, st["problems"]
    ch = st["champion"]
    assert ch["version"] == 1 and ch["index"]["rows"] == len(tiny_catalog) == first["catalog_rows"]
    assert ch["data_md5"] == first["data_md5"] and ch["data_md5"].endswith(".dir")
    assert {"image_precision_at_10", "text_precision_at_10", "image_recall_at_1", "image_mrr_at_10",
            "image_ndcg_at_10", "zero_shot_accuracy"} <= set(ch["metrics"])
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "1"))
    for key in ("data_md5", "git_commit", "index.table", "index.version", "index.fingerprint", "metrics", "approval"):
        assert tags.get(key), key
    served = load_champion(project)
    hits = search(served, text="Blue shoe", k=5)
    assert len(hits) == 5 and hits == sorted(hits, key=lambda h: -h["score"])
    assert set(hits[0]) == {"product_id", "title", "category", "score"}
    # the MLflow run has the validation report, the evaluation and the model
    run = client(project.tracking_uri).get_run(first["run_id"])
    assert run.data.metrics["catalog_rows"] == len(tiny_catalog) and run.info.status == "FINISHED"

    assert {"shopper_recall_at_1", "shopper_mrr_at_10", "shopper_category_precision_at_10"} <= set(first["metrics"])
    arts = {a.path for a in client(project.tracking_uri).list_artifacts(first["run_id"], "evaluation")}
    assert {"evaluation/evaluation.json", "evaluation/comparison.md", "evaluation/recall_at_k.png",
            "evaluation/per_category.png", "evaluation/shopper_examples.png", "evaluation/worst_shopper_queries.png"} <= arts
    assert first["champion_metrics"] is None

    second = retrain(params=tiny_params(seed=1, strategy="partial"))
    assert second["version"] == 2 and second["outcome"] == "promoted" and second["strategy"] == "partial"
    assert second["gate"]["champion_version"] == 1
    # the champion was measured again on the challenger's eval set: same data, so v1's own numbers
    assert second["eval_set_md5"] == first["eval_set_md5"]
    assert second["champion_metrics"] == pytest.approx(first["metrics"], abs=1e-6)
    from prefect.artifacts import Artifact

    table = Artifact.get("retrain-evaluation").data
    assert "challenger" in table and "champion v1" in table and "image_precision_at_10" in table
    assert status(project)["champion"]["version"] == 2 and status(project)["consistent"]

    # a gate that cannot pass: v3 is registered and rejected, champion stays v2 and consistent
    third = retrain(params=tiny_params(gate=GateConfig(floors={"image_precision_at_10": 1.01})))
    assert third["outcome"] == "rejected" and third["version"] == 3
    st = status(project)
    assert st["champion"]["version"] == 2 and st["consistent"]
    assert "below the floor" in version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "3"))["rejected_reason"]


def test_tampered_index_is_refused(project, tiny_catalog, prefect_harness):
    retrain(params=tiny_params())
    table = lancedb.connect(project.lancedb_path).open_table(status(project)["champion"]["index"]["table"])
    table.delete("product_id = 'p0000'")
    st = status(project)
    assert st["consistent"] is False
    assert any("rows" in p for p in st["problems"]) and any("version" in p for p in st["problems"])
    with pytest.raises(IndexMismatch, match="refusing to serve"):
        load_champion(project)


def test_failed_run_leaves_the_champion_untouched(project, tiny_catalog, prefect_harness):
    retrain(params=tiny_params())
    before = status(project)
    tiny_catalog.assign(image_path="images/missing.png").to_parquet(project.data_path / "catalog.parquet", index=False)
    from tasks.validate import ValidationFailed

    with pytest.raises(ValidationFailed):
        retrain(params=tiny_params())
    assert status(project) == before


def test_auto_approve_off_waits_for_a_reviewer(project, tiny_catalog, prefect_harness):
    out = retrain(params=tiny_params(auto_approve=False))
    assert out["outcome"] == "awaiting-approval"
    assert status(project)["champion"] is None
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "1"))
    assert tags["status"] == "awaiting-approval" and "approval" not in tags
