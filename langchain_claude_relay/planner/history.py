"""Reuse history in the state store: read for a plan, updated from usage.

Four kinds of records (all values JSON, keys ``kind:hex``): ``p:`` one per prefix (how often it
came back, and until when it is cached), ``t:`` one per template (how prefixes of that shape
fared: what gives a brand-new prefix its odds), ``c:`` the recent prefixes of a conversation
(requests sharing their first message), and ``g:`` the gaps before a template's prefixes came
back, per tool called (what a keep-alive decision needs; hashes and numbers only). The
arithmetic on them is in ``reuse`` and ``followup``; this module only names, reads and writes
them.

Templates: each candidate site has a *coarse* template, ``(model family, site kind, section,
number of tools, number of system blocks)`` plus the block kind and role for large blocks, and
a *fine* one that adds the hash of the tools (for sites after them) and of the system prompt
(for sites in the conversation). So the system prompt of an app is judged by how the app's
earlier system prompts fared (a timestamp in it makes each one new: the fine template learns
that they never come back), and a conversation's tail by how earlier tails under the same
system prompt fared.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from langchain_claude_relay.planner.followup import (
    PRIOR_GAPS,
    GapHistogram,
    shrink,
)
from langchain_claude_relay.planner.placement import Site
from langchain_claude_relay.planner.plan import CachePlan, Observation, PlanTrace, SiteTrace
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
    record_follow_up,
    record_return,
)
from langchain_claude_relay.planner.rules import TTL_SECONDS
from langchain_claude_relay.planner.scan import Scan
from langchain_claude_relay.store import StateStore

__all__ = [
    "LINEAGE_CAP",
    "PREFIX_EXPIRE",
    "TEMPLATE_EXPIRE",
    "LINEAGE_EXPIRE",
    "hex_key",
    "int48",
    "Lineage",
    "read_lineage",
    "PrefixHistory",
    "learn_reuse",
    "ANY_TOOL",
    "gap_key",
    "tool_field",
    "gap_odds",
    "gaps_after",
    "template_id",
]

ANY_TOOL = "any"
"""The field of a template's ``g:`` record that holds its gaps over every tool called."""

LINEAGE_CAP = 16
"""Recent prefixes kept per conversation."""
PREFIX_EXPIRE = 7 * 86400.0
TEMPLATE_EXPIRE = 30 * 86400.0
LINEAGE_EXPIRE = 86400.0

_STATIC_KINDS = frozenset({"tools", "system", "block", "user"})
"""Sites whose content should not change between calls (a new hash there is a change)."""


@functools.lru_cache(maxsize=4096, typed=True)  # typed: 1 and 1.0 hash alike, repr unlike
def hex_key(kind: str, *parts: Any) -> str:
    """A state key ``kind:`` + 12 hex digits of a hash of ``parts``.

    >>> key = hex_key("k", "sonnet")
    >>> key.startswith("k:"), len(key), key == hex_key("k", "sonnet")
    (True, 14, True)
    """
    return f"{kind}:{hashlib.sha256(repr(parts).encode()).hexdigest()[:12]}"


def int48(digest: str) -> int:
    """The first 48 bits of a hex digest, as stored in records (``ReuseRecord.last_hash``)."""
    return int(digest[:12], 16)


def template_id(template: str) -> int:
    """A template key (``t:`` + 12 hex digits) as the 48-bit int lineage entries store."""
    return int(template[2:], 16)


GAP_TOOLS_CAP = 32
"""Tools kept per ``g:`` record (the least recently seen go first)."""


def gap_key(template: int) -> str:
    """The ``g:`` key of a template's gaps: one record, a histogram per tool and one for any.

    The record's fields are ``tool_field(...)`` and ``ANY_TOOL``, each a ``GapHistogram``'s
    stored form (a list of numbers).
    """
    return hex_key("g", template)


def tool_field(tool: int) -> str:
    """A tool's field in a ``g:`` record (``followup.tool_key``, in hex; ``t0``: no tool)."""
    return f"t{tool:x}"


def _gap_record(store: StateStore, template: int) -> dict[str, Any]:
    raw = store.get(gap_key(template))
    return dict(raw) if isinstance(raw, Mapping) else {}


def gap_odds(
    store: StateStore, template: int, tool: int, now: float | None = None
) -> tuple[float, ...]:
    """Gap probabilities: when a template's prefix came back after a tool was called.

    Args:
        store: the planner's store.
        template: a static site's fine template (``template_id``), or a conversation's
            follow-up template (``PrefixHistory.follow_up_template``).
        tool: the tools the model just called (``followup.tool_key``), or ``-1`` for any
            (the next tool is not known yet). An answer without tool calls (0) is judged on
            its own gaps and the prior, not on the tools': in an agent it usually ends the
            task, in a chat the user answers it.
        now: the current time, to count the arrivals still open as censored (``shrink``).

    Returns:
        Probabilities per ``followup.GAP_EDGES`` bucket, shrunk towards the level above.
    """
    record = _gap_record(store, template)
    if tool == 0:
        return shrink(GapHistogram.from_json(record.get(tool_field(0))), PRIOR_GAPS, now=now)
    anyone = shrink(GapHistogram.from_json(record.get(ANY_TOOL)), PRIOR_GAPS, now=now)
    if tool < 0:
        return anyone
    return shrink(GapHistogram.from_json(record.get(tool_field(tool))), anyone, now=now)


def gaps_after(store: StateStore, template: int, tool: int) -> GapHistogram | None:
    """A template's gaps as learned after ``tool`` (``None``: none seen).

    ``tool`` as ``gap_odds`` takes it: ``-1`` any tool (a static site's returns), ``0`` an
    answer without tool calls. ``gap_odds(store, template, tool, now)`` is ``shrink`` of them
    towards the level above.
    """
    field = ANY_TOOL if tool < 0 else tool_field(tool)
    return GapHistogram.from_json(_gap_record(store, template).get(field))


def _learn_gaps(
    store: StateStore,
    template: int,
    tool: int,
    now: float,
    returned: tuple[int, float] | None = None,
    *,
    per_tool: bool = True,
) -> None:
    """A new arrival at ``now`` under ``tool``, after (``returned``) an earlier one came back.

    ``returned`` is ``(the tool called after the earlier arrival, when it arrived)``. Each is
    learned under any tool and, with ``per_tool``, under its tool, in the template's one record
    (the histograms per tool serve the keep-alive advice only).
    """
    record = _gap_record(store, template)
    events: dict[str, list[float | None]] = {}  # per histogram: returns (when seen), trial
    if returned is not None:
        before, seen = returned
        if per_tool:
            events[tool_field(before)] = [seen]
        events[ANY_TOOL] = [seen]
    if per_tool:
        events.setdefault(tool_field(tool), []).append(None)
    events.setdefault(ANY_TOOL, []).append(None)
    for name, changes in events.items():  # each histogram read and written once
        histogram = GapHistogram.from_json(record.pop(name, None)) or GapHistogram.empty()
        for earlier in changes:
            if earlier is None:
                histogram = histogram.add_trial(now)
            else:
                histogram = histogram.add_return(now - earlier, earlier)
        record[name] = histogram.to_json()  # re-inserted last: the most recently seen
    while len(record) > GAP_TOOLS_CAP:
        oldest = next(k for k in record if k != ANY_TOOL)
        del record[oldest]
    store.set(gap_key(template), record, expire=TEMPLATE_EXPIRE)


def read_lineage(store: StateStore, key: str) -> list[LineageEntry]:
    """A conversation's stored lineage entries (malformed ones and a malformed record: none)."""
    raw = store.get(key)
    stored = raw if isinstance(raw, list) else []
    return [e for e in map(LineageEntry.from_json, stored) if e is not None]


class Lineage(NamedTuple):
    """A conversation's recent prefixes, as stored when the plan was made.

    Attributes:
        key: the ``c:`` key (``None``: the request has no conversation).
        entries: every stored entry.
        matches: the entries whose prefix this request repeats.
    """

    key: str | None
    entries: tuple[LineageEntry, ...]
    matches: tuple[LineageEntry, ...]


class PrefixHistory:
    """What the store remembers about one request's prefixes (reads only, for one plan).

    Each record is read at most once.

    Args:
        store: the planner's store.
        family: the model family.
        scan: the request's items and the prefix hash through each.
        now: when the plan is made (planner clock).
    """

    def __init__(self, store: StateStore, family: str, scan: Scan, now: float) -> None:
        self.store = store
        self.family = family
        self.items = scan.items
        self.prefixes = scan.prefix_hashes
        self.now = now
        self.n_tools = sum(1 for it in self.items if it.section == "tools")
        self.n_system = sum(1 for it in self.items if it.section == "system")
        self.tools_hash = self.prefixes[self.n_tools - 1] if self.n_tools else ""
        last_static = self.n_tools + self.n_system - 1
        self.system_hash = self.prefixes[last_static] if last_static >= 0 else ""
        self._records: dict[int, ReuseRecord | None] = {}
        self._templates: dict[str, ReuseRecord | None] = {}

    def lineage(self) -> Lineage:
        """The conversation's recent prefixes (keyed by its first message)."""
        first = self.n_tools + self.n_system
        if first >= len(self.items):
            return Lineage(None, (), ())
        key = f"c:{self.prefixes[first][:24]}"
        entries = read_lineage(self.store, key)
        matches = [
            e
            for e in entries
            if 0 <= e.index < len(self.prefixes) and int48(self.prefixes[e.index]) == e.prefix
        ]
        return Lineage(key, tuple(entries), tuple(matches))

    def prefix_record(self, index: int) -> ReuseRecord | None:
        """The ``p:`` record of the prefix through item ``index`` (``None``: never seen)."""
        if index not in self._records:
            raw = self.store.get(f"p:{self.prefixes[index][:24]}")
            self._records[index] = ReuseRecord.from_json(raw)
        return self._records[index]

    def follow_up_template(self) -> int:
        """The conversation's follow-up gaps' template: the application (model, tools, system).

        Every prefix of a conversation comes back when its next turn does, whatever the site's
        kind, so the follow-up's gaps are learned once per request, under this key.
        """
        return template_id(
            hex_key("t", self.family, "follow-up", self.tools_hash, self.system_hash)
        )

    def templates(self, site: Site) -> tuple[str, str]:
        """The coarse and the fine template keys of a site."""
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
        return hex_key("t", *coarse), hex_key("t", *coarse, after, conversation)

    def site_odds(self, site: Site) -> tuple[ReuseOdds, SiteTrace]:
        """How likely the site's prefix comes back, and what ``observe`` needs of it.

        The prior of the site's kind, refined by its templates (coarse, then fine), then by the
        prefix's own record. A static site is *changed* when a template last saw another
        prefix there and this one is new.
        """
        index = site.index
        templates = self.templates(site)
        record = self.prefix_record(index)
        odds = STATIC_PRIOR_ODDS if site.kind in _STATIC_KINDS else PRIOR_ODDS
        prefix48 = int48(self.prefixes[index])
        changed = False
        for template in templates:  # coarse, then fine
            if template not in self._templates:
                self._templates[template] = ReuseRecord.from_json(self.store.get(template))
            level = self._templates[template]
            odds = estimate_odds(level, odds, open_arrivals=_open(level, self.now))
            changed = changed or (level is not None and level.last_hash not in (0, prefix48))
        odds = estimate_odds(record, odds, arriving_at=self.now)
        trace = SiteTrace(
            index,
            site.kind,
            self.prefixes[index],
            templates,
            record is not None,
            record.cached_until if record else 0.0,
            changed and record is None and site.kind in _STATIC_KINDS,
            None,
            "user" if site.kind == "user" else "planner",
        )
        return odds, trace


def _open(record: ReuseRecord | None, now: float) -> float:
    """A template's arrivals that may still come back: its newest, within the hour.

    Returns reach a template only when they happen, so its newest arrival counted as "not back"
    until then; on a new template that halved a first follow-up's odds (one arrival, no return
    yet): a tail kept warm through a 12-minute tool call was then left unmarked and unread.
    """
    if record is None or record.last_seen is None or now - record.last_seen > TTL_SECONDS["1h"]:
        return 0.0
    return 1.0


def learn_reuse(
    store: StateStore,
    plan: CachePlan,
    trace: PlanTrace,
    observation: Observation,
    scale: float,
    read: int,
    tool: int = 0,
) -> None:
    """Record a planned call's outcome: its prefixes, their templates, its conversation.

    Gaps (``g:``): a static site's return (its prefix arrived again) is learned under its
    template and the tool the previous arrival's response called; the conversation's follow-up
    (this request after its latest turn) under the conversation's follow-up template and the
    tool that turn's response called (or, not known, the tool_use blocks in front of this
    request's tool results); each also under any tool.

    Args:
        store: the planner's store (inside its transaction).
        plan: the plan.
        trace: its trace.
        observation: the plan reconciled with the usage.
        scale: actual total input over the plan's estimate.
        read: tokens the usage reports read from the cache.
        tool: the tools the response called (``followup.tool_key``; 0: none or not known).
    """
    now = trace.planned_at
    outcome_at = {o.position: o for o in observation.breakpoints}
    restarts = _Restarts.of(plan, trace, observation, read / scale if scale > 0 else 0.0)
    site_prefixes = {int48(s.prefix_hash) for s in trace.sites}
    matched_keys = {(e.index, e.prefix) for e in trace.lineage_matches}
    current: list[LineageEntry] = []
    if trace.lineage_key is not None:  # read again: another call may have changed it meanwhile
        current = read_lineage(store, trace.lineage_key)
    # The earlier turns this request repeats whose return is not counted yet, by prefix: each
    # return goes to the template its arrival was counted under (the entry's), once.
    returning = {
        e.prefix: e for e in current if (e.index, e.prefix) in matched_keys and not e.resolved
    }
    credited: set[int] = set()  # prefixes whose return the sites' templates counted
    new_entries: list[LineageEntry] = []
    for site in trace.sites:
        key = f"p:{site.prefix_hash[:24]}"
        record = ReuseRecord.from_json(store.get(key))
        # the prefix's last arrival, if its return is not counted yet (a follow-up counted it)
        previous = record.last_seen if record is not None and not record.resolved else None
        last_tool = record.last_tool if record is not None else 0
        updated = record_arrival(record, now, DECAY_PREFIX, tool=tool)
        outcome = outcome_at.get(plan.blocks[site.flat_index].position)
        ttl_seconds, expires = 0.0, 0.0
        if outcome is not None and outcome.actual == "write":  # a new entry, its own TTL
            ttl_seconds = TTL_SECONDS[outcome.ttl]
        elif outcome is not None and outcome.actual == "read":  # a hit keeps the entry's
            alive = record is not None and record.cached_until > now
            if restarts.restarted(site.flat_index, alive=alive):
                ttl_seconds = updated.cached_ttl or TTL_SECONDS[outcome.ttl]
        prefix_json = updated.to_json()
        if ttl_seconds:
            expires = now + ttl_seconds
            prefix_json["cu"], prefix_json["ct"] = expires, ttl_seconds  # cached until, TTL
        store.set(key, prefix_json, expire=PREFIX_EXPIRE)
        prefix48 = int48(site.prefix_hash)
        back = previous  # the return this site's templates count
        turn = returning.get(prefix48)  # the earlier turn this prefix ended, if any
        if turn is not None and turn.template != template_id(site.templates[-1]):
            # The prefix arrived before as another kind of site (the old tail is now the
            # lookback guard): its return is that template's (counted with the conversation
            # below), not this site's templates', which never counted that arrival.
            back = None
        for template in site.templates:
            _template_arrival(store, template, now, back, prefix48)
        if back is not None:
            credited.add(prefix48)
        if plan.blocks[site.flat_index].position.section != "messages":
            # a static site's return is its next arrival; learned after the tool called then
            # (with keep-alives or without: its late returns per break price its TTL)
            fine = template_id(site.templates[-1])
            returned = (last_tool, previous) if previous is not None else None
            _learn_gaps(store, fine, tool, now, returned, per_tool=trace.keep_warm)
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
                    tool,
                )
            )
    if trace.lineage_key is None:
        return
    kept: list[LineageEntry] = []
    if trace.keep_warm and trace.follow_key:  # the follow-up: this request, after the last turn
        # The latest earlier turn this request repeats, even one whose prefix is also a site of
        # this request (after a long gap the old tail is the lookback guard, or a large block):
        # left out, every follow-up after an expiry went uncredited, its arrival resolved as
        # "never" an hour later, and a tool that runs 10-12 minutes learned that nothing comes
        # back after 10, so its conversation stopped being kept warm right before the result.
        earlier = [e for e in current if (e.index, e.prefix) in matched_keys and not e.resolved]
        latest = max(earlier, key=lambda e: e.seen, default=None)
        returned = None
        if latest is not None:
            returned = (latest.tool or trace.follow_tool, latest.seen)
        _learn_gaps(store, trace.follow_key, tool, now, returned)
    for entry in current:
        matched = (entry.index, entry.prefix) in matched_keys
        if matched and not entry.resolved:
            # Each earlier turn's return counted once on its template. A prefix that is a site
            # of this request again counted it above when it is the same kind of site (a large
            # block, a retried request); when it is not (the old tail as the lookback guard,
            # after a turn of 20+ positions), it is counted here: skipped, the tail's template
            # saw an arrival each turn and never a return, and its tails went unmarked.
            if entry.prefix not in credited:
                template = f"t:{entry.template:012x}"
                record = ReuseRecord.from_json(store.get(template))
                store.set(
                    template,
                    record_return(record, now - entry.seen).to_json(),
                    expire=TEMPLATE_EXPIRE,
                )
            if entry.prefix not in site_prefixes:  # a site's own arrival resolved its record
                _follow_up(store, plan.request.prefix_hashes()[entry.index], entry, now)
            entry = replace(entry, resolved=True)
        if matched and entry.ttl > 0 and restarts.restarted(entry.index, entry.expires > now):
            entry = replace(entry, expires=max(entry.expires, now + entry.ttl))
        kept.append(entry)
    merged = merge_lineage(kept, new_entries, LINEAGE_CAP)
    store.set(trace.lineage_key, [e.to_json() for e in merged], expire=LINEAGE_EXPIRE)


@dataclass(frozen=True)
class _Restarts:
    """Which cached prefixes a request restarted: Claude restarts the entry each marker hits.

    That is the entry the read ended at (the *read point*: the deepest of this request's
    markers and the conversation's earlier turns within the tokens read), and an entry still
    alive under a marker of this request. An entry read through a deeper one keeps its own
    expiry: believed restarted, a system prompt's expired 5m entry looked alive (and was "kept
    alive" by keep-alives that wrote it again), and a long conversation's first 1-hour entry
    looked alive for as long as the conversation went on.
    """

    read_point: int
    marked: frozenset[int]

    @classmethod
    def of(
        cls, plan: CachePlan, trace: PlanTrace, observation: Observation, read_end: float
    ) -> _Restarts:
        flat_at = plan.block_index
        marked = frozenset(flat_at[b.position] for b in plan.breakpoints if b.position in flat_at)
        read = [
            flat_at[o.position]
            for o in observation.breakpoints
            if o.actual == "read" and o.position in flat_at
        ]
        limit = read_end * 1.05 + 8  # ``plan.actual_outcomes``' slack
        read += [
            e.index
            for e in trace.lineage_matches
            if e.index < len(plan.blocks) and plan.blocks[e.index].prefix_tokens <= limit
        ]
        return cls(max(read, default=-1), marked)

    def restarted(self, index: int, alive: bool) -> bool:
        """Whether the entry at flat block ``index`` (``alive``: believed so) was restarted."""
        return index == self.read_point or (
            alive and index < self.read_point and index in self.marked
        )


def _follow_up(store: StateStore, prefix_hash: str, entry: LineageEntry, now: float) -> None:
    """A later turn read the prefix of ``entry``: count that return on the prefix's own record."""
    key = f"p:{prefix_hash[:24]}"
    record = ReuseRecord.from_json(store.get(key))
    if record is None or record.last_seen is None or abs(record.last_seen - entry.seen) > 1e-6:
        return  # the prefix arrived again since (that arrival resolved this one), or is gone
    store.set(key, record_follow_up(record, now - entry.seen).to_json(), expire=PREFIX_EXPIRE)


def _template_arrival(
    store: StateStore, template: str, now: float, previous: float | None, prefix48: int
) -> None:
    record = ReuseRecord.from_json(store.get(template))
    updated = record_arrival(record, now, DECAY_TEMPLATE, resolve=False)
    if previous is not None:
        updated = record_return(updated, now - previous)
    stored = updated.to_json()
    stored["h"] = prefix48  # the record's ``last_hash``
    store.set(template, stored, expire=TEMPLATE_EXPIRE)
