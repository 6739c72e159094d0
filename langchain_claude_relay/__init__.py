"""Claude through OpenAI-compatible relays from LangChain, with prompt caching planned for you.

>>> from langchain_claude_relay import ChatClaudeRelay, CachePlanner, CachePlan, RelayEmulator
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_claude_relay.chat_models import ChatClaudeRelay
from langchain_claude_relay.errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ClaudeRelayError,
    RateLimitError,
    RequestValidationError,
)
from langchain_claude_relay.limiter import RateLimiter, shared_limiter
from langchain_claude_relay.models import lookup_model, register_model
from langchain_claude_relay.usage import NormalizedUsage, normalize_usage

if TYPE_CHECKING:
    from langchain_claude_relay.emulator import RelayEmulator
    from langchain_claude_relay.planner import Breakpoint, CachePlan, CachePlanner

__version__ = "0.1.0"

__all__ = [
    "ChatClaudeRelay",
    "CachePlanner",
    "CachePlan",
    "Breakpoint",
    "RelayEmulator",
    "NormalizedUsage",
    "normalize_usage",
    "lookup_model",
    "register_model",
    "ClaudeRelayError",
    "RequestValidationError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseError",
    "APIStatusError",
    "RateLimitError",
    "RateLimiter",
    "shared_limiter",
    "__version__",
]

_LAZY = {
    "CachePlanner": "langchain_claude_relay.planner",
    "CachePlan": "langchain_claude_relay.planner",
    "Breakpoint": "langchain_claude_relay.planner",
    "RelayEmulator": "langchain_claude_relay.emulator",
}


def __getattr__(name: str) -> Any:
    """Import the planner and the emulator on first use (the emulator needs the extra)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        msg = f"module 'langchain_claude_relay' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if name == "RelayEmulator":
            msg = (
                "RelayEmulator needs the emulator extra: "
                "pip install 'langchain-claude-relay[emulator]'"
            )
            raise ImportError(msg) from exc
        raise
    value = getattr(module, name)
    globals()[name] = value
    return value
