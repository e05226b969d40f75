"""The champion watcher behind hot swap: it swaps only to a verified pair, and keeps serving otherwise."""

import lancedb
import pytest

from lensflow.flows.retrain import RetrainParams, retrain
from lensflow.serving.watcher import ChampionWatcher
from lensflow.tasks.promote import GateConfig

pytestmark = pytest.mark.flow


def test_watcher_refuses_a_tampered_new_champion_and_keeps_the_old(project, tiny_catalog, prefect_harness):
    base = dict(
        preset="tiny",
        epochs=2,
        batch_size=8,
        progress=False,
        approval="auto-approve",
        gate=GateConfig(floors={}, tolerance=1.0),
    )
    w = ChampionWatcher(project, poll_s=60)
    assert w.check() is False and w.live is None and "no 'champion'" in w.error  # nothing to serve yet
    retrain(params=RetrainParams(**base))
    assert w.check() is True and w.live.version == 1 and w.error is None
    assert w.check() is False and w.swaps == 0  # unchanged: no reload
    retrain(params=RetrainParams(**base, seed=1))
    lancedb.connect(project.lancedb_path).open_table("lensflow-encoder-v2").delete("product_id = 'p0001'")
    assert w.check() is False and w.live.version == 1  # v2's index was tampered with
    assert "refusing to serve lensflow-encoder v2" in w.error and "rows" in w.error
