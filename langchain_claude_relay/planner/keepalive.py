"""Keep-alive requests: when one pays, what it costs, and the request it sends. Pure functions.

A keep-alive re-sends a cached prefix just before its 5-minute entry expires: Claude reads it
(at the model's read price, 0.05x input on Opus 5.5) and restarts its TTL, and answers nothing
(``max_tokens: 0`` on the native APIs, 1 on relays). It pays when the prefix is likely to come
back after the entry would have expired but before a rewrite would have been cheaper.

**The decision** (``ping_decisions``) is an optimal-stopping programme over the 5-minute
boundaries after the entry was written, on ``S[k]``, the chance that the prefix has not come
back within ``k`` windows (``followup.survival``): at boundary ``k``, stopping costs
``(S[k] - S[12]) * loss`` (every return within the hour rewrites what expired) and one more
keep-alive costs ``S[k] * ping`` (paid only if nothing came back yet) plus what is best from
boundary ``k + 1``. It pings while that is cheaper; it stops at the hour. The chat model's
scheduler asks again at each boundary, so a keep-alive is cancelled the moment the follow-up
stops being likely, and also when the follow-up arrives (it reads the entry itself).

**At plan time** (``bridge_cost``), the same programme prices a 5-minute marker's return after
more than 5 minutes as kept alive (pings, then a read) instead of rewritten, so the TTL choice
weighs "5m with keep-alives" against "1h" and against "5m, let it expire" (``ttl.future_cost``).

**The request** (``keepalive_request``): the planned request cut after the target marker's
message (or, for a target in the tools or the system prompt, those plus a one-character user
turn), with the markers up to the target and no top-level marker. It must read exactly what the
real request cached, so a cut that would change the messages' cache key (images only in the
cut part) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from langchain_claude_relay.planner.followup import BOUNDARIES, WINDOW
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    CacheTTL,
    ClaudeRequest,
    Message,
    Position,
)

__all__ = [
    "KeepAlive",
    "pingable",
    "ping_decisions",
    "keep_alive_value",
    "bridge_cost",
    "keepalive_request",
    "PING_TEXT",
]

PING_TEXT = "."
"""The user turn a keep-alive of the tools or the system prompt ends with."""


@dataclass(frozen=True)
class KeepAlive:
    """A prefix worth keeping warm after a response, as the planner advises it.

    Attributes:
        prefix_hash: the target entry's prefix hash (a request carrying it cancels the advice:
            that request reads the entry itself).
        position: the target marker's block.
        ttl: the entry's TTL (keep-alives are advised for ``"5m"`` entries).
        written_at: when the entry was written or last read (the request's start, planner clock).
        tokens: real input tokens a keep-alive reads (the prefix through the target).
        ping_cost: a keep-alive's input cost (USD; relative units for an unpriced model).
        loss_per_token: what a token costs more when the prefix comes back after the entry
            expired (the 5m write's premium over a read).
        held_tokens: the prefix tokens a 1-hour entry keeps anyway (not lost on expiry).
        survival: ``S[k]`` for ``k = 0..12``: the chance of no return within ``k`` windows.
        refreshes: ``(prefix hash, TTL, prefix tokens)`` of each marker a keep-alive reads (the
            target and the markers before it).
        lineage_key: the conversation's lineage record (``None``: a static target).
        model: the model id.
        priced: whether ``ping_cost`` and ``loss`` are in USD.
    """

    prefix_hash: str
    position: Position
    ttl: CacheTTL
    written_at: float
    tokens: int
    ping_cost: float
    loss_per_token: float
    held_tokens: int
    survival: tuple[float, ...]
    refreshes: tuple[tuple[str, CacheTTL, int], ...]
    lineage_key: str | None
    model: str
    priced: bool = True

    def expires_at(self, pings: int = 0) -> float:
        """When the entry expires after ``pings`` keep-alives sent at their boundaries."""
        return self.written_at + WINDOW * (pings + 1)

    def loss(self, refreshed_tokens: int = 0) -> float:
        """What letting the entry expire costs when the prefix comes back.

        Args:
            refreshed_tokens: prefix tokens another request has read since (they are fresh:
                only the rest would be written again).
        """
        kept = max(self.held_tokens, refreshed_tokens)
        return self.loss_per_token * max(0, self.tokens - kept)

    def should_ping(
        self, boundary: int, extra_cost: float = 0.0, refreshed_tokens: int = 0
    ) -> bool:
        """Whether to send the keep-alive due at ``boundary`` (1 = the first expiry).

        Args:
            boundary: which 5-minute boundary after ``written_at``.
            extra_cost: what the way in adds to each keep-alive (its output token on relays).
            refreshed_tokens: see ``loss``.
        """
        if boundary < 1 or boundary >= BOUNDARIES:
            return False
        loss = self.loss(refreshed_tokens)
        return ping_decisions(self.survival, self.ping_cost + extra_cost, loss, boundary)[0]


def ping_decisions(
    survival: Sequence[float], ping: float, loss: float, start: int = 1
) -> list[bool]:
    """Whether to keep the entry alive at each boundary ``start..11`` (the optimal policy).

    Args:
        survival: ``S[0..12]``.
        ping: one keep-alive's cost.
        loss: the cost of a return that finds the entry expired (over a read).
        start: the first boundary to decide.

    Returns:
        One decision per boundary from ``start`` to 11, assuming every earlier one pinged.

    >>> from langchain_claude_relay.planner.followup import PRIOR_GAPS, survival
    >>> ping_decisions(survival(PRIOR_GAPS), ping=0.05, loss=1.2)[:3]
    [True, True, True]
    >>> ping_decisions(survival(PRIOR_GAPS), ping=1.0, loss=1.2)[:3]
    [False, False, False]
    """
    s = list(survival) + [0.0] * (BOUNDARIES + 1 - len(survival))
    best_after = 0.0  # U[k + 1]
    decisions: list[bool] = []
    for k in range(BOUNDARIES - 1, start - 1, -1):
        stop = max(0.0, s[k] - s[BOUNDARIES]) * loss
        keep = s[k] * ping + best_after
        decisions.append(keep < stop)
        best_after = min(stop, keep)
    decisions.reverse()
    return decisions


def keep_alive_value(survival: Sequence[float], ping: float, loss: float) -> float:
    """What the optimal keep-alive policy saves from the first boundary on, against none.

    >>> from langchain_claude_relay.planner.followup import PRIOR_GAPS, survival
    >>> keep_alive_value(survival(PRIOR_GAPS), 0.05, 1.2) > 0.0
    True
    """
    s = list(survival) + [0.0] * (BOUNDARIES + 1 - len(survival))
    never = max(0.0, s[1] - s[BOUNDARIES]) * loss
    return never - _policy_cost(s, ping, loss)


def _policy_cost(s: Sequence[float], ping: float, loss: float) -> float:
    best_after = 0.0
    for k in range(BOUNDARIES - 1, 0, -1):
        stop = max(0.0, s[k] - s[BOUNDARIES]) * loss
        best_after = min(stop, s[k] * ping + best_after)
    return best_after


def bridge_cost(
    survival: Sequence[float], read: float, write_5m: float, ping: float | None = None
) -> float:
    """Expected cost per token of a return after more than 5 minutes, kept alive as it pays.

    The keep-alives sent (also for returns that never come within the hour) and the return's
    read, or its rewrite once the keep-alives stopped, over the returns between 5 minutes and
    the hour: at most ``write_5m`` (no keep-alive), at least ``read``.

    Args:
        survival: ``S[0..12]`` of the prefix's returns.
        read: the read price per token.
        write_5m: the 5-minute write price per token.
        ping: what one keep-alive costs per token at stake (default ``read``); more when it
            also reads a prefix that does not depend on it (a conversation's keep-alive reads
            the system prompt too, which other conversations keep warm anyway).

    Returns:
        The price per token of such a return (``write_5m`` when none is expected).

    >>> from langchain_claude_relay.planner.followup import PRIOR_GAPS, survival
    >>> 0.1 < bridge_cost(survival(PRIOR_GAPS), 0.1, 1.25) < 1.25
    True
    """
    s = list(survival) + [0.0] * (BOUNDARIES + 1 - len(survival))
    mid = s[1] - s[BOUNDARIES]
    if mid <= 1e-12:
        return write_5m
    per_ping = read if ping is None else ping
    policy = _policy_cost(s, per_ping, write_5m - read)  # pings + premiums of the rewrites
    return min(write_5m, read + policy / mid)


def pingable(request: ClaudeRequest, position: Position) -> bool:
    """Whether ``keepalive_request(request, position)`` has a request to send (cheaply).

    >>> pingable(ClaudeRequest("claude-opus-5-5", messages=(
    ...     Message("user", (Block("text", {"text": "q"}),)),)), Position("messages", 0))
    True
    """
    if position.section != "messages":
        return True
    if request.messages[position.index].role != "user":
        return False

    def images(messages: Sequence[Message]) -> bool:
        return any(block.type == "image" for message in messages for block in message.content)

    cut = position.index + 1  # the cut keeps the messages' cache key (images present or not)
    return images(request.messages[:cut]) or not images(request.messages[cut:])


def keepalive_request(
    request: ClaudeRequest, position: Position, ttl: CacheTTL | None = None
) -> ClaudeRequest | None:
    """The request a keep-alive of the marker at ``position`` sends (markers included).

    Args:
        request: the request as sent (with its markers).
        position: the target marker's block.
        ttl: the target entry's TTL (``KeepAlive.ttl``), for its marker in the keep-alive
            (``None``: as in the request). A 5m entry may carry a 1h label in the request
            that read it (it sat before a 1h marker); were the entry gone after all, the
            keep-alive would write it for an hour at the 1h price. The target is the
            keep-alive's last marker, so a 5m label keeps the order valid.

    Returns:
        The request, or ``None`` when no valid keep-alive reads exactly that prefix (a target
        in an assistant turn, or a cut that changes the messages' cache key).

    >>> from langchain_claude_relay.request import CacheControl
    >>> marked = ClaudeRequest("claude-opus-5-5", system=(Block("text", {"text": "doc"}),),
    ...     messages=(Message("user", (Block("text", {"text": "q"}),)),)).with_markers(
    ...     {Position("system", 0): CacheControl("5m")})
    >>> ping = keepalive_request(marked, Position("system", 0))
    >>> [b.data["text"] for m in ping.messages for b in m.content]
    ['.']
    >>> [(str(p), m.ttl) for p, m in ping.markers().items()]
    [('system[0]', '5m')]
    """
    keep: dict[Position, CacheControl | None] = {
        p: None for p in request.markers() if _order(p) > _order(position)
    }
    if ttl is not None:
        keep[position] = CacheControl(ttl)
    marked = replace(request.with_markers(keep), cache_control=None)
    if position.section == "messages":
        if request.messages[position.index].role != "user":
            return None
        cut = replace(marked, messages=marked.messages[: position.index + 1])
        if cut.messages_context_hash() != request.messages_context_hash():
            return None
        return cut
    ping = (Message("user", (Block("text", {"text": PING_TEXT}),)),)
    if position.section == "tools":
        return replace(
            marked,
            tools=marked.tools[: position.index + 1],
            system=(),
            messages=ping,
            tool_choice=None,
            thinking=None,
        )
    return replace(
        marked,
        system=marked.system[: position.index + 1],
        messages=ping,
        tool_choice=None,
        thinking=None,
    )


def _order(position: Position) -> tuple[int, int, int]:
    section = {"tools": 0, "system": 1, "messages": 2}[position.section]
    return section, position.index, position.part
