"""Fixtures for the integration tests: the local relay emulator."""

from emulator_session import _stop_shared_emulator, emulator

__all__ = ["_stop_shared_emulator", "emulator"]
