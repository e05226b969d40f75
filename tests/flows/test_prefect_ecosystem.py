"""Prefect used fully, against a real (test harness) server: the global writer slot serialises writers across
processes, long stages report progress artifacts, and run logs at INFO reach the API."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.flow


def test_writer_slot_waits_for_another_holder_then_times_out_clearly(prefect_harness):
    """A writer waits while another holds the slot and goes in when it is released; one that waits too long
    fails naming the limit. (A limit of its own: a timed-out acquisition may hold a slot until its lease
    expires, which must not slow the other tests' writers.)"""
    from prefect import get_client
    from prefect.concurrency.sync import concurrency

    from lensflow.tasks.writer_slot import NAME, ensure_limit, writer_slot

    name = f"{NAME}-test"
    ensure_limit(name)
    with get_client(sync_client=True) as c:
        assert c.read_global_concurrency_limit_by_name(name).limit == 1
    said: list[str] = []

    def other_writer(held: threading.Event, release: threading.Event):  # another machine's run holds the slot
        with concurrency(name, occupy=1, strict=True):
            held.set()
            release.wait(60)

    # 1. released while we wait: we go in as soon as the holder is done
    held, release = threading.Event(), threading.Event()
    t = threading.Thread(target=other_writer, args=(held, release))
    t.start()
    assert held.wait(30)
    threading.Timer(1.5, release.set).start()
    t0 = time.monotonic()
    with writer_slot("reindex", 60, said.append, name=name) as slot:
        waited = time.monotonic() - t0
        assert slot is True
        t.join(10)
        assert not t.is_alive()
    assert waited >= 1.0, waited
    assert any("reindex: holds the global writer slot" in s for s in said)
    assert any("reindex: releases" in s for s in said)
    # 2. never released in time: a clear TimeoutError, and the body never ran
    held, release = threading.Event(), threading.Event()
    t = threading.Thread(target=other_writer, args=(held, release))
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(TimeoutError, match=f"global writer slot '{name}' stayed taken for 2 s"):
            with writer_slot("retrain", 2, said.append, name=name):
                pytest.fail("entered while another writer held the slot")
    finally:
        release.set()
        t.join(10)


def test_writer_slot_is_a_no_op_in_the_embedded_mode():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lensflow.tasks.writer_slot import writer_slot

    with temporary_settings({PREFECT_API_URL: None}), writer_slot("retrain", 1, print) as slot:
        assert slot is False


def test_long_stages_report_progress_artifacts(prefect_harness):
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from lensflow.tasks.helpers import progress

    progress.EVERY_S = 0.0  # every update reaches the API in this test

    @flow(name="progress-demo")
    def demo() -> str:
        from prefect.runtime import flow_run

        with progress.progress_bar(total=40, desc="encode images", disable=True) as bar:
            for _ in range(4):
                bar.update(10)
        for _ in progress.progress_bar(range(5), desc="check images", disable=True):
            pass
        stage = progress.StageProgress("fine-tune (heads)", 3)
        for epoch in range(3):
            stage.update(epoch + 1, force=True, note="epochs")
        return flow_run.id

    try:
        run_id = demo()
    finally:
        progress.EVERY_S = 3.0
    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    by_key = {a.key: a for a in arts}
    assert {"progress-demo-encode-images", "progress-demo-check-images", "progress-demo-fine-tune-heads"} <= set(by_key)
    assert all(a.type == "progress" and float(a.data) == 100.0 for a in by_key.values()), [
        (a.key, a.data) for a in arts
    ]
    assert "3 of 3" in by_key["progress-demo-fine-tune-heads"].description


def test_outside_a_run_the_bar_is_plain_tqdm():
    from lensflow.tasks.helpers.progress import StageProgress, progress_bar

    assert StageProgress("x", 10).id is None
    assert sum(1 for _ in progress_bar(range(7), desc="x", disable=True)) == 7
