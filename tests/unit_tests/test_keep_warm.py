"""The keep-alive scheduler under a virtual clock, and its decision (``planner.keepalive``).

Due times, cancellation when the follow-up arrives (or another request reads part of the
prefix), the decision to stop, the budget, nothing after ``close()``, and the background thread
that ends on close and at exit.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_claude_relay._keepwarm import MARGIN, KeepWarmScheduler, PendingKeepAlive
from langchain_claude_relay.planner.followup import (
    BOUNDARIES,
    PRIOR_GAPS,
    GapHistogram,
    shrink,
    survival,
)
from langchain_claude_relay.planner.keepalive import (
    KeepAlive,
    bridge_cost,
    keep_alive_value,
    keepalive_request,
    ping_decisions,
)
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    ClaudeRequest,
    Message,
    Position,
)

LIKELY = (1.0, 0.9, 0.6, 0.3, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01)
"""Back within 5-25 minutes, almost surely (a build of 10-20 minutes)."""
NEVER = (1.0,) * (BOUNDARIES + 1)
"""Never back."""


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def advice(
    prefix: str = "a" * 32,
    *,
    written_at: float = 1000.0,
    tokens: int = 10_000,
    chances: tuple[float, ...] = LIKELY,
    refreshes: tuple[tuple[str, Any, int], ...] | None = None,
) -> KeepAlive:
    """Opus 5.5 prices per token: read 0.2, 5m write 5 (USD per million)."""
    return KeepAlive(
        prefix_hash=prefix,
        position=Position("messages", 2),
        ttl="5m",
        written_at=written_at,
        tokens=tokens,
        ping_cost=tokens * 0.2e-6,
        loss_per_token=(5.0 - 0.2) * 1e-6,
        held_tokens=0,
        survival=chances,
        refreshes=refreshes if refreshes is not None else ((prefix, "5m", tokens),),
        lineage_key=None,
        model="claude-opus-5-5",
    )


def pending(keep: KeepAlive, worst: float = 0.01) -> PendingKeepAlive:
    return PendingKeepAlive(keep, {"ping": keep.prefix_hash}, extra_cost=0.0, worst_case_usd=worst)


class Recorder:
    """A sender that records what it sent and when (on the virtual clock)."""

    def __init__(self, clock: Clock, cost: float = 0.002) -> None:
        self.clock = clock
        self.cost = cost
        self.sent: list[tuple[float, str]] = []

    def __call__(self, item: PendingKeepAlive, at: float) -> float:
        self.sent.append((at, item.keep.prefix_hash))
        return self.cost


def scheduler(clock: Clock, send: Any, budget: float = 1.0) -> KeepWarmScheduler:
    return KeepWarmScheduler(clock, send, budget_usd=budget, background=False)


# -- due times -----------------------------------------------------------------------------


def test_a_keep_alive_falls_due_just_before_the_entry_expires() -> None:
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    assert keep.schedule(pending(advice()))
    assert keep.next_due() == 1000.0 + 300.0 - MARGIN
    assert keep.run_due(1000.0 + 284.0) == 0  # not due yet: nothing runs by itself either
    clock.now = 1000.0 + 285.0
    assert keep.run_due(clock.now) == 1
    assert sent.sent == [(1285.0, "a" * 32)]
    assert keep.next_due() == 1285.0 + 300.0 - MARGIN  # the read restarted the entry's TTL


def test_run_due_sends_everything_due_at_or_before_now_in_order() -> None:
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    keep.schedule(pending(advice("a" * 32)))
    keep.schedule(pending(advice("b" * 32, written_at=1100.0)))
    assert keep.run_due(1700.0) == 4  # a at 1285 and 1570, b at 1385 and 1670
    assert [h[0] for _t, h in sent.sent] == ["a", "b", "a", "b"]
    assert [t for t, _h in sent.sent] == [1285.0, 1385.0, 1570.0, 1670.0]  # each at its time


def test_a_keep_alive_whose_entry_expired_meanwhile_is_dropped() -> None:
    """A suspended process, or a late ``run_due``: the entry is gone, a keep-alive would only
    re-buy the write the follow-up pays anyway."""
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    keep.schedule(pending(advice()))
    clock.now = 1000.0 + 300.0  # the entry's expiry
    assert keep.run_due() == 0
    assert sent.sent == []
    assert keep.pending == 0


def test_nothing_runs_by_itself_under_an_injected_clock() -> None:
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    keep.schedule(pending(advice()))
    clock.now += 3600.0
    time.sleep(0.05)
    assert sent.sent == []
    assert not keep.running


# -- cancellation and the decision to stop ------------------------------------------------


def test_the_follow_up_cancels_its_keep_alive() -> None:
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    keep.schedule(pending(advice("a" * 32)))
    assert keep.cancel(["0" * 32, "a" * 32, "f" * 32]) == 1  # the follow-up carries the prefix
    assert keep.pending == 0
    assert keep.run_due(99_999.0) == 0


def test_a_shorter_prefix_read_by_another_request_leaves_only_the_rest_at_stake() -> None:
    # A question after a large document: another question reads the document itself, so
    # keeping this one's entry alive only saves its few question tokens.
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    refreshes = (("d" * 32, "5m", 9_950), ("q" * 32, "5m", 10_000))
    keep.schedule(pending(advice("q" * 32, refreshes=refreshes)))
    keep.cancel(["d" * 32, "x" * 32])  # the next question: same document, another question
    assert keep.pending == 1
    assert keep.run_due(5000.0) == 0  # 50 tokens are not worth 10,000 read
    assert keep.pending == 0


def test_keep_alives_stop_when_the_return_stops_being_likely() -> None:
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    keep.schedule(pending(advice(chances=LIKELY)))
    assert keep.run_due(1000.0 + 3600.0 * 2) < BOUNDARIES - 1
    assert len(sent.sent) >= 2  # it kept the entry through the likely return...
    assert keep.pending == 0  # ...and gave up once it was no longer likely
    never = scheduler(clock, Recorder(clock))
    never.schedule(pending(advice(chances=NEVER)))
    assert never.run_due(99_999.0) == 0


def test_the_decision_weighs_a_read_against_the_rewrite() -> None:
    s = survival(PRIOR_GAPS)
    assert ping_decisions(s, ping=0.05, loss=1.2)[0]  # cheap reads: keep it alive
    assert not any(ping_decisions(s, ping=1.3, loss=1.2))  # a ping dearer than the rewrite
    assert keep_alive_value(NEVER, 0.05, 1.2) == 0.0
    assert bridge_cost(NEVER, 0.1, 1.25) == 1.25  # no return expected: priced as a rewrite
    assert 0.1 < bridge_cost(LIKELY, 0.1, 1.25) < 1.25


# -- budget ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:keep-alive requests stopped:RuntimeWarning")
@settings(max_examples=60, deadline=None)
@given(
    budget=st.floats(0.0, 0.05),
    worst=st.floats(0.001, 0.02),
    actual=st.floats(0.0, 1.0),
    prefixes=st.integers(1, 4),
)
def test_the_spend_never_exceeds_the_budget(
    budget: float, worst: float, actual: float, prefixes: int
) -> None:
    clock = Clock()
    sent = Recorder(clock, cost=worst * actual)  # what one costs is at most its worst case
    keep = scheduler(clock, sent, budget=budget)
    for i in range(prefixes):
        keep.schedule(pending(advice(str(i) * 32), worst=worst))
    keep.run_due(1000.0 + 3600.0)
    assert keep.spent_usd <= budget + 1e-12
    assert keep.spent_usd == pytest.approx(len(sent.sent) * worst * actual)


def test_a_failed_keep_alive_is_dropped_not_retried() -> None:
    clock = Clock()

    def fail(_item: PendingKeepAlive) -> float:
        raise ConnectionError("relay gone")

    keep = scheduler(clock, fail)
    keep.schedule(pending(advice()))
    assert keep.run_due(5000.0) == 0
    assert keep.pending == 0
    assert keep.spent_usd == 0.0


def test_an_interrupted_keep_alive_is_dropped_and_its_worst_case_stays_spent() -> None:
    # Ctrl-C while ``run_keep_warm`` sends: the request may have gone out (billed), so its
    # worst case stays on the budget; it is dropped, not left "being sent" for good (it then
    # never went again, and held its worst case on top of what was spent).
    clock = Clock()

    def interrupted(_item: PendingKeepAlive, _at: float) -> float:
        raise KeyboardInterrupt

    keep = scheduler(clock, interrupted)
    keep.schedule(pending(advice(), worst=0.01))
    with pytest.raises(KeyboardInterrupt):
        keep.run_due(5000.0)
    assert keep.pending == 0
    assert keep.spent_usd == pytest.approx(0.01)
    assert keep.run_due(99_999.0) == 0


# -- close, exit, fork, the thread --------------------------------------------------------


def test_nothing_is_scheduled_or_sent_after_close() -> None:
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    keep.schedule(pending(advice("a" * 32)))
    keep.close()
    assert not keep.schedule(pending(advice("b" * 32)))
    assert keep.run_due(99_999.0) == 0
    assert sent.sent == []


def test_a_forked_child_never_sends_its_parents_keep_alives() -> None:
    clock = Clock()
    sent = Recorder(clock)
    keep = scheduler(clock, sent)
    keep.schedule(pending(advice()))
    keep._after_fork_in_child()
    assert keep.pending == 0
    assert keep.run_due(99_999.0) == 0


def test_the_thread_sends_on_the_wall_clock_and_ends_on_close() -> None:
    sent: list[float] = []
    done = threading.Event()

    def send(_item: PendingKeepAlive, _at: float) -> float:
        sent.append(time.time())
        done.set()
        return 0.0

    keep = KeepWarmScheduler(time.time, send, budget_usd=1.0, background=True)
    keep.schedule(pending(advice(written_at=time.time() - 300.0 + MARGIN + 0.05)))
    assert keep.running
    assert done.wait(5.0), "the thread did not send the keep-alive that fell due"
    keep.close()
    assert not keep.running
    assert len(sent) == 1


def test_the_thread_waits_while_another_thread_sends_a_keep_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # run_keep_warm() in the user's thread sent the keep-alive while the daemon thread waited:
    # next_due() still gave the in-flight one's past due time, so the thread spun on a zero
    # wait (hundreds of thousands of wake-ups, a core busy) until the send returned
    import langchain_claude_relay._keepwarm as keepwarm

    monkeypatch.setattr(keepwarm, "MARGIN", 299.0)  # the next one falls due 1 s after a send
    sent: list[str] = []
    wakeups = itertools.count()
    in_thread = KeepWarmScheduler._run_in_thread

    def counted(self: KeepWarmScheduler) -> None:
        next(wakeups)
        in_thread(self)

    monkeypatch.setattr(KeepWarmScheduler, "_run_in_thread", counted)
    again = threading.Event()

    def send(_item: PendingKeepAlive, _at: float) -> float:
        sent.append(threading.current_thread().name)
        if len(sent) == 1:
            time.sleep(1.0)  # a slow relay
        else:
            again.set()
        return 0.0

    keep = KeepWarmScheduler(time.time, send, budget_usd=1.0, background=True)
    keep.schedule(pending(advice(written_at=time.time() - 1.0 + 0.2)))  # due in 0.2 s
    assert keep.run_due(time.time() + 1.0) == 1  # the user's thread sends it, a little early
    assert next(wakeups) < 50
    # the thread still sends the next one, due 1 s after the one sent here
    assert again.wait(5.0), "the thread did not send the next keep-alive"
    keep.close()
    assert sent[0] == threading.current_thread().name
    assert sent[1] == "claude-relay-keep-warm"


def test_the_thread_ends_at_interpreter_exit() -> None:
    keep = KeepWarmScheduler(time.time, lambda _i, _at: 0.0, budget_usd=1.0, background=True)
    keep.schedule(pending(advice(written_at=time.time())))
    assert keep.running
    keep._at_exit()  # what _plumbing.on_exit_and_fork calls from atexit
    assert not keep.running
    assert keep.closed
    assert keep.pending == 0


# -- the request a keep-alive sends ---------------------------------------------------------


def _marked(thinking: Any = None) -> ClaudeRequest:
    request = ClaudeRequest(
        "claude-opus-5-5",
        system=(Block("text", {"text": "a large system prompt"}),),
        messages=(
            Message("user", (Block("text", {"text": "Run the tests."}),)),
            Message(
                "assistant", (Block("tool_use", {"id": "t1", "name": "run_tests", "input": {}}),)
            ),
            Message("user", (Block("tool_result", {"tool_use_id": "t1", "content": "ok"}),)),
        ),
        tool_choice="any",
        thinking=thinking,
    )
    return request.with_markers(
        {
            Position("system", 0): CacheControl("1h"),
            Position("messages", 0): CacheControl("5m"),
            Position("messages", 2): CacheControl("5m"),
        }
    )


def test_a_keep_alive_reads_exactly_the_prefix_it_keeps() -> None:
    request = _marked()
    full = keepalive_request(request, Position("messages", 2))
    assert full is not None
    assert full.prefix_hashes() == request.prefix_hashes()  # the whole request, as sent
    assert full.markers() == request.markers()
    cut = keepalive_request(request, Position("messages", 0))
    assert cut is not None
    assert cut.prefix_hashes() == request.prefix_hashes()[:2]
    assert set(cut.markers()) == {Position("system", 0), Position("messages", 0)}
    system = keepalive_request(_marked(thinking={"type": "adaptive"}), Position("system", 0))
    assert system is not None  # the system prompt does not depend on thinking or tool choice
    assert system.thinking is None
    assert system.tool_choice is None
    assert system.prefix_hashes()[0] == request.prefix_hashes()[0]
    assert keepalive_request(request, Position("messages", 1)) is None  # an assistant turn


# -- learning the follow-up: arrivals still open are censored, not ignored ------------------


def _conversations(quick: int, stopped: int, start: float = 0.0) -> GapHistogram:
    """``quick`` turns answered within 20 s, then ``stopped`` conversations that end there."""
    h = GapHistogram.empty()
    t = start
    for _ in range(quick):
        h = h.add_trial(t).add_return(20.0, t)
        t += 30.0
    for _ in range(stopped):
        h = h.add_trial(t)
        t += 30.0
    return h


@pytest.mark.parametrize(("stopped", "open_for"), [(2, 900.0), (4, 600.0), (6, 1200.0)])
def test_conversations_that_stopped_are_not_kept_warm_within_the_hour(
    stopped: int, open_for: float
) -> None:
    h = _conversations(10, stopped)
    now = 30.0 * (10 + stopped) + open_for
    learned = survival(shrink(h, PRIOR_GAPS, now=now))
    # Opus 5.5: a keep-alive reads the prefix at 0.05x, a rewrite costs 1.25x - 0.05x
    assert not ping_decisions(learned, ping=0.05, loss=1.2)[0]
    # counting the resolved arrivals only, the quick returns made a later one look as likely
    # as the prior says (half of those not back in 5 minutes): keep-alives that nothing reads
    assert ping_decisions(survival(shrink(h, PRIOR_GAPS)), ping=0.05, loss=1.2)[0]


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 5000.0), max_size=12),
    now=st.floats(0.0, 1e6),
    weight=st.floats(0.1, 4.0),
)
def test_with_nothing_open_the_time_changes_nothing(
    gaps: list[float], now: float, weight: float
) -> None:
    h = GapHistogram.empty()
    for i, gap in enumerate(gaps):
        h = h.add_trial(i * 1e4).add_return(gap, i * 1e4)
    plain = shrink(h, PRIOR_GAPS, weight)
    timed = shrink(h, PRIOR_GAPS, weight, now=now + len(gaps) * 1e4)
    assert timed == pytest.approx(plain)
    assert sum(timed) == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    quick=st.integers(0, 10),
    stopped=st.integers(1, 8),
    open_for=st.floats(0.0, 7200.0),
)
def test_censored_probabilities_are_a_distribution(
    quick: int, stopped: int, open_for: float
) -> None:
    h = _conversations(quick, stopped)
    p = shrink(h, PRIOR_GAPS, now=30.0 * (quick + stopped) + open_for)
    assert min(p) >= 0.0
    assert sum(p) == pytest.approx(1.0)
    s = survival(p)
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(s))


@pytest.mark.parametrize(
    ("target", "labels"),
    [
        (Position("system", 0), {Position("system", 0): "1h", Position("messages", 0): "1h"}),
        (Position("messages", 0), {Position("system", 0): "1h", Position("messages", 0): "1h"}),
        (Position("messages", 2), {Position("messages", 0): "1h", Position("messages", 2): "1h"}),
    ],
)
def test_a_keep_alive_marks_its_target_with_the_entrys_ttl(
    target: Position, labels: dict[Position, str]
) -> None:
    """A 5m entry may sit under a 1h label (it comes before a 1h marker in the request that
    read it): its keep-alive must not write it for an hour if it is gone after all."""
    request = ClaudeRequest(
        "claude-opus-5-5",
        system=(Block("text", {"text": "doc"}),),
        messages=(
            Message("user", (Block("text", {"text": "q"}),)),
            Message("assistant", (Block("text", {"text": "a"}),)),
            Message("user", (Block("text", {"text": "q2"}),)),
        ),
    ).with_markers({p: CacheControl(ttl) for p, ttl in labels.items()})  # type: ignore[arg-type]
    ping = keepalive_request(request, target, ttl="5m")
    assert ping is not None
    markers = ping.markers()
    assert markers[target].ttl == "5m"
    assert all(m.ttl == "1h" for p, m in markers.items() if p != target)  # the order holds
