"""Warnings name the caller's line: this file, not a module of the package or of LangChain."""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_relay import FakeRelay, completion
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay._plumbing import external_stacklevel, forget_warnings, warn_external
from langchain_claude_relay.capabilities import RelayCapabilities, save_capabilities
from langchain_claude_relay.planner import CachePlanner, PrefixStabilityWarning
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.tokens import TokenEstimateWarning, TokenEstimator

THIS_FILE = __file__
DOCUMENT = "The handbook says the same thing again and again. " * 600


def _caught(category: type[Warning], action: Callable[[], Any]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [w for w in caught if issubclass(w.category, category)]


def _no_encoding_planner() -> CachePlanner:
    """A planner whose tokenizer cannot load (so its first count warns)."""
    return CachePlanner(
        store=MemoryStore(), clock=lambda: 0.0, encoding=TokenEstimator("no-such-encoding")
    )


def test_the_token_warning_via_cache_planner_plan_names_this_file() -> None:
    planner = _no_encoding_planner()
    messages = [SystemMessage(DOCUMENT), HumanMessage("hi")]
    found = _caught(TokenEstimateWarning, lambda: planner.plan(messages, model="claude-sonnet-4-6"))
    assert found, "the fallback to characters warns"
    assert [w.filename for w in found] == [THIS_FILE]


def test_the_token_warning_via_chat_invoke_names_this_file(
    make_llm: Callable[..., ChatClaudeRelay], relay: FakeRelay
) -> None:
    relay.queue(completion(usage={"prompt_tokens": 10, "completion_tokens": 1}))
    llm = make_llm(cache=_no_encoding_planner(), model="claude-sonnet-4-6")
    messages = [SystemMessage(DOCUMENT), HumanMessage("hi")]
    found = _caught(TokenEstimateWarning, lambda: llm.invoke(messages))
    assert found
    assert {w.filename for w in found} == {THIS_FILE}
    line = sys._getframe().f_lineno - 3  # the llm.invoke line above
    assert found[0].lineno == line


def test_the_token_warning_via_ainvoke_names_this_file(
    make_llm: Callable[..., ChatClaudeRelay], relay: FakeRelay
) -> None:
    llm = make_llm(cache=_no_encoding_planner(), model="claude-sonnet-4-6")
    messages = [SystemMessage(DOCUMENT), HumanMessage("hi")]

    async def call() -> None:
        await llm.ainvoke(messages)

    found = _caught(TokenEstimateWarning, lambda: asyncio.run(call()))
    assert found
    assert {w.filename for w in found} == {THIS_FILE}


def test_the_token_warning_inside_a_runnable_chain_names_this_file(
    make_llm: Callable[..., ChatClaudeRelay], relay: FakeRelay
) -> None:
    llm = make_llm(cache=_no_encoding_planner(), model="claude-sonnet-4-6")
    chain = RunnableLambda(lambda text: [SystemMessage(DOCUMENT), HumanMessage(text)]) | llm
    found = _caught(TokenEstimateWarning, lambda: chain.invoke("hi"))
    assert found
    assert {w.filename for w in found} == {THIS_FILE}


# -- the helper itself ----------------------------------------------------------------------


def test_a_caller_outside_the_package_is_level_one() -> None:
    assert external_stacklevel(sys._getframe()) == 1


def test_warn_external_from_here_names_this_line() -> None:
    found = _caught(UserWarning, lambda: warn_external("from the test"))
    # the lambda is this file's own frame: the first frame outside the package
    assert [(w.filename, w.lineno) for w in found] == [(THIS_FILE, sys._getframe().f_lineno - 2)]


def test_package_and_functools_frames_are_skipped() -> None:
    """A warning from a ``cached_property`` getter inside the package names the reader's line."""
    code = compile(
        "import functools\n"
        "from langchain_claude_relay._plumbing import warn_external\n"
        "class Lazy:\n"
        "    @functools.cached_property\n"
        "    def value(self):\n"
        "        warn_external('lazy', UserWarning)\n"
        "        return 1\n",
        "<package module>",
        "exec",
    )
    namespace: dict[str, Any] = {"__name__": "langchain_claude_relay.fake_module"}
    exec(code, namespace)  # noqa: S102 -- a module of the package, compiled here
    lazy = namespace["Lazy"]()
    found = _caught(UserWarning, lambda: lazy.value)
    assert [w.filename for w in found] == [THIS_FILE]
    assert functools.cached_property.__module__ == "functools"


# -- the package's call sites ---------------------------------------------------------------


def test_the_prefix_stability_warning_via_plan_names_this_file() -> None:
    planner = CachePlanner(store=MemoryStore(), clock=lambda: 0.0)
    messages = [SystemMessage("Now: 2026-11-22T10:11:00Z. " + DOCUMENT), HumanMessage("hi")]
    found = _caught(
        PrefixStabilityWarning, lambda: planner.plan(messages, model="claude-sonnet-4-6")
    )
    assert found
    assert {w.filename for w in found} == {THIS_FILE}


def test_the_prefix_stability_warning_via_invoke_names_this_file(
    make_llm: Callable[..., ChatClaudeRelay], relay: FakeRelay
) -> None:
    llm = make_llm(cache=CachePlanner(store=MemoryStore(), clock=lambda: 0.0))
    messages = [SystemMessage("Now: 2026-11-22T10:11:00Z. " + DOCUMENT), HumanMessage("hi")]
    found = _caught(PrefixStabilityWarning, lambda: llm.invoke(messages))
    assert found
    assert {w.filename for w in found} == {THIS_FILE}


def test_the_relay_probe_warning_via_invoke_names_this_file(
    make_llm: Callable[..., ChatClaudeRelay],
    relay: FakeRelay,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    forget_warnings()
    dropped_ttl = RelayCapabilities(
        keeps_block_markers=True,
        keeps_tool_markers=True,
        keeps_ttl=False,
        injects_markers=False,
        reports_cache_usage=True,
        usage_fields=("cache_read_input_tokens",),
        model="claude-sonnet-4-6",
        probed_at=time.time(),
    )
    save_capabilities("https://relay.example.com/v1", dropped_ttl)
    llm = make_llm(cache=CachePlanner(store=MemoryStore(), clock=lambda: 0.0))
    found = _caught(UserWarning, lambda: llm.invoke([SystemMessage(DOCUMENT), HumanMessage("hi")]))
    probe_notes = [w for w in found if "probe:" in str(w.message)]
    assert probe_notes
    assert {w.filename for w in probe_notes} == {THIS_FILE}
