"""The caching strategies compared: the peers' fixed rules (last season's and today's) and ours.

A baseline is a rule from a request to the request it sends (``RequestRule``): block markers put
on with ``ClaudeRequest.with_markers`` and, for automatic caching, a top-level ``cache_control``.
The runner renders it with the package's one renderer and sends it with the plain ``openai``
client (the top-level field in the body, as OpenRouter takes it), so every strategy is billed by
the same emulator from the same bytes apart from the markers. ``ours`` has no rule: its requests
go through ``ChatClaudeRelay(cache=CachePlanner(...))``, the product itself.

====================  ========================================================================
``none``              no markers
``system_5m``         one 5m marker at the end of the system prompt
``last_message_5m``   one 5m marker on the last block of the last message (where the 2025
                      ``AnthropicPromptCachingMiddleware`` put it)
``litellm``           LiteLLM's ``cache_control_injection_points`` for ``role: system`` and the
                      last ``role: user`` message, 5m each
``litellm_auto``      LiteLLM's automatic injection: the system message and the last turn
                      (``index: -1``, whatever its role), 5m each
``always_1h``         1h everywhere allowed, at most 4: end of tools, end of system, then the ends
                      of the last messages
``auto_5m``           automatic caching alone: a top-level ``cache_control`` (5m)
``auto_1h``           automatic caching alone, ``ttl: 1h``
``middleware_5m``     the 2026 ``AnthropicPromptCachingMiddleware``: the last tool, the last
                      system block and a top-level automatic marker, all 5m
``middleware_1h``     the same, all 1h
``rule_of_thumb``     the middleware's markers with the TTL chosen by Anthropic's rule of thumb
                      over the whole trace, with hindsight (``rule_of_thumb_ttl``)
``ours``              ``ChatClaudeRelay`` with ``cache=CachePlanner(MemoryStore, virtual clock)``
====================  ========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from langchain_core.messages import SystemMessage

from langchain_claude_relay.bench.workloads import Trace
from langchain_claude_relay.request import (
    MAX_CACHE_MARKERS,
    CacheControl,
    CacheTTL,
    ClaudeRequest,
    FlatBlock,
    Position,
    content_hash,
)

__all__ = [
    "RequestRule",
    "Strategy",
    "BASELINES",
    "OURS",
    "STRATEGIES",
    "FIVE_MINUTE_BASELINES",
    "system_end",
    "tools_end",
    "message_end",
    "last_user_message_end",
    "rule_of_thumb_ttl",
    "prefix_gaps",
]

RequestRule = Callable[[ClaudeRequest], ClaudeRequest]
"""A baseline: the request as the user built it -> the request it sends (markers on)."""


@dataclass(frozen=True)
class Strategy:
    """A named strategy.

    Attributes:
        name: identifier used in tables and JSON.
        description: one line for the README and the report.
        rule: the request a baseline sends, or ``None`` for the planner (``ours``) and for a
            rule made per trace.
        per_trace: for a rule that looks at the whole trace first (hindsight): trace -> rule.
    """

    name: str
    description: str
    rule: RequestRule | None
    per_trace: Callable[[Trace], RequestRule] | None = None

    @property
    def planned(self) -> bool:
        """Whether requests go through ``ChatClaudeRelay`` with the planner."""
        return self.rule is None and self.per_trace is None

    def rule_for(self, trace: Trace) -> RequestRule:
        """The rule to apply to ``trace``'s requests.

        Raises:
            ValueError: for the planner, which has no rule.
        """
        if self.per_trace is not None:
            return self.per_trace(trace)
        if self.rule is None:
            msg = f"strategy {self.name} has no marker rule (it is the planner)"
            raise ValueError(msg)
        return self.rule


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


Places = Callable[[ClaudeRequest], list[Position | None]]


def _marking(places: Places, ttl: CacheTTL, *, automatic: bool = False) -> RequestRule:
    """A rule that marks ``places`` with ``ttl`` and, if ``automatic``, adds a top-level one."""
    marker = CacheControl(ttl)

    def rule(request: ClaudeRequest) -> ClaudeRequest:
        marked = request.with_markers(
            {p: marker for p in dict.fromkeys(places(request)) if p is not None}
        )
        return replace(marked, cache_control=marker) if automatic else marked

    return rule


def _nothing(request: ClaudeRequest) -> list[Position | None]:
    return []


def _system(request: ClaudeRequest) -> list[Position | None]:
    return [system_end(request)]


def _last_message(request: ClaudeRequest) -> list[Position | None]:
    return [message_end(request, len(request.messages) - 1)]


def _system_and_last_user(request: ClaudeRequest) -> list[Position | None]:
    return [system_end(request), last_user_message_end(request)]


def _system_and_last_turn(request: ClaudeRequest) -> list[Position | None]:
    return [system_end(request), message_end(request, len(request.messages) - 1)]


def _tools_and_system(request: ClaudeRequest) -> list[Position | None]:
    return [tools_end(request), system_end(request)]


def _everywhere(request: ClaudeRequest) -> list[Position | None]:
    positions = [tools_end(request), system_end(request)]
    for index in range(len(request.messages) - 1, -1, -1):
        if sum(p is not None for p in dict.fromkeys(positions)) >= MAX_CACHE_MARKERS:
            break
        positions.append(message_end(request, index))
    return positions


# ------------------------------------------------------------- Anthropic's TTL rule of thumb

_FIVE_MINUTES = 300.0
_ONE_HOUR = 3600.0
RULE_OF_THUMB_MID_SHARE = 1 / 20
"""1h when more than about 1 gap in 20 falls between 5 and 60 minutes..."""
RULE_OF_THUMB_LONG_SHARE = 0.6
"""...unless about 60% or more of the pauses over 5 minutes also run past an hour."""


def rule_of_thumb_ttl(gaps: Sequence[float]) -> CacheTTL:
    """Anthropic's TTL rule of thumb over the pauses (seconds) between reuses of a prefix.

    >>> rule_of_thumb_ttl([30.0] * 18 + [900.0, 1200.0])   # 2 in 20 between 5 and 60 minutes
    '1h'
    >>> rule_of_thumb_ttl([30.0] * 18 + [900.0, 4000.0, 5000.0])   # most long pauses > 1 h
    '5m'
    """
    if not gaps:
        return "5m"
    over_5m = [g for g in gaps if g > _FIVE_MINUTES]
    over_1h = [g for g in over_5m if g > _ONE_HOUR]
    if over_5m and len(over_1h) / len(over_5m) >= RULE_OF_THUMB_LONG_SHARE:
        return "5m"
    between = len(over_5m) - len(over_1h)
    return "1h" if between / len(gaps) > RULE_OF_THUMB_MID_SHARE else "5m"


def prefix_gaps(trace: Trace) -> list[float]:
    """Pauses between consecutive requests that share their static prefix (tools + system).

    Concurrent requests (same instant) count as one arrival: their zero gaps say nothing about
    the TTL.
    """
    last: dict[str, float] = {}
    gaps: list[float] = []
    for request in trace.requests:
        system = [m.content for m in request.messages if isinstance(m, SystemMessage)]
        key = content_hash([system, list(request.tools)])
        if key in last and request.time > last[key]:
            gaps.append(request.time - last[key])
        last[key] = request.time
    return gaps


def _rule_of_thumb(trace: Trace) -> RequestRule:
    return _marking(_tools_and_system, rule_of_thumb_ttl(prefix_gaps(trace)), automatic=True)


BASELINES: tuple[Strategy, ...] = (
    Strategy("none", "no cache markers", _marking(_nothing, "5m")),
    Strategy("system_5m", "5m marker at the end of the system prompt", _marking(_system, "5m")),
    Strategy(
        "last_message_5m",
        "5m marker on the last message (the 2025 AnthropicPromptCachingMiddleware)",
        _marking(_last_message, "5m"),
    ),
    Strategy(
        "litellm",
        "LiteLLM injection points: system + last user message, 5m",
        _marking(_system_and_last_user, "5m"),
    ),
    Strategy(
        "litellm_auto",
        "LiteLLM automatic injection: system + last turn, 5m",
        _marking(_system_and_last_turn, "5m"),
    ),
    Strategy(
        "always_1h",
        "1h at the end of tools, system and the last messages (max 4)",
        _marking(_everywhere, "1h"),
    ),
    Strategy(
        "auto_5m",
        "automatic caching: top-level cache_control, 5m",
        _marking(_nothing, "5m", automatic=True),
    ),
    Strategy(
        "auto_1h",
        "automatic caching: top-level cache_control, 1h",
        _marking(_nothing, "1h", automatic=True),
    ),
    Strategy(
        "middleware_5m",
        "2026 AnthropicPromptCachingMiddleware: last tool + system + top-level, 5m",
        _marking(_tools_and_system, "5m", automatic=True),
    ),
    Strategy(
        "middleware_1h",
        "2026 AnthropicPromptCachingMiddleware: last tool + system + top-level, 1h",
        _marking(_tools_and_system, "1h", automatic=True),
    ),
    Strategy(
        "rule_of_thumb",
        "middleware markers, TTL by Anthropic's rule of thumb over the trace (hindsight)",
        None,
        per_trace=_rule_of_thumb,
    ),
)
"""The peers' strategies, in report order."""

OURS = Strategy("ours", "ChatClaudeRelay with CachePlanner (MemoryStore, virtual clock)", rule=None)
"""The product: planned markers and TTLs."""

STRATEGIES: tuple[Strategy, ...] = (*BASELINES, OURS)

FIVE_MINUTE_BASELINES: tuple[str, ...] = (
    "system_5m",
    "last_message_5m",
    "litellm",
    "litellm_auto",
    "auto_5m",
    "middleware_5m",
)
"""The baselines that only ever write 5-minute entries (the sparse-traffic target's yardstick)."""
