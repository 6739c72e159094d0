"""The emulator under load: no dropped connection, in a thread or in a child process.

The full table (concurrency 1 to 256, plain and streamed) is ``claude-relay bench``'s load
phase; these are its small versions, plus the keep-alive rule behind the drops it found.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from langchain_claude_relay.bench.load import EMULATORS, LoadSettings, measure_load
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.server import KEEP_ALIVE_SECONDS

CLIENT_KEEPALIVE_EXPIRY = httpx.Limits().keepalive_expiry or 5.0
"""How long httpx (and so the ``openai`` SDK) reuses an idle connection: 5 s."""


@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, str]]:
    """Each kind of emulator (``EMULATORS``), started once: name -> ``base_url``."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(start()) for name, start in EMULATORS.items()}


@pytest.mark.parametrize("where", list(EMULATORS))
def test_no_errors_at_concurrency_64_plain_and_streamed(
    where: str, running: dict[str, str]
) -> None:
    settings = LoadSettings(concurrency=(64,), requests=64, idle_gap=None)
    report = measure_load(settings, {where: lambda: contextlib.nullcontext(running[where])})
    assert [(r.mode, r.concurrency, r.requests) for r in report.rows] == [
        ("plain", 64, 64),
        ("stream", 64, 64),
    ]
    assert report.errors == 0, report.failure()
    assert report.failure() is None
    assert all(r.requests_per_second > 0 for r in report.rows)


@contextlib.contextmanager
def _resetting_emulator() -> Iterator[str]:
    with RelayEmulator(fault_rate=1.0, fault_kinds="reset") as emu:
        yield emu.base_url


def test_dropped_connections_are_counted_not_raised() -> None:
    settings = LoadSettings(concurrency=(16,), requests=16, idle_gap=None)
    report = measure_load(settings, {"resetting": _resetting_emulator})
    assert [(r.connection_errors, r.other_errors) for r in report.rows] == [(16, 0), (16, 0)]
    assert report.errors == 32
    failure = report.failure()
    assert failure is not None
    assert failure.startswith("32 connection and 0 other errors in 2 rows")
    assert "resetting/plain/16" in failure
    assert "APIConnectionError" in failure


def _served_after_idle(base_url: str, idle: float) -> tuple[int, int, bool]:
    """Two requests on one connection, ``idle`` seconds apart.

    Returns:
        Both statuses, and whether the second went over the same connection.
    """
    where = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=10)
    try:
        connection.request("GET", "/v1/models")
        first = connection.getresponse()
        first.read()
        local = connection.sock.getsockname()
        time.sleep(idle)
        connection.request("GET", "/v1/models")  # raises if the server closed the connection
        second = connection.getresponse()
        second.read()
        return first.status, second.status, connection.sock.getsockname() == local
    finally:
        connection.close()


def test_idle_connections_outlive_the_clients_keep_alive(running: dict[str, str]) -> None:
    """A connection idle for longer than httpx keeps one is still served (the client closes).

    The emulator used to close idle connections after 5 s, as httpx's own expiry: a client that
    reused one idle for just under 5 s raced the close and got a ``ReadError``.
    """
    assert KEEP_ALIVE_SECONDS > 10 * CLIENT_KEEPALIVE_EXPIRY
    idle = CLIENT_KEEPALIVE_EXPIRY + 0.5
    with ThreadPoolExecutor(max_workers=len(running)) as pool:  # both wait at the same time
        served = pool.map(lambda url: _served_after_idle(url, idle), running.values())
        outcomes = dict(zip(running, served, strict=True))
    assert outcomes == dict.fromkeys(EMULATORS, (200, 200, True))
