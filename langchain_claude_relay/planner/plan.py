"""The plan the planner returns, and the observation that reconciles it with real usage.

``CachePlan`` is frozen data: the breakpoints (the user's and the planner's), the per-block token
estimates behind them, the expected cost against no caching, and stability warnings.
``explain()`` renders it as a table, ``to_dict()`` as the JSON summary that goes into LangChain's
``response_metadata["cache_plan"]``. ``reconcile()`` compares each breakpoint's predicted outcome
(read, write, nothing) with what the usage reports and names the likely reason for a miss.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner.reuse import LineageEntry
from langchain_claude_relay.planner.rules import (
    AutomaticMarker,
    automatic_marker,
    user_markers,
    validate_user_markers,
)
from langchain_claude_relay.request import CacheControl, CacheTTL, ClaudeRequest, Position
from langchain_claude_relay.usage import NormalizedUsage

__all__ = [
    "Outcome",
    "Breakpoint",
    "PlannedBlock",
    "SiteTrace",
    "PlanTrace",
    "CachePlan",
    "trace_of",
    "UsageLike",
    "BreakpointOutcome",
    "Observation",
    "reconcile",
    "write_split_hints",
]

Outcome = Literal["read", "write", "none"]
MISS_REASONS = (
    "expired",
    "below minimum",
    "prefix changed",
    "not yet written (concurrent)",
    "relay dropped marker?",
    "new prefix",
    "usage not reported",
)
_EXPLAIN_ROWS = 60


@dataclass(frozen=True)
class Breakpoint:
    """One cache marker of the plan.

    Attributes:
        position: where it sits.
        ttl: ``"5m"`` or ``"1h"``.
        estimated_prefix_tokens: calibrated tokens of the prefix it caches (rounded up).
        reason: why it is there (and why this TTL).
        source: ``"user"`` (kept exactly as given) or ``"planner"``.
        predicted: what this request is expected to do at it: read, write, or nothing (a user
            marker below the minimum).
        prefix_hash: the hash of the prefix it caches (``ClaudeRequest.prefix_hashes()``).
    """

    position: Position
    ttl: CacheTTL
    estimated_prefix_tokens: int
    reason: str
    source: Literal["user", "planner"]
    predicted: Outcome = "write"
    prefix_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "position": str(self.position),
            "ttl": self.ttl,
            "estimated_prefix_tokens": self.estimated_prefix_tokens,
            "reason": self.reason,
            "source": self.source,
            "predicted": self.predicted,
            "prefix_hash": self.prefix_hash,
        }


class PlannedBlock(NamedTuple):
    """One block's estimate: raw tiktoken-based count, calibrated count, calibrated prefix."""

    position: Position
    kind: str
    raw_tokens: float
    tokens: float
    prefix_tokens: float


class SiteTrace(NamedTuple):
    """What ``observe`` needs about one candidate site (marked or not)."""

    flat_index: int
    kind: str
    prefix_hash: str
    templates: tuple[str, ...]
    had_record: bool
    cached_until: float
    changed: bool
    ttl: str | None
    source: str


@dataclass(frozen=True)
class PlanTrace:
    """Planner bookkeeping carried from ``plan`` to ``observe`` (hashes and numbers only)."""

    planned_at: float
    family: str
    known_model: bool
    features: tuple[float, ...]
    sites: tuple[SiteTrace, ...]
    read_index: int
    lineage_key: str | None = None
    lineage: tuple[LineageEntry, ...] = ()
    lineage_matches: tuple[LineageEntry, ...] = ()
    stability_key: str | None = None
    stability: Mapping[str, list[float]] = field(default_factory=dict)
    concurrent: frozenset[str] = frozenset()
    follow_tool: int = 0  # the tools whose results end the request (``followup.tool_key``)
    follow_key: int = 0  # the conversation's follow-up gaps (``history.follow_up_template``)
    keep_warm: bool = False  # ``observe`` learns the follow-up's gaps (planned for keep-alives,
    # or to learn for them: ``CachePlanner.plan``'s ``keep_warm`` or ``learn_follow_ups``)
    held_1h: tuple[int, float] = (-1, 0.0)  # the deepest prefix a 1h entry holds for the
    # follow-up (flat index, estimated tokens; -1: none): a 5m entry above it loses only the rest


@dataclass(frozen=True)
class CachePlan:
    """Where the cache markers go for one request, and why.

    Attributes:
        request: the request planned (as given: markers are not applied to it).
        model: the model id.
        breakpoints: every marker in prefix order, the user's included.
        blocks: per-block estimates in prefix order.
        total_estimated_tokens: calibrated estimate of the whole input.
        predicted_read_tokens: tokens expected to be read from the cache.
        expected_cost_usd: expected input cost of this call with the plan (``None``: unpriced).
        uncached_cost_usd: input cost with no caching at all (``None``: unpriced).
        min_cache_tokens: the model's minimum cacheable prefix used.
        min_margin: the rounding-up margin near the minimum.
        ttl_policy: ``"auto"``, ``"5m"`` or ``"1h"``.
        encoding: the token encoding used (``"chars"`` for the character estimate).
        calibration_observations: how many usages the calibration rests on (decayed).
        warnings: prefix-stability warnings (also issued once each with ``warnings.warn``).
    """

    request: ClaudeRequest = field(compare=False, repr=False)
    model: str
    breakpoints: tuple[Breakpoint, ...]
    blocks: tuple[PlannedBlock, ...] = field(repr=False)
    total_estimated_tokens: int
    predicted_read_tokens: int
    expected_cost_usd: float | None
    uncached_cost_usd: float | None
    min_cache_tokens: int
    min_margin: float
    ttl_policy: str
    encoding: str
    calibration_observations: float
    warnings: tuple[str, ...] = ()
    trace: PlanTrace | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def block_index(self) -> Mapping[Position, int]:
        """Each block's position in ``blocks`` (the flat index sites and lineages use)."""
        return {block.position: i for i, block in enumerate(self.blocks)}

    @property
    def one_hour_share(self) -> float | None:
        """The estimated share of the input up to the last 1h marker (``None`` without one).

        When the request's markers mix 1h and 5m (a top-level 5m marker included), what
        ``usage.normalize_usage`` needs to split writes a relay reports without their TTLs.
        """
        ones = [bp.estimated_prefix_tokens for bp in self.breakpoints if bp.ttl == "1h"]
        if not ones or self.total_estimated_tokens <= 0:
            return None
        return min(1.0, max(ones) / self.total_estimated_tokens)

    def expected_usage(self, output_tokens: int = 0) -> NormalizedUsage:
        """What this call is expected to bill, by the plan: its read, its writes by TTL, the rest.

        For a call whose usage never came (a stream stopped before its end): Claude bills its
        input all the same.

        Args:
            output_tokens: the output tokens to count (e.g. the chunks received).
        """
        counted = self.predicted_read_tokens
        writes = {"5m": 0, "1h": 0}
        for bp in self.breakpoints:
            if bp.predicted == "write" and bp.estimated_prefix_tokens > counted:
                writes[bp.ttl] += bp.estimated_prefix_tokens - counted
                counted = bp.estimated_prefix_tokens
        total = max(self.total_estimated_tokens, counted)
        return NormalizedUsage(
            input_tokens=total - counted,
            cache_read_tokens=self.predicted_read_tokens,
            cache_write_5m_tokens=writes["5m"],
            cache_write_1h_tokens=writes["1h"],
            output_tokens=max(0, int(output_tokens)),
        )

    def markers(self) -> dict[Position, CacheControl]:
        """Every marker to apply with ``request.with_markers(...)`` (the user's unchanged).

        The request's top-level marker (automatic caching) stays top-level: Claude places it,
        so its breakpoint is not written onto the block.
        """
        out: dict[Position, CacheControl] = {}
        user = {pos: marker for pos, marker, _ok in user_markers(self.request)}
        automatic = automatic_marker(self.request)
        for bp in self.breakpoints:
            if bp.source == "user" and bp.position in user:
                out[bp.position] = user[bp.position]
            elif bp.source == "user" and automatic and bp.position == automatic.position:
                continue
            else:
                out[bp.position] = CacheControl(bp.ttl)
        return out

    def apply(self, request: ClaudeRequest | None = None) -> ClaudeRequest:
        """The request with the plan's markers on it (``request`` defaults to the one planned).

        Args:
            request: the request planned, or one equal to it.

        Returns:
            A new request; the given one is not modified.
        """
        return (request if request is not None else self.request).with_markers(self.markers())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (for ``response_metadata["cache_plan"]``)."""
        return {
            "model": self.model,
            "breakpoints": [bp.to_dict() for bp in self.breakpoints],
            "total_estimated_tokens": self.total_estimated_tokens,
            "predicted_read_tokens": self.predicted_read_tokens,
            "expected_cost_usd": _usd(self.expected_cost_usd),
            "uncached_cost_usd": _usd(self.uncached_cost_usd),
            "min_cache_tokens": self.min_cache_tokens,
            "ttl_policy": self.ttl_policy,
            "encoding": self.encoding,
            "warnings": list(self.warnings),
        }

    def explain(self) -> str:
        """A readable table of the blocks, the markers and the expected cost."""
        marks = {bp.position: bp for bp in self.breakpoints}
        header = f"{'position':<28} {'kind':<12} {'raw':>8} {'calib':>8} {'prefix':>9}  marker"
        lines = [
            f"Cache plan for {self.model}: {len(self.breakpoints)} breakpoint(s), minimum "
            f"{self.min_cache_tokens} tokens (+{self.min_margin:.0%} margin), TTL policy "
            f"{self.ttl_policy}, tokens by {self.encoding} "
            f"{_calibration_words(self.calibration_observations)}",
            header,
            "-" * len(header),
        ]
        automatic = automatic_marker(self.request)
        if automatic is not None:
            lines.insert(1, _automatic_line(automatic))
            try:
                validate_user_markers(self.apply())
            except RequestValidationError as exc:
                lines.insert(
                    2,
                    "warning: with the top-level cache_control, Claude would refuse this plan: "
                    f"{exc}",
                )
        rows = list(self.blocks)
        keep = _rows_to_show(rows, marks)
        keep |= {i for i, r in enumerate(rows) if automatic and r.position == automatic.position}
        skipped = 0
        for i, block in enumerate(rows):
            if i not in keep:
                skipped += 1
                continue
            if skipped:
                lines.append(f"{'':<28} ... {skipped} block(s) without marker ...")
                skipped = 0
            bp = marks.get(block.position)
            marker = f"{bp.ttl} {bp.source}: {bp.reason}" if bp else ""
            if automatic is not None and block.position == automatic.position:
                marker = f"{marker} [top-level cache_control lands here]".strip()
            lines.append(
                f"{block.position!s:<28} {block.kind:<12} {block.raw_tokens:>8.0f} "
                f"{block.tokens:>8.0f} {block.prefix_tokens:>9.0f}  {marker}".rstrip()
            )
        if skipped:
            lines.append(f"{'':<28} ... {skipped} block(s) without marker ...")
        lines.append(
            f"total {self.total_estimated_tokens} tokens; expected cache read "
            f"{self.predicted_read_tokens} tokens"
        )
        if self.expected_cost_usd is not None and self.uncached_cost_usd is not None:
            lines.append(
                f"expected input cost ${self.expected_cost_usd:.6f} vs "
                f"${self.uncached_cost_usd:.6f} uncached "
                f"({_saving_words(self.uncached_cost_usd - self.expected_cost_usd)})"
            )
        else:
            lines.append(
                "expected cost: model has no published prices (decided on relative prices)"
            )
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def trace_of(plan: CachePlan, method: str) -> PlanTrace:
    """The plan's trace, which ``method`` of ``CachePlanner`` needs.

    Args:
        plan: a plan.
        method: the method asking (named in the error).

    Returns:
        ``plan.trace``.

    Raises:
        ValueError: if the plan has none (it was not made by ``CachePlanner.plan``).
    """
    if plan.trace is None:
        msg = f"{method}() needs a plan made by CachePlanner.plan() (this one has no trace)"
        raise ValueError(msg)
    return plan.trace


def _calibration_words(observations: float) -> str:
    """How much the calibration rests on: a decayed weight, shown as an approximate count.

    >>> _calibration_words(0.2), _calibration_words(2.9)
    ('not yet calibrated (model-table priors)', 'calibrated on ~3 recent usages')
    """
    if observations < 0.5:
        return "not yet calibrated (model-table priors)"
    count = round(observations)
    return f"calibrated on ~{count} recent usage{'' if count == 1 else 's'}"


def _saving_words(saved: float) -> str:
    """This call's expected saving, or what writing the cache costs extra (later reads repay it).

    >>> _saving_words(0.004)
    '$0.004000 saved this call'
    >>> _saving_words(-0.008526)
    '$0.008526 extra this call: writing the cache costs more than sending it plain; later reads repay it'
    """  # noqa: E501
    if saved >= 0:
        return f"${saved:.6f} saved this call"
    return (
        f"${-saved:.6f} extra this call: writing the cache costs more than sending it plain; "
        "later reads repay it"
    )


def _automatic_line(automatic: AutomaticMarker) -> str:
    ttl = automatic.marker.ttl
    if not automatic.adds_slot:
        return (
            f"automatic caching: top-level cache_control ttl={ttl} on {automatic.position}, which "
            "already carries the same marker (no extra slot)"
        )
    return (
        f"automatic caching: top-level cache_control ttl={ttl}: Claude puts it on "
        f"{automatic.position} (the last block that can carry one); it takes one of the 4 slots"
    )


def _rows_to_show(rows: list[PlannedBlock], marks: Mapping[Position, Breakpoint]) -> set[int]:
    if len(rows) <= _EXPLAIN_ROWS:
        return set(range(len(rows)))
    keep = {i for i, r in enumerate(rows) if r.position in marks}
    keep |= set(range(5)) | set(range(len(rows) - 5, len(rows)))
    return keep


def _usd(value: float | None) -> float | None:
    return None if value is None else round(value, 8)


class UsageLike(Protocol):
    """What ``observe`` reads from a usage (``langchain_claude_relay.usage.NormalizedUsage``)."""

    @property
    def input_tokens(self) -> int:
        """Plain (uncached) input tokens."""
        ...

    @property
    def cache_read_tokens(self) -> int:
        """Input tokens read from the cache."""
        ...

    @property
    def cache_write_5m_tokens(self) -> int:
        """Input tokens written with the 5-minute TTL."""
        ...

    @property
    def cache_write_1h_tokens(self) -> int:
        """Input tokens written with the 1-hour TTL."""
        ...


@dataclass(frozen=True)
class BreakpointOutcome:
    """One breakpoint, predicted against actual.

    Attributes:
        position: where it sat.
        ttl: its TTL.
        source: ``"user"`` or ``"planner"``.
        estimated_prefix_tokens: the plan's calibrated estimate.
        predicted: what the plan expected (read, write, none).
        actual: what the usage shows (read, write, none).
        miss_reason: why it was not read, where that can be told (see ``MISS_REASONS``).
        prefix_hash: the hash of the prefix it caches (numbers and hashes only, for the ledger).
    """

    position: Position
    ttl: str
    source: str
    estimated_prefix_tokens: int
    predicted: Outcome
    actual: Outcome
    miss_reason: str | None
    prefix_hash: str = ""

    @property
    def hit_predicted(self) -> bool:
        """Whether a read was predicted."""
        return self.predicted == "read"

    @property
    def hit(self) -> bool:
        """Whether it was read."""
        return self.actual == "read"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "position": str(self.position),
            "ttl": self.ttl,
            "source": self.source,
            "estimated_prefix_tokens": self.estimated_prefix_tokens,
            "predicted": self.predicted,
            "actual": self.actual,
            "hit_predicted": self.hit_predicted,
            "hit": self.hit,
            "miss_reason": self.miss_reason,
            "prefix_hash": self.prefix_hash,
        }


@dataclass(frozen=True)
class Observation:
    """A plan reconciled with the usage the response reported.

    Attributes:
        breakpoints: per breakpoint, predicted against actual.
        predicted_read_tokens: what the plan expected to read.
        actual_read_tokens: what was read.
        actual_write_tokens: what was written (5m + 1h).
        estimated_total_tokens: the plan's calibrated estimate of the whole input.
        actual_total_tokens: the real total input.
        calibration_updated: whether the usage was used for calibration (garbage is not).
        read_prefix: the prefix hash of the entry the read hit (``None``: nothing read): the
            block where the read ends, which may be no marker of this request (an earlier
            turn's tail, found by lookback).
    """

    breakpoints: tuple[BreakpointOutcome, ...]
    predicted_read_tokens: int
    actual_read_tokens: int
    actual_write_tokens: int
    estimated_total_tokens: int
    actual_total_tokens: int
    calibration_updated: bool
    read_prefix: str | None = None

    @property
    def estimate_error(self) -> float | None:
        """Relative error of the plan's total estimate (``estimate / actual - 1``)."""
        if self.actual_total_tokens <= 0:
            return None
        return self.estimated_total_tokens / self.actual_total_tokens - 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the ledger)."""
        return {
            "breakpoints": [b.to_dict() for b in self.breakpoints],
            "predicted_read_tokens": self.predicted_read_tokens,
            "actual_read_tokens": self.actual_read_tokens,
            "actual_write_tokens": self.actual_write_tokens,
            "estimated_total_tokens": self.estimated_total_tokens,
            "actual_total_tokens": self.actual_total_tokens,
            "calibration_updated": self.calibration_updated,
            "read_prefix": self.read_prefix,
        }


def read_point(plan: CachePlan, read: float, scale: float, floor: int = -1) -> str | None:
    """The prefix hash of the entry a read of ``read`` tokens hit (``None`` if it cannot tell).

    The entry ends at a block boundary where the read ends, at or after block ``floor`` (the
    deepest marker found read): the block whose rescaled prefix is nearest to it, among this
    plan's markers and the earlier turns it repeats (the entries it could hit) when one is
    within the estimate's slack, else among all blocks.
    """
    if read <= 0:
        return None
    hashes = plan.request.prefix_hashes()
    ends = [block.prefix_tokens * scale for block in plan.blocks]
    if not ends or len(ends) != len(hashes):
        return None
    known = {plan.block_index.get(bp.position, -1) for bp in plan.breakpoints}
    if plan.trace is not None:
        known |= {entry.index for entry in plan.trace.lineage_matches}
    start = max(0, min(floor, len(ends) - 1))
    slack = 0.05 * read + 8
    near = [i for i in known if start <= i < len(ends) and abs(ends[i] - read) <= slack]
    best = min(near or range(start, len(ends)), key=lambda i: (abs(ends[i] - read), -i))
    return hashes[best]


def actual_outcomes(
    prefixes: list[float],
    read: int,
    written: int,
    tolerance: float = 0.05,
    predicted: Sequence[str] | None = None,
) -> list[Outcome]:
    """Which markers were read, written or neither, from the usage totals.

    Args:
        prefixes: each marker's prefix in real tokens (the plan's estimate, rescaled so the
            total matches the real total), in prefix order.
        read: cache-read tokens.
        written: cache-write tokens.
        tolerance: relative slack for estimation error.
        predicted: each marker's prediction (``read`` or ``write``), if known.

    Returns:
        One outcome per marker: ``read`` up to the read point, ``write`` up to the end of the
        written part, ``none`` beyond it.

    When something was written, a marker just after the read point is nearer to the end of the
    write than the estimate's slack can tell (a conversation tail, a changed system prompt): its
    read band stops halfway between the read point and the end of the write. The whole band is
    kept for a marker the plan expected to be read, except the deepest one, which ends the write.

    >>> actual_outcomes([1000.0, 5000.0, 9000.0], read=5000, written=4000)
    ['read', 'read', 'write']
    >>> actual_outcomes([5000.0, 5065.0], read=5000, written=65)  # a small tail write
    ['read', 'write']
    >>> actual_outcomes([2415.0, 2436.0], read=2403, written=20, predicted=["read", "write"])
    ['read', 'write']
    >>> actual_outcomes([3000.0, 3050.0, 3090.0], read=3000, written=90,  # system changed
    ...                 predicted=["read", "write", "write"])
    ['read', 'write', 'write']
    """
    out: list[Outcome] = []
    last = len(prefixes) - 1
    for i, prefix in enumerate(prefixes):
        slack = tolerance * prefix + 8
        expected_read = predicted is None or predicted[i] == "read"
        whole_band = written == 0 or (expected_read and i != last)
        read_slack = slack if whole_band else min(slack, written / 2)
        if read > 0 and prefix <= read + read_slack:
            out.append("read")
        elif written > 0 and prefix <= read + written + slack:
            out.append("write")
        else:
            out.append("none")
    return out


def reconcile(plan: CachePlan, usage: UsageLike, *, calibration_updated: bool) -> Observation:
    """Compare each breakpoint's prediction with the usage and name the reason for each miss.

    Reasons (where they can be told): ``"not yet written (concurrent)"`` when another request
    with the same prefix was still in flight at planning time; ``"expired"`` when the prefix was
    cached before (its entry ran out, or a read was predicted and did not happen);
    ``"prefix changed"`` when a static part (tools, system, a document) differs from the last
    call at the same place; ``"new prefix"`` for a first write; ``"below minimum"`` when nothing
    was cached and the prefix is near the minimum; ``"relay dropped marker?"`` when nothing was
    cached although the prefix is comfortably above it; ``"usage not reported"`` when the usage
    counts no input at all.

    Args:
        plan: the plan that was sent.
        usage: the normalized usage of the response.
        calibration_updated: whether ``observe`` used the usage for calibration.

    Returns:
        The observation.
    """
    read = int(usage.cache_read_tokens)
    written = int(usage.cache_write_5m_tokens) + int(usage.cache_write_1h_tokens)
    total = int(usage.input_tokens) + read + written
    scale = total / plan.total_estimated_tokens if plan.total_estimated_tokens > 0 else 1.0
    bps = plan.breakpoints
    actual = actual_outcomes(
        [bp.estimated_prefix_tokens * scale for bp in bps],
        read,
        written,
        predicted=[bp.predicted for bp in bps],
    )
    trace = plan.trace
    sites = {s.flat_index: s for s in trace.sites} if trace else {}
    index_of = plan.block_index
    nothing_cached = read == 0 and written == 0
    outcomes: list[BreakpointOutcome] = []
    for bp, got in zip(bps, actual, strict=True):
        reason: str | None = None
        if got != "read":
            site = sites.get(index_of.get(bp.position, -1))
            concurrent = trace is not None and bp.prefix_hash in trace.concurrent
            near_minimum = bp.estimated_prefix_tokens * scale < plan.min_cache_tokens * 1.25
            if total == 0:
                reason = "usage not reported"
            elif got == "none" and nothing_cached and near_minimum:
                reason = "below minimum"
            elif got == "none":
                reason = "relay dropped marker?"
            elif concurrent:
                reason = "not yet written (concurrent)"
            elif bp.predicted == "read" or (site is not None and site.cached_until > 0):
                reason = "expired"
            elif site is not None and site.changed:
                reason = "prefix changed"
            else:
                reason = "new prefix"
        outcomes.append(
            BreakpointOutcome(
                bp.position,
                bp.ttl,
                bp.source,
                bp.estimated_prefix_tokens,
                bp.predicted,
                got,
                reason,
                bp.prefix_hash,
            )
        )
    read_at = [index_of.get(bp.position, -1) for bp in bps]
    deepest_read = max(
        (i for i, got in zip(read_at, actual, strict=True) if got == "read"), default=-1
    )
    return Observation(
        breakpoints=tuple(outcomes),
        predicted_read_tokens=plan.predicted_read_tokens,
        actual_read_tokens=read,
        actual_write_tokens=written,
        estimated_total_tokens=plan.total_estimated_tokens,
        actual_total_tokens=total,
        calibration_updated=calibration_updated,
        read_prefix=read_point(plan, read, scale, floor=deepest_read),
    )


def write_split_hints(
    sent: ClaudeRequest, plan: CachePlan | None
) -> tuple[CacheTTL | None, float | None]:
    """How to split cache writes a relay reports without their TTLs (OpenRouter does).

    Args:
        sent: the request as sent, with its markers (a top-level one counts too: it may be
            the request's only one).
        plan: its plan, if the planner made one.

    Returns:
        ``(write_ttl_hint, one_hour_share)`` for ``usage.normalize_usage``: the TTL when every
        marker has the same one, else the plan's share of the input up to its last 1h marker
        (``CachePlan.one_hour_share``; ``None`` without a plan: the writes stay 5m).

    >>> from langchain_claude_relay.request import Block, Message
    >>> sent = ClaudeRequest("claude-sonnet-5-5", system=(Block("text", {"text": "doc"}),),
    ...     messages=(Message("user", (Block("text", {"text": "q"}),)),),
    ...     cache_control=CacheControl("1h"))
    >>> write_split_hints(sent, None)
    ('1h', None)
    """
    ttls = {marker.ttl for marker in sent.markers().values()}
    if sent.cache_control is not None:
        ttls.add(sent.cache_control.ttl)
    if len(ttls) == 1:
        return next(iter(ttls)), None
    return None, (plan.one_hour_share if plan is not None and ttls else None)
