"""Emulator load: requests per second and errors at concurrency 1, 16, 64 and 256.

Each row sends ``requests`` chat completions (the overhead benchmark's request: a ~2K-token
system prompt and a question, 64 output tokens) with at most ``concurrency`` in flight, through
a fresh ``openai.AsyncOpenAI`` client with the SDK's default connection pool, plain or streamed
(``include_usage``, drained to the end). The emulator runs in a background thread
(``RelayEmulator``: client and server share the interpreter) and in a child process (``serve``,
as ``claude-relay emulator``). The ``reuse`` row sends a burst at concurrency 64, leaves its
connections idle for ``idle_gap`` seconds, just under the client's own keep-alive expiry (5 s
for httpx), then sends another burst on them: the case that used to drop connections, when the
server closed idle connections after the same 5 s (``server.KEEP_ALIVE_SECONDS``).

The invariant is zero errors: a connection error (reset, end of file, timeout) or any other
(an error status, a stream without its usage chunk); the ``reuse`` row counts the errors of its
first burst too. ``LoadReport.errors`` counts them; the bench fails, with exit status 1, when
there is any.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import openai

from langchain_claude_relay.bench.failures import describe_error
from langchain_claude_relay.bench.overhead import bench_request, emulator_process
from langchain_claude_relay.bench.runner import MAX_TOKENS
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.models import DEFAULT_MODEL

__all__ = [
    "EmulatorFactory",
    "LoadRow",
    "LoadReport",
    "LoadSettings",
    "EMULATORS",
    "measure_load",
    "thread_emulator",
]

_API_KEY = "bench-not-a-secret"
EmulatorFactory = Callable[[], AbstractContextManager[str]]
"""Starts an emulator for the length of a ``with`` block and yields its ``base_url``."""
REUSE = "reuse"
MODES = ("plain", "stream")


@contextlib.contextmanager
def thread_emulator() -> Iterator[str]:
    """A ``RelayEmulator`` in a background thread of this process; yields its ``base_url``."""
    with RelayEmulator() as emulator:
        yield emulator.base_url


EMULATORS: dict[str, EmulatorFactory] = {"thread": thread_emulator, "process": emulator_process}
"""Where the load check runs the emulator, by the name shown in its table."""


@dataclass(frozen=True)
class LoadSettings:
    """How much load to send.

    Attributes:
        concurrency: requests in flight, one row per value (and per mode and emulator).
        requests: requests per row (at least the concurrency).
        idle_gap: seconds the ``reuse`` row leaves its connections idle (``None``: no such row).
        reuse_concurrency: requests in flight in the ``reuse`` row.
        timeout: seconds before a request counts as a (connection) error.
    """

    concurrency: tuple[int, ...] = (1, 16, 64, 256)
    requests: int = 128
    idle_gap: float | None = 4.75
    reuse_concurrency: int = 64
    timeout: float = 60.0

    @classmethod
    def quick(cls) -> LoadSettings:
        """Fewer requests per row and no idle wait, for the smoke run."""
        return cls(requests=32, idle_gap=None)


@dataclass(frozen=True)
class LoadRow:
    """One emulator, mode and concurrency.

    Attributes:
        emulator: ``thread`` or ``process`` (``EMULATORS``).
        mode: ``plain``, ``stream`` or ``reuse`` (plain, on connections left idle).
        concurrency: requests in flight.
        requests: requests sent.
        seconds: wall time of the row.
        requests_per_second: ``requests / seconds``.
        connection_errors: requests that lost their connection (reset, end of file, timeout).
        other_errors: requests that failed otherwise.
        first_error: the first failure, as ``Type: message`` (``None``: none).
    """

    emulator: str
    mode: str
    concurrency: int
    requests: int
    seconds: float
    requests_per_second: float
    connection_errors: int
    other_errors: int
    first_error: str | None = None

    @property
    def errors(self) -> int:
        """Every failed request."""
        return self.connection_errors + self.other_errors


@dataclass(frozen=True)
class LoadReport:
    """Everything ``measure_load`` found.

    Attributes:
        rows: by emulator, mode and concurrency.
        client: the client that sent the load.
        idle_gap: seconds of idle time in the ``reuse`` rows (``None``: not measured).
    """

    rows: tuple[LoadRow, ...]
    client: str
    idle_gap: float | None

    @property
    def errors(self) -> int:
        """Failed requests over every row (the invariant: zero)."""
        return sum(row.errors for row in self.rows)

    def failure(self) -> str | None:
        """What broke the invariant, in one line (``None``: nothing)."""
        bad = [r for r in self.rows if r.errors]
        if not bad:
            return None
        connection = sum(r.connection_errors for r in bad)
        other = sum(r.other_errors for r in bad)
        first = bad[0]
        return (
            f"{connection} connection and {other} other errors in {len(bad)} rows; first "
            f"({first.emulator}/{first.mode}/{first.concurrency}): {first.first_error}"
        )


# ------------------------------------------------------------------------------ errors


def _sdk_transport_error() -> type[Exception]:
    """``TransportError`` of the HTTP library under the ``openai`` SDK (httpx2 or httpx)."""
    base = next(
        c for c in openai.DefaultAsyncHttpxClient.__mro__ if not c.__module__.startswith("openai")
    )
    error: type[Exception] = importlib.import_module(
        base.__module__.partition(".")[0]
    ).TransportError
    return error


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    openai.APIConnectionError,  # and APITimeoutError
    _sdk_transport_error(),  # raised while a stream is read
    OSError,
)


class _IncompleteStream(Exception):
    """A stream that ended without its usage chunk."""


# ------------------------------------------------------------------------------- sending


async def _send(client: openai.AsyncOpenAI, raw: list[dict[str, str]], stream: bool) -> None:
    if not stream:
        await client.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=raw,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
        )
        return
    chunks: Any = await cast(Any, client).chat.completions.create(
        model=DEFAULT_MODEL,
        messages=raw,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    async with chunks:
        async for chunk in chunks:
            usage = chunk.usage or usage
    if usage is None:
        msg = "the stream ended without its usage chunk"
        raise _IncompleteStream(msg)


async def _burst(
    client: openai.AsyncOpenAI,
    raw: list[dict[str, str]],
    *,
    stream: bool,
    concurrency: int,
    requests: int,
) -> tuple[float, list[BaseException]]:
    """Send ``requests`` with ``concurrency`` in flight; every one finishes before it returns."""
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            await _send(client, raw, stream)

    start = time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(requests)), return_exceptions=True)
    seconds = time.perf_counter() - start
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    for failure in failures:  # a cancellation or an interrupt is not a measurement
        if not isinstance(failure, Exception):
            raise failure
    return seconds, failures


def _row(
    emulator: str,
    mode: str,
    concurrency: int,
    requests: int,
    seconds: float,
    failures: Sequence[BaseException],
) -> LoadRow:
    connection = sum(isinstance(f, _CONNECTION_ERRORS) for f in failures)
    return LoadRow(
        emulator,
        mode,
        concurrency,
        requests,
        round(seconds, 3),
        round(requests / seconds, 1),
        connection,
        len(failures) - connection,
        describe_error(failures[0]) if failures else None,
    )


def _client(base_url: str, settings: LoadSettings) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=_API_KEY, max_retries=0, timeout=settings.timeout
    )


async def _emulator_rows(
    emulator: str, base_url: str, settings: LoadSettings, raw: list[dict[str, str]]
) -> list[LoadRow]:
    rows: list[LoadRow] = []
    for mode in MODES:
        for concurrency in settings.concurrency:
            requests = max(settings.requests, concurrency)
            async with _client(base_url, settings) as client:
                seconds, failures = await _burst(
                    client, raw, stream=mode == "stream", concurrency=concurrency, requests=requests
                )
            rows.append(_row(emulator, mode, concurrency, requests, seconds, failures))
    if settings.idle_gap is not None:
        concurrency = settings.reuse_concurrency
        async with _client(base_url, settings) as client:
            _, warm = await _burst(
                client, raw, stream=False, concurrency=concurrency, requests=concurrency
            )
            await asyncio.sleep(settings.idle_gap)
            seconds, failures = await _burst(
                client, raw, stream=False, concurrency=concurrency, requests=concurrency
            )
        rows.append(_row(emulator, REUSE, concurrency, concurrency, seconds, [*warm, *failures]))
    return rows


def measure_load(
    settings: LoadSettings | None = None,
    emulators: dict[str, EmulatorFactory] | None = None,
) -> LoadReport:
    """Send the load to each emulator and count what failed (see the module docstring).

    Args:
        settings: how much load (default: the full run).
        emulators: where to run the emulator, by name (default: ``EMULATORS``).

    Returns:
        The rows; failed requests are counted in them, never raised.
    """
    settings = settings or LoadSettings()
    _, raw = bench_request()
    rows: list[LoadRow] = []
    for name, factory in (emulators or EMULATORS).items():
        with factory() as base_url:
            rows += asyncio.run(_emulator_rows(name, base_url, settings, raw))
    return LoadReport(tuple(rows), "openai.AsyncOpenAI", settings.idle_gap)
