"""Each relay and account has its own prompt cache: the planner keeps their records apart.

Models sharing a planner (the process's default one, a ``with_fallbacks`` pair, two apps on the
default disk store) used to share its records whatever relay they called: a prefix written
through relay A looked cached to a call through relay B, whose cache never saw it. The chat
model now gives each request a digest of its way in, endpoint and credentials
(``ClaudeRequest.cache_scope``), which seeds the prefix hashes every record is keyed by.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import SecretStr

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.request import cache_model_key, chain_prefix_hashes
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.wire.openai_chat import render_chat_payload

SYSTEM = "You answer questions about the handbook.\n\n" + " ".join(
    f"Section {i} says item {i} must be filed within {i % 30 + 1} days." for i in range(400)
)
MESSAGES = [SystemMessage(SYSTEM), HumanMessage("Which section covers refunds?")]
KEY = "sk-scope-test-key-0123456789"


@pytest.fixture(scope="module")
def relays() -> Iterator[tuple[RelayEmulator, RelayEmulator]]:
    """Two relays: two caches."""
    with RelayEmulator() as first, RelayEmulator() as second:
        yield first, second


def _model(emu: RelayEmulator, planner: CachePlanner, key: str = KEY) -> ChatClaudeRelay:
    settings: dict[str, Any] = {
        "base_url": emu.base_url,
        "api_key": SecretStr(key),
        "cache": planner,
        "ledger": MemoryLedger(),
        "max_tokens": 16,
        "max_retries": 0,
    }
    return ChatClaudeRelay(**settings)


def _predicted_read(llm: ChatClaudeRelay) -> int:
    with llm:
        plan = llm.invoke(MESSAGES).response_metadata["cache_plan"]
    assert plan["planned"], plan
    return int(plan["predicted_read_tokens"])


def test_a_prefix_written_through_one_relay_is_not_cached_for_another(
    relays: tuple[RelayEmulator, RelayEmulator],
) -> None:
    first, second = relays
    planner = CachePlanner(MemoryStore())
    assert _predicted_read(_model(first, planner)) == 0  # first sight: a write
    assert _predicted_read(_model(second, planner)) == 0  # relay B never saw it
    assert _predicted_read(_model(first, planner)) > 0  # relay A still has it


def test_models_on_one_relay_with_one_key_share_what_is_cached(
    relays: tuple[RelayEmulator, RelayEmulator],
) -> None:
    first, _ = relays
    planner = CachePlanner(MemoryStore())
    assert _predicted_read(_model(first, planner)) == 0
    assert _predicted_read(_model(first, planner)) > 0  # another instance, the same cache


def test_another_key_on_one_relay_is_another_account(
    relays: tuple[RelayEmulator, RelayEmulator],
) -> None:
    first, _ = relays
    planner = CachePlanner(MemoryStore())
    assert _predicted_read(_model(first, planner)) == 0
    assert _predicted_read(_model(first, planner, key=KEY + "-other")) == 0


def test_the_scope_is_a_digest_that_is_never_sent() -> None:
    def scope(**settings: Any) -> str:
        settings = {"base_url": "https://relay.example/v1", "api_key": SecretStr(KEY), **settings}
        return ChatClaudeRelay(**settings)._cache_scope_digest()

    assert scope() == scope()  # stable: records survive a restart
    assert len({scope(), scope(api_key=SecretStr(KEY + "x")), scope(base_url="https://b/v1")}) == 3
    llm = ChatClaudeRelay(base_url="https://relay.example/v1", api_key=SecretStr(KEY))
    request = llm._to_request(MESSAGES, {})
    assert request.cache_scope == scope()
    payload = json.dumps(render_chat_payload(request))
    assert request.cache_scope not in payload


def test_a_request_without_a_scope_hashes_as_before_scopes_existed() -> None:
    """A planner used on its own keeps the records it stored before."""
    llm = ChatClaudeRelay(base_url="https://relay.example/v1", api_key=SecretStr(KEY))
    scoped = llm._to_request(MESSAGES, {})
    plain = scoped.__class__(scoped.model, scoped.tools, scoped.system, scoped.messages)  # no scope
    flats = plain.flat_blocks()
    before = chain_prefix_hashes(
        [f.position.section for f in flats],
        [f.hash for f in flats],
        plain.messages_context_hash(),
        model_key=cache_model_key(plain.model),
    )
    assert plain.prefix_hashes() == before
    assert all(a != b for a, b in zip(scoped.prefix_hashes(), before, strict=True))
    planned = CachePlanner(MemoryStore()).plan(scoped)
    assert {bp.prefix_hash for bp in planned.breakpoints} <= set(scoped.prefix_hashes())
