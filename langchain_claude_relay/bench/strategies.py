"""The caching strategies compared: five peers' fixed rules and ours (the planner).

A baseline is a rule from a request to its markers (``{Position: CacheControl}``); the runner
applies it with ``ClaudeRequest.with_markers``, renders the payload with the package's one
renderer and sends it with the plain ``openai`` client, so every strategy is billed by the same
emulator from the same bytes apart from the markers. ``ours`` has no rule: its requests go
through ``ChatClaudeRelay(cache=CachePlanner(...))``, the product itself.

==================  ===========================================================================
``none``            no markers
``system_5m``       one 5m marker at the end of the system prompt
``last_message_5m`` one 5m marker on the last block of the last message, where
                    ``AnthropicPromptCachingMiddleware`` (through ``ChatAnthropic``) puts it
``litellm``         LiteLLM's ``cache_control_injection_points`` for the system message and the
                    last user message (``role: system`` + last ``role: user``), 5m each
``always_1h``       1h everywhere allowed, at most 4: end of tools, end of system, then the ends
                    of the last messages (the last two when tools and system are both present)
``ours``            ``ChatClaudeRelay`` with ``cache=CachePlanner(MemoryStore, virtual clock)``
==================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_claude_relay.request import (
    MAX_CACHE_MARKERS,
    CacheControl,
    CacheTTL,
    ClaudeRequest,
    FlatBlock,
    Position,
)

__all__ = [
    "MarkerRule",
    "Strategy",
    "BASELINES",
    "OURS",
    "STRATEGIES",
    "FIVE_MINUTE_BASELINES",
    "system_end",
    "tools_end",
    "message_end",
    "last_user_message_end",
]

MarkerRule = Callable[[ClaudeRequest], dict[Position, CacheControl]]


@dataclass(frozen=True)
class Strategy:
    """A named strategy.

    Attributes:
        name: identifier used in tables and JSON.
        description: one line for the README and the report.
        rule: the markers a baseline places, or ``None`` for the planner (``ours``).
    """

    name: str
    description: str
    rule: MarkerRule | None

    @property
    def planned(self) -> bool:
        """Whether requests go through ``ChatClaudeRelay`` with the planner."""
        return self.rule is None


def _last_markable(flats: list[FlatBlock]) -> Position | None:
    return next((f.position for f in reversed(flats) if f.markable), None)


def tools_end(request: ClaudeRequest) -> Position | None:
    """The last tool definition, if any."""
    return Position("tools", len(request.tools) - 1) if request.tools else None


def system_end(request: ClaudeRequest) -> Position | None:
    """The last system block that can carry a marker, if any."""
    flats = [f for f in request.flat_blocks() if f.position.section == "system"]
    return _last_markable(flats)


def message_end(request: ClaudeRequest, index: int) -> Position | None:
    """The last markable block of ``request.messages[index]``, if any."""
    flats = [
        f
        for f in request.flat_blocks()
        if f.position.section == "messages" and f.position.index == index
    ]
    return _last_markable(flats)


def last_user_message_end(request: ClaudeRequest) -> Position | None:
    """The end of the last user turn that is not only tool results (OpenAI ``role: user``)."""
    for index in range(len(request.messages) - 1, -1, -1):
        message = request.messages[index]
        if message.role == "user" and any(b.type != "tool_result" for b in message.content):
            return message_end(request, index)
    return None


def _marks(positions: list[Position | None], ttl: CacheTTL) -> dict[Position, CacheControl]:
    marker = CacheControl(ttl)
    return {p: marker for p in dict.fromkeys(positions) if p is not None}


def _no_markers(request: ClaudeRequest) -> dict[Position, CacheControl]:
    return {}


def _system_5m(request: ClaudeRequest) -> dict[Position, CacheControl]:
    return _marks([system_end(request)], "5m")


def _last_message_5m(request: ClaudeRequest) -> dict[Position, CacheControl]:
    return _marks([message_end(request, len(request.messages) - 1)], "5m")


def _litellm(request: ClaudeRequest) -> dict[Position, CacheControl]:
    return _marks([system_end(request), last_user_message_end(request)], "5m")


def _always_1h(request: ClaudeRequest) -> dict[Position, CacheControl]:
    positions = [tools_end(request), system_end(request)]
    for index in range(len(request.messages) - 1, -1, -1):
        if sum(p is not None for p in dict.fromkeys(positions)) >= MAX_CACHE_MARKERS:
            break
        positions.append(message_end(request, index))
    return _marks(positions, "1h")


BASELINES: tuple[Strategy, ...] = (
    Strategy("none", "no cache markers", _no_markers),
    Strategy("system_5m", "5m marker at the end of the system prompt", _system_5m),
    Strategy(
        "last_message_5m",
        "5m marker on the last message (AnthropicPromptCachingMiddleware)",
        _last_message_5m,
    ),
    Strategy("litellm", "LiteLLM injection points: system + last user message, 5m", _litellm),
    Strategy(
        "always_1h",
        "1h at the end of tools, system and the last messages (max 4)",
        _always_1h,
    ),
)
"""The peers' strategies, in report order."""

OURS = Strategy("ours", "ChatClaudeRelay with CachePlanner (MemoryStore, virtual clock)", rule=None)
"""The product: planned markers and TTLs."""

STRATEGIES: tuple[Strategy, ...] = (*BASELINES, OURS)

FIVE_MINUTE_BASELINES: tuple[str, ...] = ("system_5m", "last_message_5m", "litellm")
"""The baselines that only ever write 5-minute entries (the sparse-traffic target's yardstick)."""
