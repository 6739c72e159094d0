"""Where the on-disk ledger lives: ``$CLAUDE_RELAY_STATE_DIR/ledger`` or the user cache dir."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STATE_DIR_ENV = "CLAUDE_RELAY_STATE_DIR"
"""Environment variable naming the package's state directory (the ledger is its ``ledger/``)."""

APP_NAME = "langchain-claude-relay"


def ledger_directory(environ: Mapping[str, str] | None = None) -> Path:
    """Where the on-disk ledger lives: ``$CLAUDE_RELAY_STATE_DIR/ledger`` or the user cache dir.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        The directory (not created here).

    """
    env = os.environ if environ is None else environ
    state = env.get(STATE_DIR_ENV, "").strip()
    if state:
        return Path(state).expanduser() / "ledger"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME)) / "ledger"
