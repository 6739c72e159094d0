"""``RedisLedger`` against a real redis-server: exact totals across processes, replay, bounds."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from fleet_workers import entry_for, ledger_worker, open_pool_ledger, record_in_pool, sums

from langchain_claude_relay.errors import RedisStateWarning
from langchain_claude_relay.ledger import Ledger, LedgerEntry, summarize
from langchain_claude_relay.ledger.redis import RedisLedger, ledger_from_env

SPAWN = multiprocessing.get_context("spawn")


def test_is_a_ledger_and_keeps_entries_in_order(redis_server: Any, namespace: str) -> None:
    ledger = RedisLedger(redis_server.url, namespace=namespace)
    assert isinstance(ledger, Ledger)
    rng = random.Random(3)
    entries = [entry_for(0, i, rng) for i in range(50)]
    for entry in entries:
        ledger.record(entry)
    assert ledger.entries() == entries
    assert ledger.entries(since=40.0) == entries[40:]
    assert ledger.summary() == summarize(entries)
    totals = ledger.totals()
    expected = sums(entries)
    assert {k: totals[k] for k in expected} == expected
    assert totals["cost_usd"] == pytest.approx(sum(e.cost_usd or 0.0 for e in entries))
    with pytest.raises(TypeError):
        ledger.record({"call_id": "x"})  # type: ignore[arg-type]


def test_keys_are_namespaced_bounded_and_expiring(redis_server: Any, namespace: str) -> None:
    ledger = RedisLedger(redis_server.url, namespace=namespace, max_entries=100, background=False)
    rng = random.Random(4)
    entries = [entry_for(1, i, rng) for i in range(600)]
    for entry in entries:
        ledger.record(entry)
    client = ledger.client
    keys = [k.decode() for k in client.keys(f"claude-relay:{{{namespace}:ledger}}*")]
    assert keys
    assert all(client.pttl(k) > 0 for k in keys)
    assert 100 <= client.xlen(f"claude-relay:{{{namespace}:ledger}}:entries") < 600
    assert ledger.entries() == entries[-100:]  # the newest max_entries
    assert ledger.totals()["calls"] == 600  # totals cover what was trimmed
    ledger.clear()
    assert ledger.entries() == []
    assert ledger.totals()["calls"] == 0


def test_four_processes_totals_are_exact(redis_server: Any, namespace: str, tmp_path: Path):
    n = 400
    outs = [tmp_path / f"w{i}.json" for i in range(4)]
    ready, go = SPAWN.Semaphore(0), SPAWN.Event()
    procs = [
        SPAWN.Process(
            target=ledger_worker,
            args=(redis_server.url, namespace, i, n, ready, go, str(out)),
        )
        for i, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert ready.acquire(timeout=60)
    go.set()  # all four record at the same time
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    expected: dict[str, int] = {}
    for out in outs:
        for key, value in json.loads(out.read_text()).items():
            expected[key] = expected.get(key, 0) + value
    ledger = RedisLedger(redis_server.url, namespace=namespace)
    totals = ledger.totals()
    assert {k: totals[k] for k in expected} == expected
    entries = ledger.entries()
    assert len(entries) == 4 * n == len({e.call_id for e in entries})
    assert sums(entries) == expected
    for worker in range(4):  # each worker's entries in the order it recorded them
        own = [e.timestamp for e in entries if e.call_id.startswith(f"w{worker}-")]
        assert own == sorted(own)


def test_entries_recorded_while_redis_is_down_are_replayed_once(own_redis: Any) -> None:
    ledger = RedisLedger(own_redis.url, namespace="replay", retry_after=0.1)
    rng = random.Random(5)
    entries = [entry_for(2, i, rng) for i in range(90)]
    for entry in entries[:30]:
        ledger.record(entry)
    ledger.flush()
    own_redis.kill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for entry in entries[30:60]:
            ledger.record(entry)
        ledger.flush()
        assert ledger.degraded
        assert ledger.pending_local() == entries[30:60]
        assert ledger.entries() == entries[30:60]  # while down: the local ones
    assert [w.category for w in caught] == [RedisStateWarning]
    own_redis.start()
    for entry in entries[60:]:
        ledger.record(entry)
    deadline = time.monotonic() + 5
    while ledger.pending_local() and time.monotonic() < deadline:
        time.sleep(0.05)
        ledger.flush()
    assert not ledger.degraded
    assert ledger.entries() == entries  # in order, each once
    assert ledger.totals()["calls"] == 90


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_entries_of_a_terminated_pool_are_all_kept(
    redis_server: Any, namespace: str, method: str
) -> None:
    # ``with Pool()`` ends its workers with SIGTERM (no exit hook): a worker sends in record
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    context = multiprocessing.get_context(method)
    with context.Pool(2, initializer=open_pool_ledger, initargs=(redis_server.url, namespace)) as p:
        p.map(record_in_pool, range(8), chunksize=1)
    ledger = RedisLedger(redis_server.url, namespace=namespace)
    assert sorted(e.call_id for e in ledger.entries()) == [f"w0-{i}" for i in range(8)]


def test_a_batch_sent_twice_counts_once(redis_server: Any, namespace: str) -> None:
    ledger = RedisLedger(redis_server.url, namespace=namespace, background=False)
    rng = random.Random(6)
    batch = [("a" * 32, int(time.time() // 60), entry_for(3, i, rng)) for i in range(5)]
    ledger._send_chunk(batch)
    ledger._send_chunk(batch)  # what a replay after a cut-off pipeline does
    assert ledger.totals()["calls"] == 1  # one token: one entry
    batch = [(f"{i:032x}", m, e) for i, (_t, m, e) in enumerate(batch)]
    ledger._send_chunk(batch)
    ledger._send_chunk(batch)
    assert ledger.totals()["calls"] == 6


def test_ledger_from_env(monkeypatch: pytest.MonkeyPatch, redis_server: Any) -> None:
    monkeypatch.delenv("CLAUDE_RELAY_STATE", raising=False)
    assert ledger_from_env() is None
    monkeypatch.setenv("CLAUDE_RELAY_STATE", redis_server.url)
    assert isinstance(ledger_from_env(), RedisLedger)


def test_entries_hold_no_prompt_text(redis_server: Any, namespace: str) -> None:
    ledger = RedisLedger(redis_server.url, namespace=namespace, background=False)
    entry = LedgerEntry.from_usage(
        _usage(),
        model="claude-sonnet-4-6",
        timestamp=1.0,
        written_prefixes=["Please summarize this secret document"],
        base_url="https://user:sk-secret@relay.example/v1",
    )
    ledger.record(entry)
    raw = b"".join(
        v
        for _id, fields in ledger.client.xrange(f"claude-relay:{{{namespace}:ledger}}:entries")
        for v in fields.values()
    )
    assert b"secret" not in raw
    assert b"summarize" not in raw
    assert b"relay.example" not in raw


def _usage() -> Any:
    from langchain_claude_relay.usage import NormalizedUsage

    return NormalizedUsage(
        input_tokens=10,
        cache_read_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
        output_tokens=5,
    )
