"""Claude's hard rules for cache markers, and the minimum-prefix rule with its safety margin.

Pure functions: no I/O, no clock, no environment.

* At most ``MAX_CACHE_MARKERS`` markers per request, the user's included.
* No 1h marker after a 5m marker in prefix order (tools, system, messages).
* Automatic caching: a top-level ``cache_control`` is one marker that Claude puts on the last
  block that can carry one (walking back past thinking and empty text blocks; none: no marker).
  It takes one of the four slots, unless that block already carries a marker with the same TTL
  (then it does nothing); a marker there with the other TTL is a 400. It obeys the TTL order
  like any marker (``automatic_marker``).
* No marker on a thinking block, a redacted thinking block or an empty text block.
* A read looks back at most ``LOOKBACK_BLOCKS`` lookback positions from a marker (the marker's
  own boundary and those up to 19 positions before it). Each block is one position, except that
  a run of consecutive ``tool_use`` blocks is one, and so is a run of consecutive
  ``tool_result`` blocks (``lookback_positions``): parallel tool calls and their results do not
  push an earlier entry out of reach.
* A prefix shorter than the model's minimum is silently not cached. The planner marks a prefix
  only when its *calibrated* estimate reaches the minimum, rounded up by a small margin
  (``reaches_minimum``): a marker on a prefix that turns out too short costs only its slot,
  while a prefix left unmarked because the estimate was a little low loses every read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.request import (
    MAX_CACHE_MARKERS,
    TTL_SECONDS,
    UNMARKABLE_TYPES,
    Block,
    CacheControl,
    ClaudeRequest,
    Position,
)

__all__ = [
    "MAX_CACHE_MARKERS",
    "LOOKBACK_BLOCKS",
    "LOOKBACK_RUN_KINDS",
    "lookback_positions",
    "within_lookback",
    "TTL_SECONDS",
    "UNCALIBRATED_MARGIN",
    "CALIBRATED_MARGIN",
    "MAX_LEARNED_MINIMUM",
    "validate_user_markers",
    "user_markers",
    "AutomaticMarker",
    "automatic_marker",
    "fixed_markers",
    "automatic_equivalent",
    "ttl_order_valid",
    "minimum_margin",
    "reaches_minimum",
    "MinimumBounds",
    "learn_minimum",
    "effective_minimum",
]

LOOKBACK_BLOCKS = 20
"""A marker at block ``m`` can read an entry written at block ``e`` when ``e <= m`` and
``positions[m] - positions[e] < 20`` (``lookback_positions``, ``within_lookback``)."""
LOOKBACK_RUN_KINDS = frozenset({"tool_use", "tool_result"})
"""Block types whose consecutive runs count as one lookback position each."""

UNCALIBRATED_MARGIN = 0.10
"""Rounding up near the minimum while the estimate rests on priors (under 3 observations)."""
CALIBRATED_MARGIN = 0.04
"""Rounding up near the minimum once calibrated (the calibration is good to a few percent)."""
CALIBRATED_AFTER = 3.0
MAX_LEARNED_MINIMUM = 8192
"""An unknown model's learned minimum is never raised above this (twice the largest known)."""


def lookback_positions(kinds: Sequence[str]) -> list[int]:
    """Each block's lookback position, from the block types in prefix order.

    Every block is one position, except that consecutive blocks of the same type in
    ``LOOKBACK_RUN_KINDS`` share one: a run of ``tool_use`` blocks (parallel tool calls) is one
    position, and so is a run of ``tool_result`` blocks.

    >>> lookback_positions(["tool", "text", "tool_use", "tool_use", "tool_result", "tool_result"])
    [0, 1, 2, 2, 3, 3]
    >>> lookback_positions(["tool_result", "text", "tool_result"])
    [0, 1, 2]
    """
    out: list[int] = []
    position, previous = -1, ""
    for kind in kinds:
        if kind not in LOOKBACK_RUN_KINDS or kind != previous:
            position += 1
        out.append(position)
        previous = kind
    return out


def within_lookback(positions: Sequence[int], marker: int, entry: int) -> bool:
    """Whether a marker at block ``marker`` can read an entry written at block ``entry``.

    >>> positions = lookback_positions(["text"] + ["tool_use"] * 30 + ["tool_result"] * 30)
    >>> within_lookback(positions, 60, 0), within_lookback(positions, 0, 60)
    (True, False)
    """
    return marker >= entry and positions[marker] - positions[entry] < LOOKBACK_BLOCKS


def user_markers(request: ClaudeRequest) -> Iterator[tuple[Position, CacheControl, bool]]:
    """The markers present in a request: ``(position, marker, markable)`` in prefix order.

    Walks the request directly (no hashing), so it is cheap on any request.
    """
    for i, tool in enumerate(request.tools):
        if tool.cache_control is not None:
            yield Position("tools", i), tool.cache_control, True
    for i, block in enumerate(request.system):
        if block.cache_control is not None:
            yield Position("system", i), block.cache_control, block.markable
    for m, message in enumerate(request.messages):
        for j, block in enumerate(message.content):
            if block.cache_control is not None:
                yield Position("messages", m, j), block.cache_control, block.markable


def _describe(block: Block) -> str:
    if block.type in UNMARKABLE_TYPES:
        return f"a {block.type} block"
    return "an empty text block"


def _block_at(request: ClaudeRequest, position: Position) -> Block:
    if position.section == "system":
        return request.system[position.index]
    return request.messages[position.index].content[position.part]


class AutomaticMarker(NamedTuple):
    """Where Claude puts a request's top-level marker (automatic caching).

    Attributes:
        position: the block it lands on (the last block that can carry a marker).
        flat_index: that block's index in prefix order (tools, system, messages, as
            ``ClaudeRequest.flat_blocks``).
        marker: the top-level marker.
        adds_slot: ``False`` when the block already carries a marker with the same TTL (the
            top-level marker then does nothing); with another TTL the request is invalid.
    """

    position: Position
    flat_index: int
    marker: CacheControl
    adds_slot: bool


def _last_markable(request: ClaudeRequest) -> tuple[Position, int, CacheControl | None] | None:
    """The last block that can carry a marker, walking back: ``(position, index, marker)``."""
    start = len(request.tools) + len(request.system)
    sizes = [len(m.content) for m in request.messages]
    index = start + sum(sizes)
    for m in range(len(request.messages) - 1, -1, -1):
        for j in range(sizes[m] - 1, -1, -1):
            index -= 1
            block = request.messages[m].content[j]
            if block.markable:
                return Position("messages", m, j), index, block.cache_control
    for i in range(len(request.system) - 1, -1, -1):
        block = request.system[i]
        if block.markable:
            return Position("system", i), len(request.tools) + i, block.cache_control
    if request.tools:
        last = len(request.tools) - 1
        return Position("tools", last), last, request.tools[last].cache_control
    return None


def automatic_marker(request: ClaudeRequest) -> AutomaticMarker | None:
    """Where Claude would put the request's top-level marker, if it has one.

    ``None`` when there is no top-level marker or no block can carry one (no caching then).

    >>> from langchain_claude_relay.request import Message
    >>> text = Block("text", {"text": "hello"})
    >>> thinking = Block("thinking", {"thinking": "...", "signature": "s"})
    >>> request = ClaudeRequest("m", system=(text,), messages=(
    ...     Message("user", (text,)), Message("assistant", (text, thinking))),
    ...     cache_control=CacheControl("1h"))
    >>> str(automatic_marker(request).position)   # walks back past the thinking block
    'messages[1].content[0]'
    """
    if request.cache_control is None:
        return None
    last = _last_markable(request)
    if last is None:
        return None
    position, index, existing = last
    adds = existing is None or existing.ttl != request.cache_control.ttl
    return AutomaticMarker(position, index, request.cache_control, adds)


def fixed_markers(request: ClaudeRequest) -> dict[int, CacheControl]:
    """The markers the planner must keep, by flat index: the user's, and the automatic one.

    The automatic marker counts where Claude puts it (``automatic_marker``), so the planner has
    one slot fewer and never plans a marker on that block. Validate first
    (``validate_user_markers``).
    """
    index_of: dict[Position, int] = {}
    offset = len(request.tools) + len(request.system)
    for m, message in enumerate(request.messages):
        for j in range(len(message.content)):
            index_of[Position("messages", m, j)] = offset
            offset += 1
    fixed: dict[int, CacheControl] = {}
    for position, marker, _markable in user_markers(request):
        if position.section == "tools":
            fixed[position.index] = marker
        elif position.section == "system":
            fixed[len(request.tools) + position.index] = marker
        else:
            fixed[index_of[position]] = marker
    automatic = automatic_marker(request)
    if automatic is not None and automatic.adds_slot:
        fixed[automatic.flat_index] = automatic.marker
    return dict(sorted(fixed.items()))


def automatic_equivalent(
    request: ClaudeRequest, markers: dict[Position, CacheControl]
) -> CacheControl | None:
    """The top-level marker that does exactly what ``markers`` do, if one does.

    A top-level marker can only ever mean "one marker on the last block that can carry one", so
    it is equivalent to a set of markers only when that set is exactly that one marker. The
    planner never prefers it to the explicit marker (same bytes cached, same bill, but fewer
    relays keep it and the legacy Bedrock integration refuses it); this is for a relay that
    drops block markers but keeps the top-level field, where it is the only cache left.

    >>> from langchain_claude_relay.request import Message
    >>> request = ClaudeRequest("m", messages=(Message("user", (Block("text", {"text": "q"}),)),))
    >>> automatic_equivalent(request, {Position("messages", 0, 0): CacheControl("1h")})
    CacheControl(ttl='1h', explicit_ttl=True)
    >>> automatic_equivalent(request, {}) is None
    True
    """
    if len(markers) != 1:
        return None
    last = _last_markable(request)
    ((position, marker),) = markers.items()
    return marker if last is not None and last[0] == position else None


def validate_user_markers(request: ClaudeRequest) -> None:
    """Check the markers the user placed, before anything is sent (also with caching off).

    The top-level marker (automatic caching) counts as one more where Claude would put it.

    Args:
        request: the request as the user built it.

    Raises:
        RequestValidationError: more than 4 markers (the top-level one included), a 1h marker
            after a 5m one, a top-level marker whose TTL differs from an explicit marker on the
            last block, or a marker on a thinking block or an empty text block; the message
            names the positions and says how to fix it.
    """
    found = list(user_markers(request))
    for position, _marker, markable in found:
        if not markable:
            what = _describe(_block_at(request, position))
            msg = (
                f"cache_control on {position}, which is {what}: Claude does not accept a cache "
                "marker there. Remove it, or put it on the nearest text, image, document, "
                "tool_use or tool_result block before it."
            )
            raise RequestValidationError(msg)
    automatic = automatic_marker(request)
    if automatic is not None:
        explicit = next((m for p, m, _k in found if p == automatic.position), None)
        if explicit is not None and explicit.ttl != automatic.marker.ttl:
            msg = (
                f"the top-level cache_control (ttl='{automatic.marker.ttl}') would go on "
                f"{automatic.position}, which already has cache_control ttl='{explicit.ttl}': "
                "Claude refuses the two TTLs on one block. Give them the same ttl, or drop one."
            )
            raise RequestValidationError(msg)
        if automatic.adds_slot:
            found.append((automatic.position, automatic.marker, True))
            found.sort(key=lambda item: _order(item[0]))
    if len(found) > MAX_CACHE_MARKERS:
        where = ", ".join(
            f"{p} (top-level cache_control)" if automatic and p == automatic.position else str(p)
            for p, _m, _k in found
        )
        msg = (
            f"{len(found)} cache_control markers ({where}): Claude allows at most "
            f"{MAX_CACHE_MARKERS} per request, and a top-level cache_control (automatic "
            f"caching) takes one. Remove {len(found) - MAX_CACHE_MARKERS}, or remove them all "
            "and let the cache planner place them (cache='auto')."
        )
        raise RequestValidationError(msg)
    first_5m: Position | None = None
    for position, marker, _markable in found:
        if marker.ttl == "5m" and first_5m is None:
            first_5m = position
        elif marker.ttl == "1h" and first_5m is not None:
            msg = (
                f"cache_control ttl='1h' on {_named(position, automatic)} comes after ttl='5m' "
                f"on {_named(first_5m, automatic)}: every 1h marker must come before every 5m "
                "marker in prefix order (tools, system, messages). Make "
                f"{first_5m} ttl='1h' or {position} ttl='5m'."
            )
            raise RequestValidationError(msg)


def _order(position: Position) -> tuple[int, int, int]:
    section = ("tools", "system", "messages").index(position.section)
    return section, position.index, position.part


def _named(position: Position, automatic: AutomaticMarker | None) -> str:
    if automatic is not None and automatic.adds_slot and position == automatic.position:
        return f"{position} (the top-level cache_control lands there)"
    return str(position)


def ttl_order_valid(ttls: Sequence[str]) -> bool:
    """Whether TTLs in prefix order put every ``"1h"`` before every ``"5m"``.

    >>> ttl_order_valid(["1h", "1h", "5m"]), ttl_order_valid(["5m", "1h"])
    (True, False)
    """
    seen_5m = False
    for ttl in ttls:
        if ttl == "5m":
            seen_5m = True
        elif seen_5m:
            return False
    return True


def minimum_margin(calibration_observations: float) -> float:
    """The rounding-up margin near the minimum: wider while the estimate is uncalibrated."""
    if calibration_observations < CALIBRATED_AFTER:
        return UNCALIBRATED_MARGIN
    return CALIBRATED_MARGIN


def reaches_minimum(estimate: float, minimum: int, margin: float) -> bool:
    """Whether a calibrated prefix estimate counts as reaching the minimum.

    >>> reaches_minimum(940, 1024, 0.10), reaches_minimum(900, 1024, 0.10)
    (True, False)
    """
    return estimate * (1.0 + margin) >= minimum


@dataclass(frozen=True)
class MinimumBounds:
    """What usage taught about an unknown model's minimum, in real tokens.

    Attributes:
        above: the largest marked prefix that was not cached (the minimum is above it).
        at_most: the smallest prefix seen cached (the minimum is at most that).
    """

    above: float | None = None
    at_most: float | None = None


def learn_minimum(bounds: MinimumBounds, prefix_tokens: float, cached: bool) -> MinimumBounds:
    """Fold in one marked prefix of ``prefix_tokens`` real tokens that was (not) cached.

    >>> learn_minimum(MinimumBounds(), 700, cached=False)
    MinimumBounds(above=700, at_most=None)
    """
    if cached:
        at_most = prefix_tokens if bounds.at_most is None else min(bounds.at_most, prefix_tokens)
        return MinimumBounds(bounds.above, at_most)
    above = prefix_tokens if bounds.above is None else max(bounds.above, prefix_tokens)
    return MinimumBounds(above, bounds.at_most)


def effective_minimum(
    table_minimum: int,
    *,
    known: bool,
    override: int | None = None,
    learned: MinimumBounds | None = None,
) -> int:
    """The minimum the planner works with.

    A user override wins. A model in the table keeps its published minimum. For an unknown
    model, the lowest value consistent with what usage taught: above the largest prefix seen
    uncached, by ``CALIBRATED_MARGIN`` so that the same prefix, estimated a little high, is not
    marked again (the planner then applies no further margin), but never above the smallest
    prefix seen cached (proof beats absence: a relay that drops markers also looks "uncached"),
    and never above ``MAX_LEARNED_MINIMUM``.

    >>> effective_minimum(512, known=False, learned=MinimumBounds(above=1500, at_most=2100))
    1562
    """
    if override is not None:
        return int(override)
    if known or learned is None:
        return table_minimum
    minimum = table_minimum
    if learned.above is not None:
        minimum = max(minimum, math.ceil((int(learned.above) + 1) * (1 + CALIBRATED_MARGIN)))
    if learned.at_most is not None:
        minimum = min(minimum, int(learned.at_most))
    return min(minimum, MAX_LEARNED_MINIMUM)
