"""Placement rules (pure): candidate sites, the lookback guard, and the cheapest marker set."""

from __future__ import annotations

import itertools

import pytest

from langchain_claude_relay.models import ModelPrices
from langchain_claude_relay.planner.placement import (
    BlockInfo,
    Option,
    choose_markers,
    find_sites,
    guard_site,
)
from langchain_claude_relay.planner.reuse import ReuseOdds
from langchain_claude_relay.planner.ttl import Rates, future_cost

RATES = Rates.from_prices(ModelPrices.standard(3.0, 15.0))


def _blocks(spec: str) -> tuple[list[BlockInfo], list[float]]:
    """Blocks from a compact spec: ``T300 S2000 | u20 a50 uD3000 t0 e0 ...``.

    Section letters: T tool, S system; after ``|`` messages, one per space-separated group
    separated by ``/`` (``u20/D3000`` is one user message with two blocks). Kinds: u/a text of
    a user/assistant message, D document, t thinking (unmarkable), e empty text (unmarkable).
    """
    blocks: list[BlockInfo] = []
    head, _, tail = spec.partition("|")
    for token in head.split():
        section = "tools" if token[0] == "T" else "system"
        blocks.append(
            BlockInfo(
                section, -1, "tool" if section == "tools" else "system", True, float(token[1:])
            )
        )
    for m, message in enumerate(tail.split()):
        role = "user" if message[0] in "uD" else "assistant"
        for part in message.split("/"):
            kind, size = part[0], float(part[1:] or 0)
            blocks.append(BlockInfo("messages", m, role, kind not in "te", size))
    cumulative = list(itertools.accumulate(b.tokens for b in blocks))
    return blocks, cumulative


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # tools and system large enough, one user turn
        ("T600 T600 S2000 | u20", [(1, "tools"), (2, "system"), (3, "tail")]),
        # tools alone below the minimum: no tools site
        ("T300 S2000 | u20", [(1, "system"), (2, "tail")]),
        # nothing reaches the minimum
        ("S200 | u20 a30", []),
        # a thinking block last: the tail is the last markable block
        ("S2000 | u20 a40/t100", [(0, "system"), (2, "tail")]),
        # an empty text last, same
        ("S2000 | u20 a40/e0", [(0, "system"), (2, "tail")]),
        # the first user message carries a big document
        ("S300 | D5000/u20 a30 u20", [(2, "first_message"), (1, "block"), (4, "tail")]),
        # several large blocks: the 3 largest, in order
        # several large blocks: the 3 largest, in order (the first also ends the first message)
        (
            "S100 | u1500 a1200 u2000 a1100 u20",
            [(1, "first_message"), (2, "block"), (3, "block"), (5, "tail")],
        ),
        # the minimum with its margin: 1000 * 1.04 >= 1024
        ("S1000 | u5", [(0, "system"), (1, "tail")]),
    ],
)
def test_sites(spec: str, expected: list[tuple[int, str]]) -> None:
    blocks, cumulative = _blocks(spec)
    sites = find_sites(blocks, cumulative, minimum=1024, margin=0.04)
    assert [(s.index, s.kind) for s in sites] == expected


def test_user_marked_blocks_are_not_sites() -> None:
    blocks, cumulative = _blocks("T600 T600 S2000 | u20")
    sites = find_sites(blocks, cumulative, minimum=1024, margin=0.04, taken=frozenset({3}))
    assert [s.index for s in sites] == [1, 2]


def _long(n_messages: int, thinking_at: int | None = None) -> tuple[list[BlockInfo], list[float]]:
    """A system block, then one block per message (message m is block m + 1)."""
    parts = []
    for m in range(n_messages):
        kind = "t" if m == thinking_at else ("u" if m % 2 == 0 else "a")
        parts.append(f"{kind}50")
    return _blocks("S2000 | " + " ".join(parts))


@pytest.mark.parametrize(
    ("n_messages", "cached", "thinking_at", "guard"),
    [
        (30, [5], None, 5),  # tail at block 30, cached at 5: 25 blocks apart
        (30, [5, 8], None, 8),  # the latest cached prefix is the one to keep reachable
        (30, [5], 4, 6),  # block 5 (message 4) is thinking: block 6 still reads 5
        (30, [6], 4, 6),
        (30, [5], 5, 5),
        (20, [5], None, None),  # 15 apart: the tail reads it
        (25, [5], None, 5),  # exactly 20 apart: out of reach
        (24, [5], None, None),  # 19 apart: within reach
        (30, [], None, None),
    ],
)
def test_lookback_guard(
    n_messages: int, cached: list[int], thinking_at: int | None, guard: int | None
) -> None:
    blocks, cumulative = _long(n_messages, thinking_at)
    site = guard_site(blocks, cumulative, cached, minimum=1024, margin=0.04)
    assert (site.index if site else None) == guard


def test_a_user_marker_in_the_window_makes_the_guard_unneeded() -> None:
    blocks, cumulative = _long(30)
    assert (
        guard_site(blocks, cumulative, [5], minimum=1024, margin=0.04, taken=frozenset({7})) is None
    )


def _option(index: int, odds: ReuseOdds, forced: str | None = None) -> Option:
    return Option(index, future_cost("1h", odds, RATES), future_cost("5m", odds, RATES), forced)


GOOD = ReuseOdds(0.95, 0.95)
NEVER = ReuseOdds(0.0, 0.0)
SPARSE = ReuseOdds(0.05, 0.95)


def test_at_most_the_free_slots_are_used() -> None:
    cumulative = [float(2000 * (i + 1)) for i in range(8)]
    options = [_option(i, GOOD) for i in range(7)]
    for user in range(5):
        fixed = [_option(7 - k, GOOD, "5m") for k in range(user)]
        free = [o for o in options if o.index not in {f.index for f in fixed}]
        placed = choose_markers(free, fixed, cumulative, {}, RATES, "auto", 4 - user)
        assert len(placed.markers) <= 4
        assert {f.index for f in fixed} <= {i for i, _ in placed.markers}


def test_prefixes_that_never_come_back_are_not_marked() -> None:
    cumulative = [2000.0, 4000.0, 4100.0]
    placed = choose_markers(
        [_option(0, GOOD), _option(2, NEVER)], [], cumulative, {}, RATES, "auto", 4
    )
    assert placed.markers == ((0, "5m"),)


def test_a_cached_prefix_out_of_lookback_is_read_through_the_guard() -> None:
    cumulative = [float(1000 + 100 * i) for i in range(40)]
    tail = _option(39, NEVER)
    guard = _option(5, GOOD)
    placed = choose_markers([guard, tail], [], cumulative, {5: "5m"}, RATES, "auto", 4)
    assert (5, "5m") in placed.markers
    assert placed.read_index == 5


def test_reads_are_predicted_only_within_the_lookback() -> None:
    cumulative = [float(1000 + 100 * i) for i in range(40)]
    only_tail = choose_markers([_option(39, GOOD)], [], cumulative, {5: "5m"}, RATES, "auto", 4)
    assert only_tail.read_index == -1  # 34 blocks away: unreachable
    near = choose_markers([_option(24, GOOD)], [], cumulative, {5: "5m"}, RATES, "auto", 4)
    assert near.read_index == 5  # 19 blocks away: reachable


def test_user_ttls_constrain_the_planner() -> None:
    cumulative = [2000.0, 4000.0, 6000.0]
    # a user 1h marker last: the planner's earlier marker must be 1h too, even with dense odds
    placed = choose_markers(
        [_option(0, GOOD)], [_option(2, NEVER, "1h")], cumulative, {}, RATES, "auto", 3
    )
    assert placed.markers == ((0, "1h"), (2, "1h"))
    # a user 5m marker first: the planner's later marker must be 5m, even with sparse odds
    placed = choose_markers(
        [_option(2, SPARSE)], [_option(0, GOOD, "5m")], cumulative, {}, RATES, "auto", 3
    )
    assert placed.markers in (((0, "5m"), (2, "5m")), ((0, "5m"),))


def test_a_big_sparse_prefix_gets_1h_and_later_markers_follow() -> None:
    cumulative = [20_000.0, 20_500.0, 20_600.0]
    placed = choose_markers(
        [_option(0, SPARSE), _option(1, ReuseOdds(0.04, 0.9))], [], cumulative, {}, RATES, "auto", 4
    )
    ttls = dict(placed.markers)
    assert ttls[0] == "1h"
    assert all(ttl == "1h" for ttl in ttls.values())


def test_expected_cost_is_below_uncached_when_reading() -> None:
    cumulative = [10_000.0, 10_100.0]
    placed = choose_markers([_option(0, GOOD)], [], cumulative, {0: "5m"}, RATES, "auto", 4)
    uncached = cumulative[-1] * RATES.input
    assert placed.now_cost == pytest.approx(10_000 * RATES.read + 100 * RATES.input)
    assert placed.now_cost < uncached


# -- keep-alive bridges: a keep-alive reads the whole prefix, not only the segment -----------

SONNET = Rates.from_prices(ModelPrices.standard(3.0, 15.0))
TURN_ODDS = ReuseOdds(0.65, 0.97)  # the same returns as PAUSE_GAPS: 65% within 5 min
PAUSE_GAPS = (0.5, 0.1, 0.05, 0.1, 0.1, 0.05, 0.03, 0.02, 0.01, 0.01, 0.0, 0.0, 0.0, 0.0, 0.03)
"""Follow-up gaps (``GAP_EDGES`` buckets): a third of the returns come 5-30 minutes later."""


@pytest.mark.parametrize(
    ("system", "conversation", "new", "expected"),
    [
        # a long conversation behind a small new turn: each keep-alive reads ~4,500 tokens to
        # save a 500-token turn's 1h premium; 1h is far cheaper
        (2000.0, 2500.0, 500.0, "1h"),
        (2000.0, 6000.0, 300.0, "1h"),
        # a keep-alive reads the new turn and little else: keeping it warm is the cheaper way
        (0.0, 3000.0, 3000.0, "5m"),
    ],
)
def test_a_bridged_tail_pays_for_keep_alives_that_read_the_whole_prefix(
    system: float, conversation: float, new: float, expected: str
) -> None:
    from langchain_claude_relay.planner.followup import survival

    s = survival(PAUSE_GAPS)
    before = system + conversation - new
    options: list[Option] = []
    cumulative: list[float] = []
    cached: dict[int, str] = {}
    if system:
        cumulative.append(system)
        options.append(Option.priced(0, TURN_ODDS, SONNET, static=True))
        cached[0] = "1h"
    if before > system:
        cached[len(cumulative)] = "5m"  # the previous turn's tail, read now
        cumulative.append(before)
    cumulative.append(system + conversation)
    tail = len(cumulative) - 1
    options.append(Option.priced(tail, TURN_ODDS, SONNET, survival=s, next_only=True))
    placed = choose_markers(options, [], cumulative, cached, SONNET, "auto", 4)
    assert dict(placed.markers)[tail] == expected


def test_a_shared_static_prefix_is_not_priced_with_a_conversations_odds() -> None:
    """An agent's task starts: its next steps surely come within 5 minutes (the tail's odds),
    but the system prompt also comes back with the next task, 5-40 minutes later.

    A 5m tail alone serves the steps; only a marker on the system prompt serves the next task
    (it cannot read an entry ending in this task's message). Left unmarked, its tokens' future
    is priced at the dearer of the two odds, so the system prompt gets its own 1h marker.
    """
    cumulative = [4558.0, 4669.0]  # the system prompt, then the task's first message
    system = Option.priced(0, ReuseOdds(0.77, 1.0), RATES, static=True)
    tail = Option.priced(1, ReuseOdds(0.99, 1.0), RATES)
    placement = choose_markers([system, tail], [], cumulative, {}, RATES, "auto", 4)
    assert placement.markers == ((0, "1h"), (1, "5m"))


@pytest.mark.parametrize("late", [0.0, 0.05, 0.23, 0.6])
@pytest.mark.parametrize("cached", [{}, {1: "5m"}, {0: "1h"}, {0: "5m", 1: "5m"}])
def test_a_shared_static_prefix_keeps_its_marker_whatever_the_tail(
    cached: dict[int, str], late: float
) -> None:
    """Marking the system prompt too costs nothing now (the write is billed once, up to the
    last marker) and only adds an entry other conversations can read: it is always kept."""
    cumulative = [4558.0, 4669.0]
    system = Option.priced(0, ReuseOdds(1.0 - late, 1.0), RATES, static=True)
    tail = Option.priced(1, ReuseOdds(0.99, 1.0), RATES)
    placement = choose_markers([system, tail], [], cumulative, cached, RATES, "auto", 4)
    assert 0 in dict(placement.markers)


@pytest.mark.parametrize("keep_alives", [False, True])
@pytest.mark.parametrize("cached", [{}, {1: "5m"}])  # (tools cached: read, and kept, either way)
def test_the_end_of_the_tools_is_marked_below_the_system_prompt_when_it_costs_nothing(
    keep_alives: bool, cached: dict[int, str]
) -> None:
    """A supervisor's workers share their tools and differ in their system prompts: only an
    entry at the end of the tools lets the second worker read them. Marking it costs nothing
    (the write is billed once, up to the last marker), and with keep-alives one through the
    system prompt refreshes both entries, so the pair is bridged like one segment. Priced one by
    one, each marker paid for keep-alives of its own and the tools marker looked dearer; and
    ties went to fewer markers (multi_agent day one rewrote the tools for each worker)."""
    from langchain_claude_relay.planner.followup import PRIOR_GAPS, survival

    s = survival(PRIOR_GAPS) if keep_alives else None
    odds = ReuseOdds(0.7, 0.9)
    cumulative = [3228.0, 5139.0, 5310.0]  # the tools, a worker's system prompt, its task
    tools = Option.priced(0, odds, RATES, static=True, survival=s)
    system = Option.priced(1, odds, RATES, static=True, survival=s)
    tail = Option.priced(2, ReuseOdds(0.99, 1.0), RATES, survival=s, next_only=True)
    both = choose_markers([tools, system, tail], [], cumulative, cached, RATES, "auto", 4)
    assert {0, 1} <= set(dict(both.markers))
    alone = choose_markers([system, tail], [], cumulative, cached, RATES, "auto", 4)
    assert both.objective == pytest.approx(alone.objective, rel=1e-9)  # no dearer, no cheaper


def test_only_static_markers_written_now_with_equal_returns_form_a_keep_alive_row() -> None:
    """The runtime sends one static keep-alive (the deepest) and one for the conversation, and
    a keep-alive only helps tokens no 1-hour entry holds: rows are limited to what it does."""
    from langchain_claude_relay.planner.followup import PRIOR_GAPS, survival
    from langchain_claude_relay.planner.placement import _static_rows

    s = survival(PRIOR_GAPS)
    odds = ReuseOdds(0.7, 0.9)
    tools = Option.priced(0, odds, RATES, static=True, survival=s)
    system = Option.priced(1, odds, RATES, static=True, survival=s)
    aheads = [3000.0, 2000.0, 100.0]
    tail = Option.priced(2, odds, RATES, survival=s)
    assert _static_rows([tools, system, tail], aheads, -1) == [(0, 2)]
    assert _static_rows([tools, system, tail], aheads, 0) == []  # the tools are read now
    other = Option.priced(1, ReuseOdds(0.2, 0.9), RATES, static=True, survival=s)
    assert _static_rows([tools, other], aheads, -1) == []  # different returns
    held = Option.priced(1, odds, RATES, static=True, survival=s, held_start=3000.0)
    assert _static_rows([tools, held], aheads, -1) == []  # a 1-hour entry holds the tools
    plain = Option.priced(1, odds, RATES, static=True)
    assert _static_rows([tools, plain], aheads, -1) == []  # no keep-alives
    assert _static_rows([tail, Option.priced(3, odds, RATES, survival=s)], aheads, -1) == []


# -- a 1-hour entry below the tail holds most of the prefix for a late follow-up ------------

# A chat's last turn on day two (paused_chat #37): its own history says the follow-up came
# late, or not at all; the system prompt and the previous turn are cached for an hour.
LAST_TURN = ReuseOdds(0.321, 0.456)


def _last_turn(previous: str, *, held_start: float = 0.0) -> str:
    cumulative = [2113.0, 5000.0, 5437.0, 6010.0]  # system, an earlier turn, previous, new
    system = Option.priced(0, ReuseOdds(0.95, 1.0), SONNET, static=True)
    held = {"held_start": held_start} if held_start else {}
    tail = Option.priced(3, LAST_TURN, SONNET, next_only=True, **held)
    cached = {0: "1h", 2: previous}
    placed = choose_markers([system, tail], [], cumulative, cached, SONNET, "auto", 4)
    assert placed.read_index == 2
    return dict(placed.markers)[3]


def test_a_tail_above_a_1h_entry_risks_only_its_new_tokens_on_a_late_return() -> None:
    """The previous turn's 1-hour entry is read (so refreshed) now: a late follow-up reads
    up to it whatever the new tail's TTL, so a 5m tail risks rewriting the 573 new tokens, not
    the whole conversation (which made it 1h, the premium paid on every last turn)."""
    assert _last_turn("1h") == "5m"


def test_a_tail_above_a_5m_entry_still_insures_the_conversation_for_an_hour() -> None:
    """The previous turn's entry is 5m: a late follow-up would rewrite the whole conversation."""
    assert _last_turn("5m") == "1h"


def test_an_earlier_turns_1h_entry_holds_its_prefix_for_a_late_return() -> None:
    """The read point is 5m, but an earlier turn's 1h entry (with half an hour or more left,
    ``Option.held_start``) holds the prefix up to it: only the last two turns are at risk."""
    assert _last_turn("5m", held_start=5000.0) == "5m"
    assert _last_turn("5m", held_start=3000.0) == "1h"


def test_held_tokens_change_only_the_next_arrivals_late_returns() -> None:
    """With ``next_only`` the late returns are the next arrival's: held tokens cost what they
    would with 1h. Counting later arrivals too, those the held entry may not outlive keep
    their 5m price."""
    nxt = Option.priced(1, LAST_TURN, SONNET, next_only=True)
    assert nxt.held_5m == pytest.approx(nxt.future_1h)
    many = Option.priced(1, ReuseOdds(0.7, 0.9), SONNET)
    assert many.future_1h < many.held_5m < many.future_5m
