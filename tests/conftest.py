"""Test-wide settings: no real relay unless asked, isolated state."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# A real relay is opt-in: tests that need one read these themselves and skip without them.
REAL_RELAY_BASE_URL = os.environ.pop("CLAUDE_RELAY_BASE_URL", None)
REAL_RELAY_API_KEY = os.environ.pop("CLAUDE_RELAY_API_KEY", None)
for _name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CLAUDE_RELAY_STATE"):
    os.environ.pop(_name, None)

# Planner state and the ledger never touch the user's home directory during tests.
os.environ["CLAUDE_RELAY_STATE_DIR"] = tempfile.mkdtemp(prefix="claude-relay-test-state-")
atexit.register(shutil.rmtree, os.environ["CLAUDE_RELAY_STATE_DIR"], ignore_errors=True)
# The tokenizer needs no setting: by default it uses the bundled offline encoding (see
# tests/unit_tests/test_tokens_offline.py), so none is forced here.
os.environ.pop("CLAUDE_RELAY_TIKTOKEN_ENCODING", None)
