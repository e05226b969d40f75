"""Micro-batching: concurrent calls are answered by one batched call, each with its own answer; errors reach every
caller of the failed batch and nobody else; a lone caller runs at once."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lensflow.serving.batching import Batcher


class Gate:
    """fn for a Batcher: doubles each item, records each batch, and holds the first batch until released."""

    def __init__(self, fail_on=None):
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items):
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [2 * i for i in items]


def queued(b: Batcher, n: int) -> None:
    """Wait until n calls are waiting behind the running batch."""
    for _ in range(1000):
        with b._lock:
            if len(b._queue) >= n:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{n} calls never queued")


def test_lone_call_runs_at_once_as_a_batch_of_one():
    calls = []
    b = Batcher(lambda items: calls.append(list(items)) or [i + 1 for i in items])
    assert [b(1), b(2)] == [2, 3]
    assert calls == [[1], [2]]
    assert (b.batches, b.items) == (2, 2)


def test_calls_arriving_during_a_batch_run_as_the_next_batch_each_with_its_own_answer():
    gate = Gate()
    b = Batcher(gate, max_batch=4)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(b, 0)
        assert gate.started.wait(10)
        rest = [pool.submit(b, i) for i in range(1, 8)]
        queued(b, 7)
        gate.release.set()
        assert first.result(10) == 0
        assert [f.result(10) for f in rest] == [2 * i for i in range(1, 8)]
    assert gate.batches == [[0], [1, 2, 3, 4], [5, 6, 7]]  # arrival order, at most max_batch each
    assert (b.batches, b.items) == (3, 8)
    assert not b._busy and not b._queue


def test_an_error_reaches_every_caller_of_its_batch_only_and_the_batcher_goes_on():
    gate = Gate(fail_on=3)
    b = Batcher(gate, max_batch=2)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(b, 0)
        assert gate.started.wait(10)
        rest = {i: pool.submit(b, i) for i in (1, 2, 3, 4)}
        queued(b, 4)
        gate.release.set()
        assert first.result(10) == 0
        assert rest[1].result(10) == 2 and rest[2].result(10) == 4  # batch [1, 2]
        for i in (3, 4):  # batch [3, 4] failed: both callers hear why
            with pytest.raises(ValueError, match="bad item 3"):
                rest[i].result(10)
    assert b(5) == 10


def test_a_wrong_number_of_answers_is_an_error_not_a_misattributed_answer():
    b = Batcher(lambda items: [0])
    assert b(1) == 0
    with ThreadPoolExecutor(4) as pool:  # some calls may batch together: each must fail or get its own answer
        results = [pool.submit(b, i) for i in range(20)]
        for f in results:
            try:
                assert f.result(10) == 0
            except RuntimeError as exc:
                assert "answers for" in str(exc)
    with pytest.raises(ValueError):
        Batcher(lambda items: items, max_batch=0)


def test_many_threads_hammering_get_their_own_answers():
    b = Batcher(lambda items: [np.sqrt(i) for i in items], max_batch=8)
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(b, range(2000)))
    assert got == [np.sqrt(i) for i in range(2000)]
    assert b.items == 2000 and b.batches <= 2000
