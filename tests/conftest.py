"""Test-wide settings: no real relay unless asked, isolated state."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from langchain_claude_relay.transport.checks import redact_url

# A real relay is opt-in: the tests that need one (tests/real_relay, marked ``relay``) take it
# from the ``real_relay`` fixture and skip without it; no other test ever sees it.
REAL_RELAY_BASE_URL = os.environ.pop("CLAUDE_RELAY_BASE_URL", None)
REAL_RELAY_API_KEY = os.environ.pop("CLAUDE_RELAY_API_KEY", None)
for _name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY", "CLAUDE_RELAY_STATE"):
    os.environ.pop(_name, None)

# Planner state and the ledger never touch the user's home directory during tests.
os.environ["CLAUDE_RELAY_STATE_DIR"] = tempfile.mkdtemp(prefix="claude-relay-test-state-")
atexit.register(shutil.rmtree, os.environ["CLAUDE_RELAY_STATE_DIR"], ignore_errors=True)
# The tokenizer needs no setting: by default it uses the bundled offline encoding (see
# tests/unit_tests/test_tokens_offline.py), so none is forced here.
os.environ.pop("CLAUDE_RELAY_TIKTOKEN_ENCODING", None)

# How fast Hypothesis generates data is the machine's business, not the code's: a first run in
# a fresh environment (cold imports and caches) once failed the `too_slow` health check. The
# properties themselves are checked as before, with the same number of examples.
settings.register_profile("claude-relay", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("claude-relay")


@dataclass(frozen=True)
class RealRelay:
    """A real relay's base URL and key; shown redacted (a failing test prints its arguments)."""

    base_url: str
    api_key: SecretStr

    def __repr__(self) -> str:
        return f"RealRelay(base_url={redact_url(self.base_url)!r}, api_key=SecretStr('**********'))"


@pytest.fixture
def real_relay() -> RealRelay:
    """The real relay, from ``CLAUDE_RELAY_BASE_URL`` and ``CLAUDE_RELAY_API_KEY``."""
    if not (REAL_RELAY_BASE_URL and REAL_RELAY_API_KEY):
        pytest.skip("needs a real relay: set CLAUDE_RELAY_BASE_URL and CLAUDE_RELAY_API_KEY")
    return RealRelay(REAL_RELAY_BASE_URL, SecretStr(REAL_RELAY_API_KEY))
