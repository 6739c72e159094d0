"""Fixtures for the unit tests: a fake relay on an injected transport (no sockets)."""

from fake_relay import make_llm, relay

__all__ = ["make_llm", "relay"]
