"""Micro-batching for the request threads: concurrent calls answered by one batched call.

Under load, many request threads each encode one query and scan the same vectors. On a few cores one forward of
8 queries costs little more than one, and one matrix product of 8 queries reads the vectors once instead of 8
times (BENCHMARKS.md, "Search service"). `Batcher(fn)` turns `fn(list) -> list` into a per-item call that
batches whatever is waiting: the first caller runs a batch; callers arriving meanwhile queue; when a batch ends,
the oldest waiting caller runs the next one with everything queued by then. Nobody waits for a timer, so one
client alone sees no added latency, and no thread is owned (nothing to start or stop with a hot swap)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Call:
    __slots__ = ("item", "done", "lead", "value", "error")

    def __init__(self, item):
        self.item = item
        self.done = threading.Event()
        self.lead = False  # woken to run the next batch rather than with a result
        self.value = None
        self.error: BaseException | None = None


class Batcher(Generic[T, R]):
    """`batcher(item)` returns `fn([..., item, ...])`'s answer for `item`, batched with the concurrent calls
    (at most `max_batch` per batch, in arrival order). An exception from `fn` is raised in every call of
    that batch."""

    def __init__(self, fn: Callable[[list[T]], list[R]], max_batch: int = 32):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn, self.max_batch = fn, max_batch
        self._lock = threading.Lock()
        self._queue: list[_Call] = []
        self._busy = False  # a batch is running; when False the queue is empty
        self.batches = 0  # batches run and items answered (for tests and benchmarks)
        self.items = 0

    def __call__(self, item: T) -> R:
        call = _Call(item)
        with self._lock:
            self._queue.append(call)
            lead, self._busy = not self._busy, True
        if not lead:
            call.done.wait()
        if call.lead or lead:  # first in the queue: run the batch that starts with this call
            self._run_batch()
        if call.error is not None:
            raise call.error
        return call.value

    def _run_batch(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            values = self.fn([c.item for c in batch])
            if len(values) != len(batch):
                raise RuntimeError(f"batched call returned {len(values)} answers for {len(batch)} items")
            for c, v in zip(batch, values):
                c.value = v
        except BaseException as exc:  # every caller of this batch sees why
            for c in batch:
                c.error = exc
        finally:
            with self._lock:
                self.batches += 1
                self.items += len(batch)
                if self._queue:  # hand the next batch to the oldest waiting caller
                    nxt = self._queue[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._busy = False
            for c in batch:
                c.lead = False
                c.done.set()
