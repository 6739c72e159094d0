"""Gap histograms: the long memory of late returns, and the stored form read back as untrusted."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langchain_claude_relay.planner.followup import (
    GAP_EDGES,
    PENDING_CAP,
    PRIOR_GAPS,
    STORED_VERSION,
    TAIL_FROM,
    GapHistogram,
    late_per_break,
    own_late_per_break,
    shrink,
    survival,
)
from langchain_claude_relay.planner.keepalive import ping_decisions
from langchain_claude_relay.planner.reuse import DECAY_PREFIX, ReuseRecord, record_arrival

MINUTE = 60.0
DAY = 86400.0


def _days_then_quick(days: int) -> GapHistogram:
    """A document asked about every minute, one question in 30 late (7 min), then the day ends.

    Then 30 quick returns: the short memory holds none of the late ones any more.
    """
    h, t = GapHistogram.empty(), 0.0
    for _ in range(days):
        h, t = h.add_trial(t).add_return(7 * MINUTE, t), t + 7 * MINUTE
        for _ in range(30):
            h, t = h.add_trial(t).add_return(MINUTE, t), t + MINUTE
        h, t = h.add_trial(t), t + DAY  # the last question of the day: never back
    for _ in range(30):
        h, t = h.add_trial(t).add_return(MINUTE, t), t + MINUTE
    return h


def test_late_returns_are_remembered_longer_than_quick_ones() -> None:
    h = _days_then_quick(3)
    assert h.total == pytest.approx(10.0, rel=0.01)  # ~ten arrivals in the short memory
    late = sum(h.counts[TAIL_FROM:])
    assert late < 0.2  # the late returns and the ends of day are nearly gone from it...
    assert h.tail[0] > 2.0
    assert h.tail[-1] > 2.0


def test_the_learned_end_stops_keep_alives_that_the_prior_alone_would_send() -> None:
    """After days of "silent 10 minutes = done", the keep-alives stop after the first."""
    learned = _days_then_quick(3)
    forgotten = replace(learned, tail=GapHistogram.empty().tail)  # as before the tail existed
    with_tail = ping_decisions(survival(shrink(learned, PRIOR_GAPS)), ping=0.05, loss=1.2)
    without = ping_decisions(survival(shrink(forgotten, PRIOR_GAPS)), ping=0.05, loss=1.2)
    assert with_tail[0]  # the first expiry is still bridged (7-minute returns happen)...
    assert not any(with_tail[1:])  # ...and nothing after it
    assert without[1]  # the prior's shape kept it warm longer


def test_the_tail_only_reshapes_what_comes_after_the_first_expiry() -> None:
    learned = _days_then_quick(3)
    forgotten = replace(learned, tail=GapHistogram.empty().tail)
    a, b = shrink(learned, PRIOR_GAPS), shrink(forgotten, PRIOR_GAPS)
    assert a[:TAIL_FROM] == pytest.approx(b[:TAIL_FROM])  # quick returns: the short memory
    assert sum(a[TAIL_FROM:]) == pytest.approx(sum(b[TAIL_FROM:]))  # how many come late: too
    assert math.fsum(a) == pytest.approx(1.0)


def test_the_stored_form_round_trips_and_holds_numbers_only() -> None:
    h = _days_then_quick(2).add_trial(5.0 * DAY)
    stored = h.to_json()
    assert stored[0] == STORED_VERSION
    assert all(isinstance(x, float) for x in stored)
    assert GapHistogram.from_json(stored) == h


def test_the_form_from_before_the_tail_reads_with_an_empty_tail() -> None:
    counts = [0.5] * (len(GAP_EDGES) + 1)
    h = GapHistogram.from_json([*counts, 100.0, 200.0])
    assert h is not None
    assert h.counts == tuple(counts)
    assert h.pending == (100.0, 200.0)
    assert h.tail == GapHistogram.empty().tail


BUCKETS = len(GAP_EDGES) + 1
GOOD = [STORED_VERSION, *([1.0] * BUCKETS), *([1.0] * (BUCKETS - TAIL_FROM))]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "not a list",
        {"c": [1.0] * BUCKETS},
        [],
        [1.0] * (BUCKETS - 1),  # too short for the old form
        [STORED_VERSION, *([1.0] * BUCKETS)],  # the new form without its tail
        [-1.0, *GOOD[1:]],  # a version that does not exist
        [STORED_VERSION, -1.0, *GOOD[2:]],  # a negative count
        [STORED_VERSION, math.nan, *GOOD[2:]],
        [*GOOD[:-1], math.inf],  # a tail count that is not finite
        [*GOOD, math.nan],  # an open arrival that is not a time
        [*GOOD, "12"],
        [*GOOD, [1.0]],
        [*GOOD, 10**400],  # an integer no float holds
        [*GOOD, True],
    ],
)
def test_malformed_stored_forms_read_as_no_history(raw: Any) -> None:
    assert GapHistogram.from_json(raw) is None


@given(st.lists(st.floats(min_value=0.0, max_value=1e9), max_size=200))
def test_what_is_read_back_is_bounded(pending: list[float]) -> None:
    h = GapHistogram.from_json([*GOOD, *pending])
    if len(pending) > PENDING_CAP:
        assert h is None  # longer than anything ever stored
    else:
        assert h is not None
        assert h.pending == tuple(pending)


def _history(outcomes: list[float | None], start: float = 0.0) -> tuple[GapHistogram, float]:
    """Arrivals an hour apart, each back after its gap (``None``: never back); and the time
    after the last one has resolved."""
    h, t = GapHistogram.empty(), start
    for gap in outcomes:
        h = h.add_trial(t)
        if gap is not None:
            h = h.add_return(gap, t)
        t += 2 * 3600.0
    return h, t


@pytest.mark.parametrize(
    ("outcomes", "low", "high"),
    [
        ([20 * MINUTE], 2.5, 3.0),  # one late return, shrunk towards the prior's 0.92
        ([20 * MINUTE] * 8, 5.0, math.inf),  # late returns only: a long chain
        ([None] * 8, 0.0, 0.1),  # never back: no chain
        ([20 * MINUTE, 20 * MINUTE, 20 * MINUTE, None] * 3, 1.5, 3.5),  # three late per break
        ([30.0] * 8 + [None], 0.3, 0.4),  # one break after quick returns
    ],
)
def test_late_per_break_counts_late_returns_per_return_past_the_hour(
    outcomes: list[float | None], low: float, high: float
) -> None:
    h, now = _history(outcomes)
    ratio = late_per_break(h, now)
    assert ratio is not None
    assert low <= ratio <= high


@pytest.mark.parametrize("outcomes", [[], [30.0], [30.0] * 8, [4 * MINUTE] * 3])
def test_late_per_break_is_not_assumed_before_anything_came_after_5_minutes(
    outcomes: list[float | None],
) -> None:
    """Dense traffic (or none yet) has no late return to learn from: the prior alone would
    make every new prompt's first write 1h, and keep it so."""
    h, now = _history(outcomes)
    assert late_per_break(h if outcomes else None, now) is None


def test_late_per_break_counts_an_arrival_open_past_the_hour_as_a_break() -> None:
    """Yesterday's last arrival is still open when today's first request is planned: it is a
    break (it stayed away for more than the hour), not a return that might yet come."""
    h, now = _history([20 * MINUTE] * 6)
    h = h.add_trial(now)
    tomorrow, soon, at_once = (late_per_break(h, t) for t in (now + 86400.0, now + 600.0, now))
    assert tomorrow is not None
    assert soon is not None
    assert tomorrow < soon
    assert soon == pytest.approx(at_once)


@pytest.mark.parametrize(
    ("late", "breaks", "template", "expected"),
    [
        (0.0, 0.0, None, None),  # nothing known anywhere
        (0.0, 0.0, 1.4, 1.4),  # no late return or break of its own: the template's
        (6.0, 1.0, 1.4, 4.26),  # a busy tenant after the day break: shrunk towards the prior
        (6.0, 1.0, 9.0, 9.0),  # never below the template's
        (0.0, 1.0, 1.4, 1.4),  # one break of its own lowers nothing
        (6.0, 1.0, 0.05, 3.10),  # towards the template when that is under the prior's 0.92
        (0.0, 1.0, 0.05, 0.05),
        (1.0, 0.0, None, 2.84),  # no template yet: towards the prior, as a template's tail is
    ],
)
def test_own_late_per_break_lifts_the_template_ratio_by_the_prefix_own_history(
    late: float, breaks: float, template: float | None, expected: float | None
) -> None:
    ratio = own_late_per_break(late, breaks, template)
    assert ratio == (None if expected is None else pytest.approx(expected, abs=0.005))


_GAPS = st.one_of(
    st.floats(1.0, 299.0),  # back within 5 minutes
    st.floats(301.0, 3599.0),  # late
    st.floats(3601.0, 2 * 86400.0),  # a break
)


@given(st.lists(_GAPS, max_size=30), st.one_of(st.floats(1.0, 299.0), st.floats(3601.0, 1e6)))
def test_the_one_prefix_of_a_template_gets_the_template_ratio(
    gaps: list[float], last: float
) -> None:
    """A template of one prefix learns the same returns as the prefix: the prefix's own history
    (``ReuseRecord.tail``, taken as the next arrival comes ``last`` seconds later) changes
    nothing (``doc_qa``'s one document: its 5m entry kept alive by 0.05x pings is cheaper than
    1h, and a ratio even a little higher than its template's wrote it for an hour)."""
    h, record, t = GapHistogram.empty(), None, 0.0
    for gap in [*gaps, None]:
        h = h.add_trial(t)  # one arrival of the prefix, as the planner learns it
        record = record_arrival(record, t, DECAY_PREFIX)
        if gap is not None:
            h, t = h.add_return(gap, t), t + gap
    assert record is not None
    template = late_per_break(h, t + last)
    ratio = own_late_per_break(*record.tail(arriving_at=t + last), template)
    assert ratio == (None if template is None else pytest.approx(template, rel=1e-9))


def test_a_prefix_own_long_memory_is_its_late_returns_and_breaks() -> None:
    """``ReuseRecord.tail`` decays only when a return after 5 minutes resolves, as a
    histogram's tail does: a morning of quick returns forgets none of the late ones."""
    record, t = None, 0.0
    for gap in [600.0, 30.0, 30.0, 1200.0, *[30.0] * 40, 86400.0]:
        record = record_arrival(record, t, DECAY_PREFIX)
        t += gap
    assert record is not None
    late, breaks = record.tail()
    assert (late, breaks) == (pytest.approx(1.9), 0.0)  # the last arrival still open
    late, breaks = record.tail(arriving_at=t)  # the next day's first: the day break
    assert (late, breaks) == (pytest.approx(1.9 * 0.9), pytest.approx(1.0))
    stored = ReuseRecord.from_json(record.to_json())
    assert stored is not None
    assert stored.tail() == record.tail()


@given(st.lists(st.one_of(st.none(), st.floats(0.0, 3 * 3600.0)), max_size=40))
def test_late_per_break_is_a_finite_non_negative_ratio(outcomes: list[float | None]) -> None:
    h, now = _history(outcomes)
    ratio = late_per_break(h, now)
    assert ratio is None or 0.0 <= ratio < math.inf
    assert late_per_break(GapHistogram.from_json(h.to_json()), now) == ratio
