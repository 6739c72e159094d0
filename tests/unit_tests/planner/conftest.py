"""Fixtures for the planner tests (helpers live in ``planner_helpers``)."""

from __future__ import annotations

import pytest
from planner_helpers import ENCODING, ESTIMATOR, Clock

from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import MemoryStore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def planner(store: MemoryStore, clock: Clock) -> CachePlanner:
    return CachePlanner(store, clock, encoding=ESTIMATOR)


@pytest.fixture(autouse=True)
def _no_home_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Belt and braces: even a default store in these tests lands in a temporary directory."""
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    monkeypatch.setenv("CLAUDE_RELAY_TIKTOKEN_ENCODING", ENCODING)
