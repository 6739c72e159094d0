"""Overhead: what ``ChatClaudeRelay`` costs in wall time over ``ChatOpenAI`` and the raw client.

All clients talk to the same emulator, started in a separate process (``serve`` on a free
loopback port) so that its work does not compete with the client for the interpreter lock; each
sends the same request (a ~2K-token system prompt and a question, 64 output tokens). Runs are
paired: every iteration calls each client once, in an order that rotates from one iteration to
the next, and the ratio is the median over iterations of (ours / theirs), so slow moments of the
machine hit both sides of a pair.

* ``invoke``: the full ``invoke`` call.
* ``stream_first_chunk``: from calling ``stream`` to the first chunk (the rest is drained).
* ``async``: requests per second at concurrency 64 with ``ainvoke`` (median of rounds).
* ``planning``: cold and warm ``CachePlanner.plan`` at 2K, 20K and 200K tokens, from
  ``benchmarks/planner_bench.py`` when the source tree is present, else a smaller in-module
  measurement.

Our variants: the planner on a ``MemoryStore`` with a ``MemoryLedger``; the planner on a
``DiskStore`` with a ``DiskLedger``, both in a temporary directory (the kinds ``cache="auto"``
uses by default); and ``cache="off"`` with a ``MemoryLedger``. The user's own state and ledger
are never touched.

Every client gets its own HTTP client, built as the ``openai`` SDK builds its default one
(``openai.DefaultHttpxClient``), which the benchmark closes when it is done or fails, like the
stores, ledgers and the emulator process: a failed run leaves no socket open.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import openai
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import SecretStr

from langchain_claude_relay.bench.runner import ENCODING, MAX_TOKENS
from langchain_claude_relay.bench.workloads import prose
from langchain_claude_relay.chat_models import ChatClaudeRelay
from langchain_claude_relay.ledger import DiskLedger, MemoryLedger
from langchain_claude_relay.models import DEFAULT_MODEL
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.request import Block, ClaudeRequest, Message
from langchain_claude_relay.store import MemoryStore, default_store
from langchain_claude_relay.usage import NormalizedUsage

__all__ = [
    "PairedResult",
    "ThroughputResult",
    "OverheadReport",
    "OverheadSettings",
    "bench_request",
    "emulator_process",
    "measure_overhead",
    "planning_rows",
]

_API_KEY = "bench-not-a-secret"
PLANNER_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "planner_bench.py"
"""The planner benchmark script of the source tree (absent from an installed wheel)."""


@dataclass(frozen=True)
class OverheadSettings:
    """How much to measure.

    Attributes:
        iterations: paired ``invoke`` iterations.
        stream_iterations: paired streaming iterations.
        warmup: untimed calls per client first.
        async_requests: requests per throughput round.
        async_rounds: throughput rounds (interleaved across clients).
        concurrency: requests in flight in the throughput test.
        planning_sizes: prompt sizes (tokens) for the planning benchmark.
    """

    iterations: int = 300
    stream_iterations: int = 150
    warmup: int = 20
    async_requests: int = 384
    async_rounds: int = 3
    concurrency: int = 64
    planning_sizes: tuple[int, ...] = (2_000, 20_000, 200_000)

    @classmethod
    def quick(cls) -> OverheadSettings:
        """A few iterations, for the smoke test."""
        return cls(20, 10, 3, 128, 1, 64, (2_000,))


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison.

    Attributes:
        metric: ``invoke`` or ``stream_first_chunk``.
        variant: our client.
        baseline: the client compared against.
        iterations: pairs measured.
        variant_median_ms: median time of ours.
        baseline_median_ms: median time of theirs.
        median_ratio: median over pairs of ours / theirs.
    """

    metric: str
    variant: str
    baseline: str
    iterations: int
    variant_median_ms: float
    baseline_median_ms: float
    median_ratio: float


@dataclass(frozen=True)
class ThroughputResult:
    """Async throughput of one client.

    Attributes:
        client: the client.
        concurrency: requests in flight.
        requests: requests per round.
        requests_per_second: median over rounds.
    """

    client: str
    concurrency: int
    requests: int
    requests_per_second: float


@dataclass(frozen=True)
class OverheadReport:
    """Everything ``measure_overhead`` found.

    Attributes:
        paired: the paired comparisons.
        throughput: async throughput per client.
        planning: planning-time rows (``tokens``, ``cold_ms``, ``warm_ms``, ...).
        planning_source: where the planning rows come from.
        notes: what could not be measured, and why.
    """

    paired: tuple[PairedResult, ...]
    throughput: tuple[ThroughputResult, ...]
    planning: tuple[dict[str, float], ...]
    planning_source: str
    notes: tuple[str, ...]


# ----------------------------------------------------------------------------- emulator


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def emulator_process(timeout: float = 30.0) -> Iterator[str]:
    """Serve the emulator from a child process; yields its ``base_url``.

    Args:
        timeout: seconds to wait for it to accept requests.

    Yields:
        ``http://127.0.0.1:PORT/v1``.

    Raises:
        RuntimeError: if it does not come up in time.
    """
    port = _free_port()
    code = (
        "from langchain_claude_relay.emulator import serve; "
        f"serve('127.0.0.1', {port}, access_log=False)"
    )
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no user input
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                msg = "the emulator process did not start (try `claude-relay emulator` by hand)"
                raise RuntimeError(msg)
            time.sleep(0.05)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------ clients


def bench_request() -> tuple[list[BaseMessage], list[dict[str, str]]]:
    """The request every client sends: a ~2K-token system prompt and a question.

    Returns:
        It as LangChain messages and as ``openai`` chat messages.
    """
    rng = random.Random("overhead")
    system = "You are a support assistant for this handbook.\n\n" + prose(rng, 2000)
    question = "Which section covers refunds, and what does it require?"
    messages: list[BaseMessage] = [SystemMessage(system), HumanMessage(question)]
    raw = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return messages, raw


def _relay(
    base_url: str, cache: Any, ledger: Any, *, http: Any = None, async_http: Any = None
) -> ChatClaudeRelay:
    settings: dict[str, Any] = {  # ``cache=`` is routed to the prompt-cache setting
        "model": DEFAULT_MODEL,
        "base_url": base_url,
        "api_key": SecretStr(_API_KEY),
        "cache": cache,
        "max_tokens": MAX_TOKENS,
        "max_retries": 0,
        "ledger": ledger,
        "http_client": http,
        "http_async_client": async_http,
    }
    return ChatClaudeRelay(**settings)


def _chat_openai(base_url: str, *, http: Any = None, async_http: Any = None) -> Any:
    """``ChatOpenAI`` on these HTTP clients (``None``: langchain-openai is not installed)."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        return None
    return ChatOpenAI(
        model=DEFAULT_MODEL,
        base_url=base_url,
        api_key=_API_KEY,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS,  # type: ignore[call-arg]
        max_retries=0,
        stream_usage=True,
        http_client=http,
        http_async_client=async_http,
    )


def _http(stack: ExitStack) -> Any:
    """A sync HTTP client like the SDK's default, closed with ``stack``."""
    return stack.enter_context(openai.DefaultHttpxClient())


def _clients(base_url: str, directory: str, stack: ExitStack) -> tuple[dict[str, Any], list[str]]:
    """Our variants and the baselines that can be built (LangChain chat models and ``openai``).

    Everything they open (HTTP clients, stores, ledgers) is closed with ``stack``.
    """
    memory_planner = CachePlanner(store=MemoryStore(), encoding=ENCODING)
    disk_store = default_store(f"{directory}/state")
    stack.callback(disk_store.close)
    disk_planner = CachePlanner(store=disk_store, encoding=ENCODING)
    disk_ledger = DiskLedger(f"{directory}/ledger")
    stack.callback(disk_ledger.close)
    clients: dict[str, Any] = {
        "relay[planner,memory]": _relay(
            base_url, memory_planner, MemoryLedger(), http=_http(stack)
        ),
        "relay[planner,disk]": _relay(base_url, disk_planner, disk_ledger, http=_http(stack)),
        "relay[off]": _relay(base_url, "off", MemoryLedger(), http=_http(stack)),
    }
    notes: list[str] = []
    chat_openai = _chat_openai(base_url, http=_http(stack))
    if chat_openai is None:
        notes.append("langchain-openai is not installed: no ChatOpenAI comparison")
    else:
        clients["ChatOpenAI"] = chat_openai
    clients["openai"] = openai.OpenAI(
        base_url=base_url, api_key=_API_KEY, max_retries=0, http_client=_http(stack)
    )
    return clients, notes


def _invoke_fn(
    client: Any, messages: list[BaseMessage], raw: list[dict[str, str]]
) -> Callable[[], Any]:
    if isinstance(client, openai.OpenAI):
        return lambda: client.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=raw,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
        )
    return lambda: client.invoke(messages)


def _stream_fn(
    client: Any, messages: list[BaseMessage], raw: list[dict[str, str]]
) -> Callable[[], float]:
    def first_chunk_seconds() -> float:
        start = time.perf_counter()
        if isinstance(client, openai.OpenAI):
            stream: Any = cast(Any, client).chat.completions.create(
                model=DEFAULT_MODEL,
                messages=raw,
                max_tokens=MAX_TOKENS,
                stream=True,
                stream_options={"include_usage": True},
            )
        else:
            stream = client.stream(messages)
        iterator = iter(stream)
        next(iterator)
        elapsed = time.perf_counter() - start
        for _ in iterator:
            pass
        return elapsed

    return first_chunk_seconds


def _paired(
    metric: str,
    timers: dict[str, Callable[[], float]],
    iterations: int,
    warmup: int,
) -> list[PairedResult]:
    names = list(timers)
    for name in names:
        for _ in range(warmup):
            timers[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iterations):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timers[name]())
    ours = [n for n in names if n.startswith("relay")]
    baselines = [n for n in names if not n.startswith("relay")]
    return [
        PairedResult(
            metric,
            variant,
            baseline,
            iterations,
            round(statistics.median(times[variant]) * 1e3, 4),
            round(statistics.median(times[baseline]) * 1e3, 4),
            round(
                statistics.median(
                    a / b for a, b in zip(times[variant], times[baseline], strict=True)
                ),
                4,
            ),
        )
        for baseline in baselines
        for variant in ours
    ]


def _timed(fn: Callable[[], Any]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


# ---------------------------------------------------------------------------- throughput


async def _all(calls: Iterable[Awaitable[Any]]) -> None:
    """Await every call, then raise the first failure: no request is left running."""
    for outcome in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


async def _throughput(
    base_url: str,
    settings: OverheadSettings,
    messages: list[BaseMessage],
    raw: list[dict[str, str]],
) -> tuple[list[ThroughputResult], list[str]]:
    async with AsyncExitStack() as stack:

        async def http() -> Any:
            return await stack.enter_async_context(openai.DefaultAsyncHttpxClient())

        calls: dict[str, Callable[[], Awaitable[Any]]] = {}
        planner = CachePlanner(store=MemoryStore(), encoding=ENCODING)
        relay = _relay(base_url, planner, MemoryLedger(), async_http=await http())
        calls["relay[planner,memory]"] = lambda: relay.ainvoke(messages)
        notes: list[str] = []
        chat_openai = _chat_openai(base_url, async_http=await http())
        if chat_openai is None:
            notes.append("langchain-openai is not installed: no ChatOpenAI throughput")
        else:
            calls["ChatOpenAI"] = lambda: chat_openai.ainvoke(messages)
        client = openai.AsyncOpenAI(
            base_url=base_url, api_key=_API_KEY, max_retries=0, http_client=await http()
        )
        calls["openai"] = lambda: client.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=raw,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
        )
        limit = asyncio.Semaphore(settings.concurrency)

        async def one(call: Callable[[], Awaitable[Any]]) -> None:
            async with limit:
                await call()

        rates: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():  # warm connections and memo
            await _all(one(call) for _ in range(settings.concurrency))
        for _ in range(settings.async_rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                await _all(one(call) for _ in range(settings.async_requests))
                rates[name].append(settings.async_requests / (time.perf_counter() - start))
    return [
        ThroughputResult(
            name, settings.concurrency, settings.async_requests, round(statistics.median(r), 1)
        )
        for name, r in rates.items()
    ], notes


# ------------------------------------------------------------------------------ planning


def planning_rows(sizes: Sequence[int]) -> tuple[list[dict[str, float]], str]:
    """Planning time per size: from ``benchmarks/planner_bench.py`` if present, else in-module.

    Args:
        sizes: prompt sizes in tokens.

    Returns:
        The rows (each with ``tokens``, ``cold_ms``, ``warm_ms``) and their source.
    """
    with warnings.catch_warnings():  # stability warnings about the sample text are noise here
        warnings.simplefilter("ignore")
        if PLANNER_BENCH.is_file():
            spec = importlib.util.spec_from_file_location("_planner_bench", PLANNER_BENCH)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                rows: list[dict[str, float]] = module.run_benchmark(tuple(sizes))
                return rows, "benchmarks/planner_bench.py"
        return [_planning_fallback(s) for s in sizes], "langchain_claude_relay.bench.overhead"


def _planning_fallback(tokens: int, runs: int = 5, warm_runs: int = 30) -> dict[str, float]:
    rng = random.Random(f"planning:{tokens}")
    system = (Block("text", {"text": prose(rng, tokens // 2)}),)
    turns = tuple(
        Message(
            "user" if i % 2 == 0 else "assistant",
            (Block("text", {"text": prose(rng, tokens // 40)}),),
        )
        for i in range(21)
    )
    request = ClaudeRequest(DEFAULT_MODEL, (), system, turns)

    def cold() -> float:
        planner = CachePlanner(store=MemoryStore(), encoding=ENCODING)
        start = time.perf_counter()
        planner.plan(request)
        return time.perf_counter() - start

    cold_ms = statistics.median(cold() for _ in range(runs)) * 1e3
    planner = CachePlanner(store=MemoryStore(), encoding=ENCODING)
    plan = planner.plan(request)
    planner.observe(plan, NormalizedUsage(plan.total_estimated_tokens, 0, 0, 0, 10))
    warm: list[float] = []
    for _ in range(warm_runs):
        start = time.perf_counter()
        planner.plan(request)
        warm.append(time.perf_counter() - start)
    return {
        "tokens": plan.total_estimated_tokens,
        "blocks": len(request.flat_blocks()),
        "cold_ms": round(cold_ms, 3),
        "warm_ms": round(statistics.median(warm) * 1e3, 3),
    }


# ---------------------------------------------------------------------------------- all


def measure_overhead(settings: OverheadSettings | None = None) -> OverheadReport:
    """Run every overhead measurement (see the module docstring).

    Args:
        settings: how much to measure (default: the full run).

    Returns:
        The report.
    """
    settings = settings or OverheadSettings()
    messages, raw = bench_request()
    paired: list[PairedResult] = []
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="claude-relay-bench-"))
        base_url = stack.enter_context(emulator_process())
        clients, notes = _clients(base_url, directory, stack)
        invoke = {name: _timed(_invoke_fn(c, messages, raw)) for name, c in clients.items()}
        paired += _paired("invoke", invoke, settings.iterations, settings.warmup)
        stream = {name: _stream_fn(c, messages, raw) for name, c in clients.items()}
        paired += _paired("stream_first_chunk", stream, settings.stream_iterations, settings.warmup)
        throughput, more = asyncio.run(_throughput(base_url, settings, messages, raw))
        notes += more
    planning, source = planning_rows(settings.planning_sizes)
    return OverheadReport(tuple(paired), tuple(throughput), tuple(planning), source, tuple(notes))
