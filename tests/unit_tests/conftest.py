"""Fixtures for the unit tests: a fake relay on an injected transport (no sockets), and for the
few that need a relay on a socket, an emulator per module (``emu``: reset for each test)."""

from collections.abc import Iterator

import pytest
from fake_relay import make_llm, relay

from langchain_claude_relay import models
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.models import lookup_model

__all__ = ["emu", "emulator", "make_llm", "packaged_model_table", "relay"]


@pytest.fixture
def packaged_model_table() -> Iterator[None]:
    """The test starts and ends with the packaged model table (no overrides, fresh warnings)."""
    saved = dict(models._overrides)
    models._overrides.clear()
    forget_warnings()
    lookup_model.cache_clear()
    yield
    models._overrides.clear()
    models._overrides.update(saved)
    lookup_model.cache_clear()


@pytest.fixture(scope="module")
def emulator() -> Iterator[RelayEmulator]:
    """One relay emulator for the module's tests."""
    with RelayEmulator() as emu:
        yield emu


@pytest.fixture
def emu(emulator: RelayEmulator) -> RelayEmulator:
    """The module's emulator, reset (no cache entries, logs or faults; clock at 0)."""
    emulator.reset()
    return emulator
