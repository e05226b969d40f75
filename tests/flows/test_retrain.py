"""The whole retrain flow on the tiny random model and a tiny synthetic catalog, under the Prefect harness."""

import lancedb
import pytest

from lensflow.core.champion import IndexMismatch, status
from lensflow.core.registry import client, version_tags
from lensflow.core.settings import get_settings
from lensflow.flows.promote import PromoteParams, promote
from lensflow.flows.retrain import RetrainParams, retrain
from lensflow.serving.search import search
from lensflow.serving.served import load_champion
from lensflow.tasks.promote import GateConfig

pytestmark = pytest.mark.flow


def tiny_params(**kw):
    base = dict(
        preset="tiny",
        epochs=3,
        batch_size=8,
        approval="auto-approve",
        progress=False,
        gate=GateConfig(floors={}, tolerance=1.0),
    )
    return RetrainParams(**(base | kw))


def test_retrain_end_to_end_then_second_version(project, tiny_catalog, prefect_harness):
    first = retrain(params=tiny_params())
    assert first["outcome"] == "promoted" and first["version"] == 1
    steps = {"version-data", "validate-catalog", "fine-tune", "embed-catalog", "enrich-catalog", "build-index"}
    steps |= {"evaluate"}
    assert steps <= set(first["stage_seconds"]) and all(v >= 0 for v in first["stage_seconds"].values())
    flagged = project.path(project.reports_dir) / "validation" / first["data_md5"].removesuffix(".dir")
    assert (flagged / "likely_mislabelled.csv").read_text().startswith("product_id,category,predicted,confidence")
    st = status(project)
    assert st["consistent"] is True, st["problems"]
    ch = st["champion"]
    assert ch["version"] == 1 and ch["index"]["rows"] == len(tiny_catalog) == first["catalog_rows"]
    assert ch["data_md5"] == first["data_md5"] and ch["data_md5"].endswith(".dir")
    assert {
        "image_precision_at_10",
        "text_precision_at_10",
        "image_recall_at_1",
        "image_mrr_at_10",
        "image_ndcg_at_10",
        "zero_shot_accuracy",
    } <= set(ch["metrics"])
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "1"))
    for key in ("data_md5", "git_commit", "index", "metrics", "approval"):
        assert tags.get(key), key
    served = load_champion(project)
    enriched = served.table.to_pandas()  # every product's predicted category and colour tags, from its photo
    assert enriched.predicted_category.isin(tiny_catalog.category).all() and enriched.colours.str.len().gt(0).all()
    hits = search(served, text="Blue shoe", k=5)
    assert len(hits) == 5 and hits == sorted(hits, key=lambda h: -h["score"])
    assert set(hits[0]) == {"product_id", "title", "category", "score"}
    # the MLflow run has the validation report, the evaluation and the model
    run = client(project.tracking_uri).get_run(first["run_id"])
    assert run.data.metrics["catalog_rows"] == len(tiny_catalog) and run.info.status == "FINISHED"

    assert {"shopper_recall_at_1", "shopper_mrr_at_10", "shopper_category_precision_at_10"} <= set(first["metrics"])
    arts = {a.path for a in client(project.tracking_uri).list_artifacts(first["run_id"], "evaluation")}
    assert {
        "evaluation/evaluation.json",
        "evaluation/comparison.md",
        "evaluation/recall_at_k.png",
        "evaluation/per_category.png",
        "evaluation/shopper_examples.png",
        "evaluation/worst_shopper_queries.png",
    } <= arts
    assert first["champion_metrics"] is None

    second = retrain(params=tiny_params(seed=1, strategy="partial"))
    assert second["version"] == 2 and second["outcome"] == "promoted" and second["strategy"] == "partial"
    assert second["gate"]["champion_version"] == 1
    # the champion was measured again on the challenger's eval set: same data, so v1's own numbers
    assert second["eval_set_md5"] == first["eval_set_md5"]
    assert second["champion_metrics"] == pytest.approx(first["metrics"], abs=1e-6)
    from prefect.artifacts import Artifact

    table = Artifact.get("promotion-review").data
    assert "challenger" in table and "champion v1" in table and "image_precision_at_10" in table
    assert status(project)["champion"]["version"] == 2 and status(project)["consistent"]

    # a gate that cannot pass: v3 is registered and rejected, champion stays v2 and consistent
    third = retrain(params=tiny_params(gate=GateConfig(floors={"image_precision_at_10": 1.01})))
    assert third["outcome"] == "rejected" and third["version"] == 3
    st = status(project)
    assert st["champion"]["version"] == 2 and st["consistent"]
    assert (
        "below the floor"
        in version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "3"))[
            "rejected_reason"
        ]
    )


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
    from lensflow.tasks.validate import ValidationFailed

    with pytest.raises(ValidationFailed):
        retrain(params=tiny_params())
    assert status(project) == before


def test_reviewer_approves_and_a_stranger_cannot(project, tiny_catalog, prefect_harness, reviewer, reviewers):
    from lensflow.core.signoff import ReviewerKey

    keys = reviewers("alice", "bob")
    answered = reviewer(
        [
            # a typed name alone, a key of the stranger's own in alice's name, bob's code under alice's name
            {"decision": "approve", "reviewer": "alice", "comment": "ship it"},
            {"decision": "approve", "reviewer": "alice", "comment": "ship it", "key": ReviewerKey.generate("alice")},
            {"decision": "approve", "reviewer": "alice", "comment": "ship it", "key": keys["bob"]},
            {"decision": "approve", "reviewer": "alice", "comment": "better on every metric", "key": keys["alice"]},
        ]
    )
    out = retrain(params=tiny_params(approval="reviewer", approval_poll_s=1))
    assert out["outcome"] == "promoted" and len(answered) == 4
    refused = out["gate"]["review"]["refused"]
    assert out["gate"]["review"]["reviewer"] == "alice" and len(refused) == 3
    assert "no proof" in refused[0] and "does not verify with 'alice'" in refused[1] and "made by 'bob'" in refused[2]
    st = status(project)
    assert st["champion"]["version"] == 1 and st["consistent"]
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "1"))
    assert tags["approval"] == "reviewer" and tags["approved_by"] == "alice" and tags["approved_at"]
    assert tags["approval_comment"] == "better on every metric" and "no proof" in tags["approval_refused"]
    from prefect.artifacts import Artifact

    page = Artifact.get("promotion-review").data
    assert "v1 (challenger)" in page and "/#/experiments/" in page and "**Gate:** passed" in page


def test_replayed_expired_and_revoked_proofs_are_refused(project, tiny_catalog, prefect_harness, reviewer, reviewers):
    import time

    keys = reviewers("alice", "bob")
    first = reviewer([{"decision": "approve", "reviewer": "alice", "key": keys["alice"]}])
    assert retrain(params=tiny_params(approval="reviewer", approval_poll_s=1))["outcome"] == "promoted"
    run_a = first[0][0]
    project.reviewer_store().remove("bob")
    alice = keys["alice"]
    answered = reviewer(
        [
            {"decision": "approve", "reviewer": "alice", "code": lambda r: alice.sign(run_a, r["version"], "approve")},
            {
                "decision": "approve",
                "reviewer": "alice",
                "code": lambda r: alice.sign(r["flow_run_id"], r["version"], "approve", at=int(time.time()) - 3600),
            },
            {"decision": "approve", "reviewer": "alice", "code": lambda r: alice.sign(r["flow_run_id"], 1, "approve")},
            {"decision": "approve", "reviewer": "alice", "code": lambda r: alice.sign(r["flow_run_id"], 2, "reject")},
            {"decision": "approve", "reviewer": "bob", "key": keys["bob"]},
            {"decision": "reject", "reviewer": "alice", "comment": "not this week", "key": alice},
        ]
    )
    state = retrain(params=tiny_params(approval="reviewer", approval_poll_s=1, seed=1), return_state=True)
    assert state.name == "Rejected" and len(answered) == 7 and answered[1][0] != run_a  # the fixture's one list
    refused = state.result()["gate"]["review"]["refused"]
    assert "does not verify with 'alice'" in refused[0] and "for another run" in refused[0]
    assert "expired" in refused[1] and "does not verify" in refused[2] and "is for 'reject'" in refused[3]
    assert "'bob' is not a registered reviewer" in refused[4]
    assert status(project)["champion"]["version"] == 1
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "2"))
    assert tags["status"] == "rejected" and tags["rejected_by"] == "alice" and "expired" in tags["approval_refused"]


def test_reviewer_rejects_and_champion_stays(project, tiny_catalog, prefect_harness, reviewer, reviewers):
    retrain(params=tiny_params())
    keys = reviewers("alice")
    reviewer([{"decision": "reject", "reviewer": "alice", "comment": "shopper recall looks off", "key": keys["alice"]}])
    state = retrain(params=tiny_params(approval="reviewer", approval_poll_s=1, seed=1), return_state=True)
    assert state.is_completed() and state.name == "Rejected"
    assert state.result()["outcome"] == "rejected"
    assert status(project)["champion"]["version"] == 1 and status(project)["consistent"]
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "2"))
    assert (
        tags["status"] == "rejected"
        and tags["rejected_by"] == "alice"
        and "shopper recall looks off" in tags["rejected_reason"]
    )
    assert "approval" not in tags


def test_review_timeout_rejects_and_champion_stays(project, tiny_catalog, prefect_harness, reviewers):
    retrain(params=tiny_params())
    reviewers("alice")
    state = retrain(params=tiny_params(approval="reviewer", approval_timeout_s=2, approval_poll_s=1), return_state=True)
    assert state.is_failed()
    assert status(project)["champion"]["version"] == 1 and status(project)["consistent"]
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "2"))
    assert tags["status"] == "rejected" and tags["rejected_by"] == "timeout" and "timed out" in tags["rejected_reason"]


def test_reviewer_policy_needs_reviewers(project, tiny_catalog, prefect_harness):
    with pytest.raises(ValueError, match="lensflow reviewers add"):
        retrain(params=tiny_params(approval="reviewer"))
    assert client(project.tracking_uri).search_registered_models() == []


def test_deferred_review_then_promote_flow(project, tiny_catalog, prefect_harness, reviewer, reviewers):
    first = retrain(params=tiny_params())
    out = retrain(params=tiny_params(approval="later", seed=2))
    assert out["outcome"] == "awaiting-approval" and out["gate"]["champion_version"] == 1
    assert status(project)["champion"]["version"] == 1
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "2"))
    assert tags["status"] == "awaiting-approval" and "approval" not in tags
    with pytest.raises(ValueError, match="lensflow reviewers add"):
        promote(params=PromoteParams(approval="reviewer"))
    keys = reviewers("bob")
    reviewer([{"decision": "approve", "reviewer": "bob", "comment": "reviewed on Monday", "key": keys["bob"]}])
    done = promote(
        params=PromoteParams(approval="reviewer", approval_poll_s=1, gate=GateConfig(floors={}, tolerance=1.0))
    )
    assert done["outcome"] == "promoted" and done["version"] == 2 and done["gate"]["champion_version"] == 1
    assert status(project)["champion"]["version"] == 2 and status(project)["consistent"]
    assert (
        version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "1"))["status"]
        == "retired"
    )
    with pytest.raises(ValueError, match="already the champion"):
        promote(params=PromoteParams(version=2, approval="auto-approve"))
    assert first["version"] == 1


def test_missing_index_is_pulled_from_dvc_by_md5(project, tiny_catalog, prefect_harness):
    import shutil

    from lensflow.core.index import table_dir

    retrain(params=tiny_params())
    idx = status(project)["champion"]["index"]
    path = table_dir(idx["uri"], idx["table"])
    shutil.rmtree(path)
    (path.parent / f"{path.name}.dvc").unlink()  # the pointer too: the md5 on the model version is enough
    shutil.rmtree(project.root / ".dvc" / "cache")  # and the local cache: it must come from the remote
    assert status(project)["consistent"] is False
    served = load_champion(project)
    assert served.table.count_rows() == len(tiny_catalog) and status(project)["consistent"]
    assert search(served, text="Red shirt", k=3)


def test_another_versions_index_is_refused(project, tiny_catalog, prefect_harness):
    import shutil

    from lensflow.core.index import table_dir

    retrain(params=tiny_params())
    retrain(params=tiny_params(seed=1))
    champ = status(project)["champion"]
    assert champ["version"] == 2
    uri = champ["index"]["uri"]
    v2 = table_dir(uri, champ["index"]["table"])
    shutil.rmtree(v2)
    shutil.copytree(table_dir(uri, "lensflow-encoder-v1"), v2)  # v1's table under v2's name
    with pytest.raises(IndexMismatch, match=r"built for lensflow-encoder v1, not lensflow-encoder v2"):
        load_champion(project)


def test_evaluate_flow_remeasures_a_version_on_the_current_catalog(project, tiny_catalog, prefect_harness):
    from lensflow.flows.evaluate import EvaluateParams, evaluate

    first = retrain(params=tiny_params())
    same = evaluate(params=EvaluateParams(progress=False))
    assert same["version"] == 1 and same["same_eval_set"] and same["data_md5"] == first["data_md5"]
    assert same["metrics"] == pytest.approx(first["metrics"], abs=1e-6)
    tags = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "1"))
    assert '"run_id"' in tags["last_evaluation"] and first["data_md5"] in tags["last_evaluation"]
    # a changed catalog (a third of the products gone) is a different eval set, measured and recorded as such
    tiny_catalog[tiny_catalog.index % 3 != 0].to_parquet(project.data_path / "catalog.parquet", index=False)
    changed = evaluate(params=EvaluateParams(version=1, progress=False))
    assert changed["data_md5"] != first["data_md5"] and not changed["same_eval_set"]
    assert client(project.tracking_uri).get_run(changed["run_id"]).data.metrics[
        "image_precision_at_10"
    ] == pytest.approx(changed["metrics"]["image_precision_at_10"])
    assert status(project)["champion"]["version"] == 1 and status(project)["consistent"]


def test_retrain_with_dask_shards_indexes_what_one_process_embeds(project, tiny_catalog, prefect_harness, monkeypatch):
    """LENSFLOW_EMBED_RUNNER=dask: the catalog is embedded in slices on a local 2-worker Dask cluster and the index
    built once over all of them; its rows and vectors are the single-process embedding of the same model."""
    import numpy as np

    from lensflow.core.champion import model_dir, resolve_champion
    from lensflow.models.encoder import load_encoder
    from lensflow.tasks.embed import embed_catalog

    monkeypatch.setenv("LENSFLOW_EMBED_RUNNER", "dask")
    monkeypatch.setenv("LENSFLOW_EMBED_SHARDS", "3")
    get_settings.cache_clear()
    monkeypatch.setattr("lensflow.flows.shard.embed_catalog_task", lambda *a, **k: pytest.fail("embedded in-process"))
    out = retrain(params=tiny_params())
    assert out["outcome"] == "promoted" and out["index"]["rows"] == len(tiny_catalog)
    champ = resolve_champion(get_settings())
    rows = lancedb.connect(champ.index["uri"]).open_table(champ.index["table"]).to_pandas()
    assert rows["product_id"].tolist() == tiny_catalog["product_id"].tolist()
    expected = embed_catalog(load_encoder(model_dir(champ.source)), tiny_catalog, project.data_path, progress=False)
    np.testing.assert_allclose(np.stack(rows["vector"].to_numpy()), expected, rtol=0, atol=1e-5)
