"""A real relay, end to end: opt-in, a handful of cheap calls, skipped without one.

Run with ``CLAUDE_RELAY_BASE_URL`` and ``CLAUDE_RELAY_API_KEY`` exported (``make test`` then
includes them): five calls on ``CLAUDE_RELAY_TEST_MODEL`` (default: the package's default
model), about 10K input tokens: one 4.5K-token prefix written once and read once, about two
cents on Sonnet 5.5. Without the variables every test here skips.
``test_these_tests_pass_on_the_emulator_as_a_relay`` (not marked) runs them against a
``claude-relay emulator`` server, so they are known to work before anyone spends a cent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.models import DEFAULT_MODEL
from langchain_claude_relay.usage import from_usage_metadata

MODEL = os.environ.get("CLAUDE_RELAY_TEST_MODEL") or DEFAULT_MODEL
# Over every current model's minimum (512 to 4,096 tokens), and the same on every run: a real
# relay's cache may hold it from a run minutes ago (so the first call may read, not write).
HANDBOOK = "Rule {i}: every expense over {i} dollars needs a receipt and a manager's note. "
SYSTEM = "You answer in one short sentence.\n\n" + "".join(HANDBOOK.format(i=i) for i in range(260))


def _model(relay: Any, **settings: object) -> ChatClaudeRelay:
    """A model on the relay (``relay``: tests/conftest.py's ``RealRelay``)."""
    return ChatClaudeRelay(
        model=MODEL,
        base_url=relay.base_url,
        api_key=relay.api_key,
        max_tokens=64,
        ledger=False,
        **settings,  # type: ignore[arg-type]
    )


@pytest.mark.relay
def test_invoke_answers_with_usage_and_cost(real_relay: Any) -> None:
    reply = _model(real_relay).invoke("Say hello in three words.")
    assert isinstance(reply.content, str)
    assert reply.content.strip()
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0
    assert reply.usage_metadata["output_tokens"] > 0
    assert "cost_usd" in reply.response_metadata


@pytest.mark.relay
def test_a_stream_ends_with_its_usage(real_relay: Any) -> None:
    chunks = list(_model(real_relay).stream("Count from one to five."))
    assert len(chunks) > 1
    text = "".join(str(c.content) for c in chunks)
    assert text.strip()
    usages = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usages, "the relay sent no usage in the stream (stream_options.include_usage)"


@pytest.mark.relay
def test_the_second_call_reads_the_cached_prefix(real_relay: Any) -> None:
    llm = _model(real_relay)
    messages = [SystemMessage(SYSTEM), HumanMessage("What does rule 7 require?")]
    first = from_usage_metadata(llm.invoke(messages).usage_metadata)
    assert first.cache_read_tokens + first.cache_write_tokens > 0, (
        "the relay reported no cache write or read for a marked prefix: it may drop "
        "cache_control (run `claude-relay probe`)"
    )
    second = llm.invoke([SystemMessage(SYSTEM), HumanMessage("And rule 9?")])
    assert from_usage_metadata(second.usage_metadata).cache_read_tokens > 0


@pytest.mark.relay
def test_a_tool_is_called(real_relay: Any) -> None:
    @tool
    def expense_limit(category: str) -> str:
        """The spending limit of an expense category."""
        return "100 dollars"

    reply = (
        _model(real_relay)
        .bind_tools([expense_limit])
        .invoke("Use the expense_limit tool to look up the limit for the category 'travel'.")
    )
    assert [call["name"] for call in reply.tool_calls] == ["expense_limit"]
    assert reply.tool_calls[0]["args"].get("category")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_these_tests_pass_on_the_emulator_as_a_relay(tmp_path: Path) -> None:
    """The tests above, against a ``claude-relay emulator`` server standing in for a relay."""
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 -- our own entry point
        [sys.executable, "-m", "langchain_claude_relay.cli", "emulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.2)
        env = {
            **os.environ,
            "CLAUDE_RELAY_BASE_URL": f"{base}/v1",
            "CLAUDE_RELAY_API_KEY": "test-relay-key-0123456789",
            "CLAUDE_RELAY_STATE_DIR": str(tmp_path),
        }
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-m", "relay", __file__],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout, done.stdout[-2000:]
