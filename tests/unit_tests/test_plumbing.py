"""The plumbing written once: the write-behind worker and warn-once."""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import pytest

from langchain_claude_relay._plumbing import WriteBehind, forget_warnings, warn_once


class Owner:
    """A queue of numbers and a worker that sends batches to ``sent``."""

    def __init__(self, **options: Any) -> None:
        self.lock = threading.Lock()
        self.queue: list[int] = []
        self.sent: list[list[int]] = []
        self.fail = False
        self.worker = WriteBehind("test-writer", take=self.take, send=self.send, **options)

    def put(self, *items: int) -> None:
        with self.lock:
            self.queue.extend(items)
        self.worker.queued(len(items))

    def take(self) -> list[int]:
        with self.lock:
            batch, self.queue = self.queue, []
            return batch

    def send(self, batch: list[int]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.sent.append(batch)


def flat(owner: Owner) -> list[int]:
    return [item for batch in owner.sent for item in batch]


def test_everything_queued_is_sent_once_in_order() -> None:
    owner = Owner(linger=0.01)
    for i in range(200):
        owner.put(i)
    assert owner.worker.flush(timeout=10)
    assert flat(owner) == list(range(200))
    assert owner.worker.pending == 0


def test_lingering_batches_writes_made_close_together() -> None:
    owner = Owner(linger=0.2)
    owner.put(1)
    owner.put(2)
    owner.put(3)
    assert owner.worker.flush(timeout=10)
    assert owner.sent == [[1, 2, 3]]


def test_flush_sends_in_the_calling_thread_when_no_thread_runs() -> None:
    owner = Owner(linger=60.0)  # the thread would wait a minute
    owner.put(7)
    started = time.monotonic()
    assert owner.worker.flush(timeout=10)
    assert owner.sent == [[7]]
    assert time.monotonic() - started < 5  # flush stops the lingering


def test_stop_leaves_what_is_queued_for_flush() -> None:
    owner = Owner(linger=60.0)
    owner.put(1)
    assert owner.worker.stop(timeout=5)
    assert owner.sent == []
    assert owner.worker.flush(timeout=5)
    assert owner.sent == [[1]]


def test_a_failing_send_is_raised_by_flush_and_counted_as_done() -> None:
    owner = Owner(linger=60.0)
    owner.fail = True
    owner.put(1)
    with pytest.raises(OSError, match="disk full"):
        owner.worker.flush(timeout=5)
    assert owner.worker.pending == 0  # never retried forever: the owner keeps what it must


def test_an_idle_worker_thread_ends_and_restarts_on_the_next_write() -> None:
    owner = Owner(idle_exit=0.05)
    owner.put(1)
    assert owner.worker.flush(timeout=5)
    deadline = time.monotonic() + 5
    while owner.worker._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert owner.worker._thread is None
    owner.put(2)
    assert owner.worker.flush(timeout=5)
    assert flat(owner) == [1, 2]


def test_a_retry_interval_sends_an_empty_batch_while_idle() -> None:
    calls: list[list[int]] = []
    ready = threading.Event()

    def send(batch: list[int]) -> None:
        calls.append(batch)
        if len(calls) >= 2:
            ready.set()

    worker = WriteBehind("retry", take=list, send=send, retry_interval=lambda: 0.02)
    worker.queued(0)  # start the thread
    assert ready.wait(5)
    assert calls[:2] == [[], []]
    worker.stop(timeout=5)


def test_warn_once_warns_at_the_callers_line_then_logs() -> None:
    forget_warnings(lambda key: key == ("plumbing-test",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)  # another test's socket, collected now
        assert warn_once(("plumbing-test",), "first", UserWarning) is True
        assert warn_once(("plumbing-test",), "first", UserWarning) is False
    assert [str(w.message) for w in caught] == ["first"]
    assert caught[0].filename == __file__
