from lensflow.core.registry import CHAMPION, client, get_alias, register_version, set_tags, start_run, version_tags
from lensflow.tasks.promote import GateConfig, champion_metrics, gate, promote


def test_gate_floors_and_regressions():
    cfg = GateConfig(metrics=["p"], tolerance=0.01, floors={"p": 0.5})
    assert gate({"p": 0.6}, None, cfg).passed
    assert "below the floor" in gate({"p": 0.4}, None, cfg).reasons[0]
    assert gate({"p": 0.795}, {"p": 0.80}, cfg).passed  # within tolerance
    d = gate({"p": 0.70}, {"p": 0.80}, cfg, champion_version=3)
    assert not d.passed and "regresses from the champion's 0.8000" in d.reasons[0] and d.champion_version == 3
    assert "missing" in gate({}, None, cfg).reasons[0]
    # per-metric tolerances override the default one
    per = GateConfig(metrics=["p", "q"], tolerance=0.01, tolerances={"q": 0.1}, floors={})
    assert gate({"p": 0.8, "q": 0.71}, {"p": 0.8, "q": 0.8}, per).passed
    d = gate({"p": 0.78, "q": 0.69}, {"p": 0.8, "q": 0.8}, per)
    assert [r.split()[0] for r in d.reasons] == ["p", "q"] and "(tolerance 0.1)" in d.reasons[1]


def _version(c, metrics):
    run = start_run(c, "exp", "file:///tmp/unused-artifacts", "r", {})
    v = register_version(c, "m", run, "file:///tmp/model", {"status": "ready"})
    set_tags(c, "m", v, {"metrics": metrics})
    return v


def test_promotion_moves_champion_only_on_pass_and_approval(project):
    c = client(project.tracking_uri)
    v1 = _version(c, {"p": 0.8})
    cfg = GateConfig(metrics=["p"], floors={})
    assert promote(c, "m", v1, gate({"p": 0.8}, None, cfg), "later") == "awaiting-approval"
    assert get_alias(c, "m", CHAMPION) is None
    assert promote(c, "m", v1, gate({"p": 0.8}, None, cfg), "auto-approve") == "promoted"
    tags = version_tags(get_alias(c, "m", CHAMPION))
    assert tags["approval"] == "auto-approve" and tags["approved_by"] == "policy:auto-approve" and tags["approved_at"]
    v2 = _version(c, {"p": 0.5})
    champ_v, champ = champion_metrics(c, "m")
    decision = gate({"p": 0.5}, champ, cfg, champ_v)
    assert promote(c, "m", v2, decision, "auto-approve") == "rejected"
    assert int(get_alias(c, "m", CHAMPION).version) == v1
    rejected = version_tags(c.get_model_version("m", str(v2)))
    assert rejected["status"] == "rejected" and "regresses" in rejected["rejected_reason"]


def test_champion_index_reads_the_record_and_older_per_field_tags():
    from lensflow.core.champion import Champion

    legacy = Champion(
        "m",
        3,
        {
            "data_md5": "d.dir",
            "index.uri": "/x",
            "index.table": "m-v3",
            "index.version": "4",
            "index.rows": "70",
            "index.fingerprint": "f.dir",
            "index.ann": '{"type": "IVF_PQ"}',
        },
        "src",
    )
    assert legacy.index == {
        "uri": "/x",
        "table": "m-v3",
        "version": 4,
        "rows": 70,
        "fingerprint": "f.dir",
        "ann": {"type": "IVF_PQ"},
        "data_md5": "d.dir",
    }
    record = Champion(
        "m",
        3,
        {
            "data_md5": "d.dir",
            "index": '{"uri": "/x", "table": "m-v3-r1", "version": 2, "rows": 71, '
            '"fingerprint": "g.dir", "data_md5": "e.dir"}',
        },
        "src",
    )
    assert record.index["table"] == "m-v3-r1" and record.index["data_md5"] == "e.dir"


def test_a_refused_first_model_says_which_floor_what_the_catalog_allows_and_how_to_accept_it():
    from lensflow.tasks.promote import accept_hint

    cfg = GateConfig()  # the default floors
    d = gate({"image_precision_at_10": 0.4167, "text_precision_at_10": 0.62, "image_ndcg_at_10": 0.5}, None, cfg)
    assert not d.passed and d.floors_missed == {"image_precision_at_10": 0.4167}
    hint = accept_hint(1, d, {"image_precision_at_10": {"ceiling": 0.83, "chance": 0.11}})
    assert "With no champion yet" in hint and "image_precision_at_10 is 0.4167, below its floor" in hint
    assert "reach 0.83 with a perfect ranking; a random ranking scores 0.11" in hint
    assert hint.endswith("lensflow promote --version 1 --auto-approve --floor image_precision_at_10=0.41")
    # against a champion: the tolerance that would let the drop through
    d = gate(
        {"image_precision_at_10": 0.7, "text_precision_at_10": 0.9, "image_ndcg_at_10": 0.7},
        {"image_precision_at_10": 0.75, "text_precision_at_10": 0.9, "image_ndcg_at_10": 0.7},
        cfg,
        champion_version=2,
    )
    hint = accept_hint(3, d, {})
    assert "regresses from champion v2: image_precision_at_10 by 0.0500" in hint and hint.endswith("--tolerance 0.05")
    assert (
        "no champion" not in hint
        and accept_hint(3, gate({"image_precision_at_10": 0.9, "text_precision_at_10": 0.9}, None, cfg), {}) == ""
    )


def test_the_gate_refuses_a_challenger_whose_held_out_photos_got_worse():
    from lensflow.tasks.promote import GateConfig, gate

    base = {"image_precision_at_10": 0.9, "text_precision_at_10": 0.9, "image_ndcg_at_10": 0.9}
    champion = base | {"heldout_combined_recall_at_1": 0.60}
    assert gate(base | {"heldout_combined_recall_at_1": 0.58}, champion, GateConfig()).passed  # within 0.03
    worse = gate(base | {"heldout_combined_recall_at_1": 0.50}, champion, GateConfig())
    assert not worse.passed and "heldout_combined_recall_at_1" in worse.drops
    # a champion registered before the held-out evaluation has no such figure: nothing to compare with
    assert gate(base | {"heldout_combined_recall_at_1": 0.1}, base, GateConfig()).passed
