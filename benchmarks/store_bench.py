"""State-store overhead: warm ``plan()`` + ``observe()`` on a 2K-token request, per store.

Run ``python benchmarks/store_bench.py [--calls N] [--rounds N] [--baseline PATH] [--json PATH]``.

The request is the one ``claude-relay bench`` uses for its overhead rows: a ~2K-token system
prompt and a short question, on the default model. Each measured call is a *new*
``ClaudeRequest`` built from the same strings (as a chat model builds one per call), planned,
and observed with the usage the emulator would report (the system prefix read from the cache
after the first call). Stores measured:

* ``MemoryStore``;
* ``DiskStore`` in a temporary directory (the kind ``cache="auto"`` uses by default), wrapped
  in ``ResilientStore`` as the planner does;
* ``count``: how many store operations one plan and one observe make (a counting wrapper).

``--baseline PATH`` also measures the stores of another ``store.py`` (e.g. the last commit's:
``git show HEAD:langchain_claude_relay/store.py > /tmp/store_base.py``), loaded under a private
name, in rounds alternating with the current ones so that a busy machine hits both alike.

Printed: median and p90 microseconds of ``plan``, ``observe`` and both, per store (the round
with the best median is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import random
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from langchain_claude_relay.bench.runner import ENCODING
from langchain_claude_relay.bench.workloads import prose
from langchain_claude_relay.models import DEFAULT_MODEL
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.request import Block, ClaudeRequest, Message
from langchain_claude_relay.store import DiskStore, MemoryStore, StateStore
from langchain_claude_relay.usage import NormalizedUsage

_QUESTION = "Which section covers refunds, and what does it require?"


def _system_text() -> str:
    rng = random.Random("overhead")
    return "You are a support assistant for this handbook.\n\n" + prose(rng, 2000)


def _request(system: str) -> ClaudeRequest:
    return ClaudeRequest(
        DEFAULT_MODEL,
        (),
        (Block("text", {"text": system}),),
        (Message("user", (Block("text", {"text": _QUESTION}),)),),
    )


class _Counting:
    """A store wrapper counting operations by name."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def get(self, key: str) -> Any:
        self.calls["get"] += 1
        return self.inner.get(key)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        self.calls["set"] += 1
        self.inner.set(key, value, expire=expire)

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key)

    def incr(self, key: str, delta: float = 1.0) -> float:
        self.calls["incr"] += 1
        return self.inner.incr(key, delta)

    def transact(self) -> contextlib.AbstractContextManager[None]:
        self.calls["transact"] += 1
        return self.inner.transact()

    def close(self) -> None:
        self.inner.close()


def _usage(plan: Any, first: bool) -> NormalizedUsage:
    """What the emulator reports: the system prefix written on the first call, read after."""
    total = plan.total_estimated_tokens
    cached = plan.breakpoints[0].estimated_prefix_tokens if plan.breakpoints else 0
    cached = min(cached, total)
    if first:
        return NormalizedUsage(total - cached, 0, cached, 0, 64)
    return NormalizedUsage(total - cached, cached, 0, 0, 64)


def _measure(store: StateStore, calls: int, warmup: int = 20) -> dict[str, float]:
    system = _system_text()
    planner = CachePlanner(store=store, encoding=ENCODING)
    plan_us: list[float] = []
    observe_us: list[float] = []
    for i in range(warmup + calls):
        request = _request(system)
        start = time.perf_counter()
        plan = planner.plan(request)
        middle = time.perf_counter()
        planner.observe(plan, _usage(plan, first=i == 0))
        end = time.perf_counter()
        if i >= warmup:
            plan_us.append((middle - start) * 1e6)
            observe_us.append((end - middle) * 1e6)
    planner.close()
    both = [p + o for p, o in zip(plan_us, observe_us, strict=True)]

    def p90(xs: list[float]) -> float:
        return statistics.quantiles(xs, n=10)[-1]

    return {
        "plan_median_us": round(statistics.median(plan_us), 1),
        "observe_median_us": round(statistics.median(observe_us), 1),
        "both_median_us": round(statistics.median(both), 1),
        "both_p90_us": round(p90(both), 1),
        "both_mean_us": round(statistics.fmean(both), 1),
    }


def _load_baseline(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("_baseline_store", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path} as a module"
        raise SystemExit(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _stores(baseline: str | None) -> Iterator[dict[str, Callable[[], StateStore]]]:
    with tempfile.TemporaryDirectory(prefix="claude-relay-store-bench-") as directory:
        counter = iter(range(1_000_000))
        stores: dict[str, Callable[[], StateStore]] = {
            "MemoryStore": MemoryStore,
            "DiskStore": lambda: DiskStore(f"{directory}/state{next(counter)}"),
        }
        if baseline:
            base = _load_baseline(baseline)
            stores["baseline MemoryStore"] = base.MemoryStore
            stores["baseline DiskStore"] = lambda: base.DiskStore(
                f"{directory}/state{next(counter)}"
            )
        yield stores


def _operation_counts() -> dict[str, int]:
    system = _system_text()
    counting = _Counting(MemoryStore())
    planner = CachePlanner(store=counting, encoding=ENCODING)
    planner.observe(planner.plan(_request(system)), NormalizedUsage(2000, 0, 0, 0, 64))
    counting.calls.clear()
    plan = planner.plan(_request(system))
    planned = sum(counting.calls.values())
    planner.observe(plan, _usage(plan, first=False))
    out = {f"{name}_per_call": n for name, n in sorted(counting.calls.items())}
    out["ops_in_plan"] = planned
    out["ops_in_observe"] = sum(counting.calls.values()) - planned
    return out


def main() -> None:
    """Run the benchmark and print (optionally save) the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="measured calls per store")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (best median is kept)")
    parser.add_argument("--baseline", metavar="PATH", help="another store.py to compare with")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args()
    rows: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows["operations"] = _operation_counts()
        with _stores(args.baseline) as stores:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
            for _ in range(args.rounds):  # rounds alternate between the stores
                for name, make in stores.items():
                    runs[name].append(_measure(make(), args.calls))
            for name, measured in runs.items():
                rows[name] = min(measured, key=lambda r: r["both_median_us"])
    print(json.dumps(rows, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
