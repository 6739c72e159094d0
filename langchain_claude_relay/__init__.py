"""Claude through OpenAI-compatible relays from LangChain, with prompt caching planned for you.

>>> from langchain_claude_relay import ChatClaudeRelay, CachePlanner, CachePlan, RelayEmulator

The public surface is what this module exports (``__all__``) and the documented subpackages:
``planner``, ``store``, ``ledger``, ``limiter``, ``emulator``, ``callbacks``, ``capabilities``,
``probe``, ``models``, ``usage``, ``errors``. Modules whose names start with ``_`` and the
``transport`` and ``wire`` packages are internal.

Layering (each layer imports only from the ones below it)::

    cli, demo, bench                      the command line and what it runs
    probe                                 the relay probe (drives a ChatClaudeRelay)
    chat_models, callbacks                the LangChain surface
    transport, limiter, ledger, _fanout   I/O around one call
    planner, wire, capabilities           pure planning and rendering (the planner reads a store)
    store                                 state: memory, disk, Redis, resilient, warm registry
    request, tokens, models, usage, cost  the data model and the platform facts
    errors, _env, _plumbing               leaves
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from langchain_claude_relay import _compat
from langchain_claude_relay.callbacks import track_costs
from langchain_claude_relay.chat_models import ChatClaudeRelay
from langchain_claude_relay.errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClaudeRelayError,
    ConflictError,
    CutResponseError,
    InsecureTransportWarning,
    InternalServerError,
    LedgerUnavailableError,
    LedgerWarning,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RedisStateWarning,
    RequestTooLargeError,
    RequestValidationError,
    StateStoreWarning,
    StateWarning,
    UnprocessableEntityError,
)
from langchain_claude_relay.limiter import RateLimiter, RateLimits, shared_limiter
from langchain_claude_relay.models import ModelPrices, ModelSpec, lookup_model, register_model
from langchain_claude_relay.tokens import TokenEstimateWarning
from langchain_claude_relay.transport.limits import ResponseLimits, response_cap_hooks
from langchain_claude_relay.usage import NormalizedUsage, normalize_usage

if TYPE_CHECKING:
    from langchain_claude_relay.emulator import RelayEmulator
    from langchain_claude_relay.planner import (
        Breakpoint,
        CachePlan,
        CachePlanner,
        PrefixStabilityWarning,
    )

_compat.install()

__version__ = "0.2.0"

__all__ = [
    # the chat model, the planner, the emulator
    "ChatClaudeRelay",
    "CachePlanner",
    "CachePlan",
    "Breakpoint",
    "RelayEmulator",
    # usage, cost and the model table
    "NormalizedUsage",
    "normalize_usage",
    "track_costs",
    "ModelSpec",
    "ModelPrices",
    "lookup_model",
    "register_model",
    # rate limits
    "RateLimiter",
    "RateLimits",
    "shared_limiter",
    # answer caps for an HTTP client of your own
    "ResponseLimits",
    "response_cap_hooks",
    # errors
    "ClaudeRelayError",
    "RequestValidationError",
    "LedgerUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseError",
    "CutResponseError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RequestTooLargeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "OverloadedError",
    # warnings
    "StateWarning",
    "StateStoreWarning",
    "LedgerWarning",
    "RedisStateWarning",
    "InsecureTransportWarning",
    "PrefixStabilityWarning",
    "TokenEstimateWarning",
    "__version__",
]

_LAZY = {
    "CachePlanner": "langchain_claude_relay.planner",
    "CachePlan": "langchain_claude_relay.planner",
    "Breakpoint": "langchain_claude_relay.planner",
    "PrefixStabilityWarning": "langchain_claude_relay.planner",
    "RelayEmulator": "langchain_claude_relay.emulator",
}


def __getattr__(name: str) -> Any:
    """Import the planner and the emulator on first use (the emulator needs the extra)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        msg = f"module 'langchain_claude_relay' has no attribute {name!r}"
        raise AttributeError(msg)
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
