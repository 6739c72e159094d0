"""Fixtures for the emulator tests: one emulator per session, reset before each test."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from langchain_claude_relay.emulator import EmulatorSettings, RelayEmulator

MODEL = "claude-sonnet-4-6"  # 1,024-token minimum
_VOCAB = (
    (
        "the relay caches a static prefix while each request adds new turns about invoices, "
        "contracts, schedules, budgets, reports and the quarterly review of shipping routes"
    )
    .replace(",", "")
    .split()
)


def prose(words: int, seed: int) -> str:
    """Deterministic prose of ``words`` words (distinct seeds give distinct texts)."""
    rng = random.Random(seed)
    return f"Document {seed}. " + " ".join(rng.choice(_VOCAB) for _ in range(words))


class WordCounter:
    """A stand-in tokenizer for pure engine tests: a block costs one token per standalone 'w'."""

    def __init__(self) -> None:
        self.calls = 0

    def count_block(self, block_hash: str, kind: str, text: str) -> int:
        self.calls += 1
        return len(re.findall(r"\bw\b", text))


def words(n: int, tag: str) -> str:
    """A text worth ``n`` tokens to ``WordCounter``, unique per ``tag``."""
    return f"{tag} " + " ".join(["w"] * n)


@pytest.fixture(scope="session")
def emulator() -> Iterator[RelayEmulator]:
    with RelayEmulator() as emu:
        yield emu


@pytest.fixture
def emu(emulator: RelayEmulator) -> RelayEmulator:
    """The session emulator with default settings and a fresh state."""
    emulator.configure(**dataclasses.asdict(EmulatorSettings()))
    emulator.reset()
    return emulator


@pytest.fixture
def client(emu: RelayEmulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=emu.base_url, api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
def http(emu: RelayEmulator) -> Iterator[httpx.Client]:
    """A raw client rooted at the server (``/v1/...`` and ``/admin/...`` paths)."""
    with httpx.Client(base_url=emu.base_url.removesuffix("/v1"), timeout=10) as c:
        yield c


def usage_of(response: Any) -> dict[str, Any]:
    """The raw usage dict of an openai SDK response (extra fields included)."""
    return response.usage.model_dump(exclude_none=True)


def cache_fields(usage: dict[str, Any]) -> tuple[int, int]:
    """(cache read, cache write) from the superset dialect."""
    return usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
