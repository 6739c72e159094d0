"""One relay emulator for the integration tests, started on first use and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from langchain_claude_relay.emulator import RelayEmulator

_shared: RelayEmulator | None = None


def shared_emulator() -> RelayEmulator:
    """The session's emulator (virtual clock, default settings)."""
    global _shared
    if _shared is None:
        _shared = RelayEmulator().start()
    return _shared


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_emulator() -> Iterator[None]:
    yield
    if _shared is not None:
        _shared.stop()


@pytest.fixture
def emulator() -> Iterator[RelayEmulator]:
    """A fresh emulator for one test (its own cache, clock and billing log)."""
    with RelayEmulator() as emu:
        yield emu
