"""Keep-alive requests end to end on the emulator: a 12-minute tool call, billed and bounded.

The planner's clock is the emulator's virtual clock, so nothing is sent by itself: each test
moves the clock to the next keep-alive's due time and calls ``run_keep_warm`` (as the
benchmark does), except the one that checks the wall-clock thread.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from ways_in import way_params

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.callbacks import track_costs
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.limiter import RateLimiter
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.usage import from_usage_metadata

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OPUS = "claude-opus-5-5"
RUN_TESTS = {
    "type": "function",
    "function": {
        "name": "run_tests",
        "description": "Run the project's test suite and report failures.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
}
_TAGS = itertools.count()


def _system() -> SystemMessage:
    tag = f"agent number {next(_TAGS)}"
    return SystemMessage(f"[{tag}] You are a coding agent. " + "Tests must pass first. " * 900)


def _planner(emu: RelayEmulator, store: MemoryStore | None = None) -> CachePlanner:
    """A planner on the emulator's virtual clock (on ``store``, or a store of its own)."""

    def clock() -> float:
        return emu.now

    return CachePlanner(store if store is not None else MemoryStore(clock=clock), clock=clock)


def _model(
    emu: RelayEmulator,
    *,
    way: str = "openai",
    planner: CachePlanner | None = None,
    **extra: Any,
) -> ChatClaudeRelay:
    """A model on ``emu`` that keeps warm, on ``planner`` (default: its own, on ``emu``'s clock)."""
    planner = planner if planner is not None else _planner(emu)
    extra.setdefault("keep_warm", "auto")  # off by default
    extra.setdefault("max_retries", 0)
    params = way_params(way, emu, max_tokens=64, cache=planner, **extra)
    params["model"] = OPUS if way in ("openai", "anthropic") else params["model"]
    params.setdefault("ledger", MemoryLedger())
    return ChatClaudeRelay(**params)


def _wall_clock_model(emu: RelayEmulator, **extra: Any) -> ChatClaudeRelay:
    """A model whose planner runs on the wall clock (``time.time``), as users get it."""
    return ChatClaudeRelay(
        **way_params(
            "openai",
            emu,
            model=OPUS,
            max_retries=0,
            max_tokens=64,
            ledger=False,
            cache=CachePlanner(MemoryStore()),
            **extra,
        )
    )


def _keep_warm_until(llm: ChatClaudeRelay, emu: RelayEmulator, until: float) -> int:
    sent = 0
    while (due := llm.next_keep_warm()) is not None and due < until:
        emu.set_time(due)
        sent += llm.run_keep_warm(due)
    emu.set_time(until)
    return sent


def _tool_round(llm: ChatClaudeRelay, system: SystemMessage) -> tuple[list[BaseMessage], Any]:
    """The agent asks for run_tests; returns the conversation with the test result added."""
    messages: list[BaseMessage] = [system, HumanMessage("Please run_tests on the repository.")]
    reply = llm.invoke(messages, tools=[RUN_TESTS])
    assert [c["name"] for c in reply.tool_calls] == ["run_tests"]
    call = reply.tool_calls[0]
    result = ToolMessage("412 passed, 3 failed: " + "trace line " * 200, tool_call_id=call["id"])
    return [*messages, AIMessage("", tool_calls=[call]), result], reply


def test_the_cache_survives_a_12_minute_tool_call(emulator: RelayEmulator) -> None:
    llm = _model(emulator)
    messages, first = _tool_round(llm, _system())
    prefix = from_usage_metadata(first.usage_metadata).cache_write_tokens
    assert prefix > 5_000
    sent = _keep_warm_until(llm, emulator, 12 * 60.0)  # the test suite runs for 12 minutes
    assert sent == 2  # at 4:45 and 9:30: each restarts the 5-minute entry
    follow_up = llm.invoke(messages, tools=[RUN_TESTS])
    read = follow_up.usage_metadata["input_token_details"]["cache_read"]
    assert read >= prefix  # the whole prefix was still cached
    bills = emulator.billing_log
    assert len(bills) == 4
    pings = bills[1:3]
    assert all(b.cache_read >= prefix and b.cache_write == 0 for b in pings)
    assert all(b.output_tokens == 1 for b in pings)  # a relay: max_tokens 1
    # what it cost against the alternatives, at Opus 5.5's prices
    prices = lookup_model(OPUS).prices
    assert prices is not None
    keep_alive = sum(b.cost_usd or 0.0 for b in pings)
    one_hour_premium = prefix * (prices.cache_write_1h - prices.cache_write_5m) / 1e6
    rewrite = prefix * (prices.cache_write_5m - prices.cache_read) / 1e6
    assert keep_alive < one_hour_premium < rewrite
    assert llm.keep_warm_spent_usd == pytest.approx(keep_alive)
    llm.close()


def test_keep_alives_book_the_rate_limiter_and_never_wait_for_it(emulator: RelayEmulator) -> None:
    # Two requests a minute, on a frozen limiter clock: the call takes one, the first
    # keep-alive the other; the second finds no room and is skipped, not queued.
    limiter = RateLimiter(rpm=2, clock=lambda: 0.0, sleep=lambda _s: None)
    llm = _model(emulator, rate_limiter=limiter)
    _tool_round(llm, _system())
    assert limiter.stats()["requests"] == 1
    assert _keep_warm_until(llm, emulator, 12 * 60.0) == 1  # two fall due; the limiter allows one
    assert limiter.stats()["requests"] == 2
    assert len(emulator.billing_log) == 2  # the call and one keep-alive
    llm.close()


def test_native_keep_alives_ask_for_no_output(emulator: RelayEmulator) -> None:
    llm = _model(emulator, way="anthropic")
    _tool_round(llm, _system())
    assert _keep_warm_until(llm, emulator, 6 * 60.0) == 1
    ping = emulator.billing_log[-1]
    assert ping.output_tokens == 0  # max_tokens 0: a read, no answer
    assert ping.cache_read > 5_000
    llm.close()


def test_keep_alives_are_billed_as_keep_alive_spend(emulator: RelayEmulator) -> None:
    ledger = MemoryLedger()
    llm = _model(emulator, ledger=ledger)
    with track_costs(clock=lambda: emulator.now) as costs:
        messages, _first = _tool_round(llm, _system())
        sent = _keep_warm_until(llm, emulator, 12 * 60.0)
        llm.invoke(messages, tools=[RUN_TESTS])
    entries = ledger.entries()
    assert sum(e.keep_alive for e in entries) == sent == 2
    assert costs.calls == 2  # keep-alives are spend, not calls
    assert costs.keep_alive_calls == sent
    billed = {b.request_id: b for b in emulator.billing_log}
    assert costs.keep_alive_cost_usd == pytest.approx(llm.keep_warm_spent_usd)
    assert costs.cost_usd == pytest.approx(sum(b.cost_usd or 0.0 for b in billed.values()))
    summary = ledger.summary()
    assert summary.keep_alive_calls == 2
    assert summary.calls == 2
    llm.close()


def test_off_sends_nothing_in_the_background(emulator: RelayEmulator) -> None:
    llm = _model(emulator, keep_warm="off")
    messages, _first = _tool_round(llm, _system())
    assert llm.next_keep_warm() is None
    assert _keep_warm_until(llm, emulator, 12 * 60.0) == 0
    follow_up = llm.invoke(messages, tools=[RUN_TESTS])
    assert follow_up.usage_metadata["input_token_details"]["cache_read"] == 0  # expired
    assert len(emulator.billing_log) == 2
    assert llm._keep_warm_state is None  # no scheduler, no thread, ever


def test_nothing_is_sent_after_close(emulator: RelayEmulator) -> None:
    with _model(emulator) as llm:
        _tool_round(llm, _system())
        assert llm.next_keep_warm() is not None
    assert llm.next_keep_warm() is None
    assert _keep_warm_until(llm, emulator, 12 * 60.0) == 0
    assert len(emulator.billing_log) == 1


def test_the_budget_caps_the_spend(emulator: RelayEmulator) -> None:
    llm = _model(emulator, keep_warm_budget_usd=0.0001)  # less than one keep-alive's worst case
    with pytest.warns(RuntimeWarning, match="budget"):
        _tool_round(llm, _system())
    assert _keep_warm_until(llm, emulator, 12 * 60.0) == 0
    assert llm.keep_warm_spent_usd <= 0.0001
    llm.close()


def test_with_the_wall_clock_a_daemon_thread_waits_and_ends_on_close(
    emulator: RelayEmulator,
) -> None:
    llm = _wall_clock_model(emulator, keep_warm="auto")
    _tool_round(llm, _system())
    scheduler = llm._keep_warm_state
    assert scheduler is not None
    assert scheduler.running  # waiting for 4:45 from now
    llm.close()
    assert not scheduler.running
    assert len(emulator.billing_log) == 1


def test_by_default_nothing_is_kept_warm(emulator: RelayEmulator) -> None:
    """``keep_warm`` is off unless asked for: no scheduler, no thread, one request billed."""
    llm = _wall_clock_model(emulator)  # a thread would start if keep-alives were on
    assert llm.keep_warm == "off"
    _tool_round(llm, _system())
    assert llm._keep_warm_state is None
    assert llm.next_keep_warm() is None
    assert llm.run_keep_warm(time.time() + 3600) == 0
    assert len(emulator.billing_log) == 1


def test_the_budget_counts_a_long_prompts_tier(emulator: RelayEmulator) -> None:
    """Haiku 5.5 bills every token 5x above 100K: a keep-alive of a 130K-token prefix may cost
    that, so a budget that covers it only at the base price sends none."""
    llm = _model(emulator, keep_warm_budget_usd=0.05)
    llm.model_name = "claude-haiku-5-5"
    system = SystemMessage(f"[{next(_TAGS)}] " + "Tests must pass first. " * 26_000)
    with pytest.warns(RuntimeWarning, match="budget"):
        _messages, first = _tool_round(llm, system)
    prefix = first.usage_metadata["input_tokens"]
    prices = lookup_model("claude-haiku-5-5").prices
    assert prices is not None
    assert prefix * prices.cache_write_1h / 1e6 < 0.05 < prefix * 5 * prices.cache_write_1h / 1e6
    assert llm.next_keep_warm() is None
    llm.close()


def test_close_while_the_first_scheduler_is_built_leaves_none_running(
    emulator: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # close() read the scheduler before the call being answered published it: that scheduler
    # then went on sending keep-alives after close()
    import threading

    from langchain_claude_relay import chat_models

    llm = _wall_clock_model(emulator, keep_warm="auto")
    closer: list[threading.Thread] = []

    class SlowToBuild(chat_models.KeepWarmScheduler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            closer.append(threading.Thread(target=llm.close))
            closer[0].start()
            time.sleep(0.2)  # close() runs now, from the other thread
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(chat_models, "KeepWarmScheduler", SlowToBuild)
    _tool_round(llm, _system())
    closer[0].join(5)
    scheduler = llm._keep_warm_state
    assert scheduler is None or scheduler.closed
    assert llm.next_keep_warm() is None


def test_a_tracker_passed_to_a_stream_gets_its_keep_alives(emulator: RelayEmulator) -> None:
    # LangChain's stream() gives the chat model no run manager, so a tracker passed as
    # callbacks=[tracker] counted the streamed call but never its keep-alives.
    from langchain_claude_relay.callbacks import CostTracker

    llm = _model(emulator)
    tracker = CostTracker(clock=lambda: emulator.now)
    messages: list[BaseMessage] = [_system(), HumanMessage("Please run_tests on the repository.")]
    chunks = list(llm.stream(messages, tools=[RUN_TESTS], config={"callbacks": [tracker]}))
    assert chunks
    assert tracker.calls == 1
    sent = _keep_warm_until(llm, emulator, 12 * 60.0)
    assert sent == 2
    assert tracker.keep_alive_calls == sent
    assert tracker.keep_alive_cost_usd == pytest.approx(llm.keep_warm_spent_usd)
    llm.close()


# -- one attempt; models that share a planner; copies and pickles --------------------------------


def test_a_failed_keep_alive_is_sent_once_not_retried(emulator: RelayEmulator) -> None:
    # With the user's retries (2), an overloaded relay got three attempts per keep-alive; a
    # retry honouring retry-after also came after the entry expired, paying the write.
    llm = _model(emulator, max_retries=2)
    _tool_round(llm, _system())
    calls = len(emulator.request_log)
    scheduler = llm._keep_warm_state
    assert scheduler is not None
    kept = scheduler.pending  # the conversation's and the system prompt's
    assert kept >= 1
    emulator.fail_next("529", count=10)
    assert _keep_warm_until(llm, emulator, 12 * 60.0) == 0
    outcomes = [r.outcome for r in emulator.request_log[calls:]]
    assert outcomes == ["fault:529"] * kept  # one attempt each, then dropped
    assert llm.next_keep_warm() is None
    llm.close()


def test_a_keep_alive_whose_answer_is_lost_is_billed_at_its_worst_case(
    emulator: RelayEmulator,
) -> None:
    # The relay cut the keep-alive's answer: it went out and began (so Claude billed it), but
    # its usage was lost. It is in the ledger and the trackers as an estimated read of the
    # prefix, and the budget counts its worst case; it was not dropped as a failure.
    ledger = MemoryLedger()
    llm = _model(emulator, ledger=ledger)
    with track_costs(clock=lambda: emulator.now) as costs:
        _tool_round(llm, _system())
        scheduler = llm._keep_warm_state
        assert scheduler is not None
        worst = {h: p.worst_case_usd for h, p in scheduler._pending.items()}
        emulator.fail_next("cut", count=len(worst))
        sent = _keep_warm_until(llm, emulator, 4 * 60.0 + 50.0)  # the first round only
    lost = [e for e in ledger.entries() if e.keep_alive]
    assert len(lost) == sent >= 1
    assert all(e.estimated and e.cache_read_tokens > 0 and e.cache_write_tokens == 0 for e in lost)
    assert [r.outcome for r in emulator.request_log[1:]] == ["fault:cut"] * sent
    assert costs.keep_alive_calls == sent
    assert llm.keep_warm_spent_usd == pytest.approx(sum(worst[e.read_prefix] for e in lost))
    assert llm.keep_warm_spent_usd <= llm.keep_warm_budget_usd
    llm.close()


def test_a_keep_alive_whose_answer_is_lost_still_tells_the_planner_the_entry_lives_on(
    emulator: RelayEmulator,
) -> None:
    # The cut keep-alive began, so Claude read (and restarted) the entry; the scheduler counts
    # it refreshed, and so must the planner: the follow-up after the first TTL predicts the
    # read it gets. (The planner was not told, and predicted writing the whole prefix again.)
    llm = _model(emulator)
    messages, first = _tool_round(llm, _system())
    prefix = from_usage_metadata(first.usage_metadata).cache_write_tokens
    scheduler = llm._keep_warm_state
    assert scheduler is not None
    emulator.fail_next("cut")
    # one keep-alive in the first round (it reads the system prompt's prefix too), cut
    assert _keep_warm_until(llm, emulator, 6 * 60.0) == 1
    assert {r.outcome for r in emulator.request_log[1:]} == {"fault:cut"}
    follow_up = llm.invoke(messages, tools=[RUN_TESTS])
    read = follow_up.usage_metadata["input_token_details"]["cache_read"]
    assert read >= prefix  # the cut keep-alive did restart the entry
    predicted = follow_up.response_metadata["cache_plan"]["predicted_read_tokens"]
    assert predicted >= 0.9 * prefix
    llm.close()


def test_a_keep_alive_interrupted_in_flight_is_recorded_then_the_interrupt_raised(
    emulator: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C in a ``run_keep_warm`` whose keep-alive had gone out (the transport tells
    # ``on_lost``, as for a user's call interrupted in flight): Claude billed it, so it is in
    # the ledger as an estimated read before the interrupt goes on.
    ledger = MemoryLedger()
    llm = _model(emulator, ledger=ledger)
    _tool_round(llm, _system())
    due = llm.next_keep_warm()
    assert due is not None

    def interrupted_in_flight(*_args: Any, on_lost: Any, **_kwargs: Any) -> Any:
        interrupt = KeyboardInterrupt()
        on_lost(interrupt)
        raise interrupt

    monkeypatch.setattr(llm._transport, "create_once", interrupted_in_flight)
    emulator.set_time(due)
    with pytest.raises(KeyboardInterrupt):
        llm.run_keep_warm(due)
    kept = [e for e in ledger.entries() if e.keep_alive]
    assert len(kept) == 1
    assert kept[0].estimated
    assert kept[0].cache_read_tokens > 0
    llm.close()


def test_a_follow_up_through_another_model_on_the_planner_cancels_the_keep_alives(
    emulator: RelayEmulator,
) -> None:
    planner = _planner(emulator)
    first, second = (_model(emulator, planner=planner) for _ in range(2))
    first.next_keep_warm()  # both are driven (an injected clock)
    second.next_keep_warm()
    messages, _ = _tool_round(first, _system())
    assert first.next_keep_warm() is not None
    emulator.set_time(120.0)
    second.invoke(messages, tools=[RUN_TESTS])  # the follow-up, through the other model
    assert first.next_keep_warm() is None  # it read the prefix: the first model's stop
    first.close()
    second.close()


def test_a_copy_keeps_warm_on_its_own_and_sends_to_its_own_relay(emulator: RelayEmulator) -> None:
    llm = _model(emulator)
    _tool_round(llm, _system())
    assert llm.next_keep_warm() is not None
    copied = llm.model_copy()
    copied.close()  # closing a copy used to stop the original's keep-alives (one scheduler)
    assert llm.next_keep_warm() is not None
    assert copied.next_keep_warm() is None
    with RelayEmulator() as other:  # built clients were copied: the old relay and key
        moved = llm.model_copy(update={"base_url": other.base_url})
        moved.invoke("hello")
        assert len(other.billing_log) == 1
    llm.close()


def test_a_model_that_keeps_warm_can_be_pickled_and_deep_copied(
    emulator: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "test-relay-key-0123456789")  # pickles hold none
    llm = ChatClaudeRelay(
        **way_params("openai", emulator, model=OPUS, max_tokens=64, ledger=False, keep_warm="auto")
    )
    _tool_round(llm, _system())  # on the wall clock: a scheduler with its thread
    assert llm.next_keep_warm() is not None
    for copied in (pickle.loads(pickle.dumps(llm)), copy.deepcopy(llm)):  # noqa: S301
        assert copied.next_keep_warm() is None  # its own scheduler, once it has calls
        assert copied.invoke("hello").content
    assert llm.next_keep_warm() is not None
    llm.close()


def test_a_follow_up_through_another_worker_sharing_the_store_stops_the_keep_alives(
    emulator: RelayEmulator,
) -> None:
    # Two workers of a fleet: their own planners, one store (Redis in production). The
    # follow-up lands on the other worker; the first learns it from the store when its
    # keep-alive falls due, and sends nothing.
    store = MemoryStore(clock=lambda: emulator.now)
    first, second = (_model(emulator, planner=_planner(emulator, store)) for _ in range(2))
    first.next_keep_warm()
    second.next_keep_warm()
    messages, _ = _tool_round(first, _system())
    assert first.next_keep_warm() is not None  # the first worker waits for its follow-up
    emulator.set_time(120.0)
    second.invoke(messages, tools=[RUN_TESTS])
    calls = len(emulator.billing_log)
    assert _keep_warm_until(first, emulator, 12 * 60.0) == 0
    assert len(emulator.billing_log) == calls
    first.close()
    second.close()


def test_a_call_through_another_relay_does_not_cancel_the_keep_alives(
    emulator: RelayEmulator,
) -> None:
    # One planner (as every cache="auto" model in a process shares), two relays: a call on
    # the second reaches another cache, so the first relay's entry still needs its keep-alive.
    planner = _planner(emulator)
    with RelayEmulator() as other:
        first, second = (_model(relay, planner=planner) for relay in (emulator, other))
        first.next_keep_warm()
        second.next_keep_warm()
        messages, _ = _tool_round(first, _system())
        due = first.next_keep_warm()
        assert due is not None
        second.invoke(messages, tools=[RUN_TESTS])  # on the other relay
        assert first.next_keep_warm() == due
        first.close()
        second.close()


def test_a_deep_copy_shares_the_planner_and_a_copy_takes_a_key_given_as_text(
    emulator: RelayEmulator, tmp_path: Any
) -> None:
    from langchain_claude_relay.store import DiskStore

    llm = ChatClaudeRelay(
        **way_params(
            "openai",
            emulator,
            model=OPUS,
            max_tokens=64,
            ledger=False,
            cache=CachePlanner(DiskStore(tmp_path)),  # a sqlite connection: never copied
        )
    )
    llm.invoke("hello")
    copied = copy.deepcopy(llm)
    assert copied.prompt_cache is llm.prompt_cache  # one planner learns from both
    assert copied.invoke("hello").content
    rekeyed = llm.model_copy(update={"api_key": "test-relay-key-other-0123456789"})
    assert rekeyed.invoke("hello").content  # not "'str' object has no attribute ..."
    assert "test-relay-key-other" not in repr(rekeyed)


def test_a_keep_alive_interrupted_after_its_answer_came_is_still_recorded(
    emulator: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C in ``run_keep_warm`` after the keep-alive was answered, while its bookkeeping
    # runs (the planner's store being written: a disk lock, a Redis round trip). Claude
    # billed it: it is in the ledger before the interrupt goes on.
    ledger = MemoryLedger()
    planner = _planner(emulator)
    llm = _model(emulator, ledger=ledger, planner=planner)
    _tool_round(llm, _system())
    due = llm.next_keep_warm()
    assert due is not None

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(planner, "kept_alive", interrupted)
    emulator.set_time(due)
    with pytest.raises(KeyboardInterrupt):
        llm.run_keep_warm(due)
    assert len(emulator.billing_log) == 2  # the call and the keep-alive: billed
    kept = [e for e in ledger.entries() if e.keep_alive]
    assert len(kept) == 1
    assert kept[0].cache_read_tokens > 0
    llm.close()


def test_a_call_before_keep_alives_are_driven_still_learns_its_follow_up(
    emulator: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under an injected clock, ``invoke`` then ``run_keep_warm``: the return is learned.

    The first call is planned without counting on keep-alives (nobody has driven them yet),
    but its keep-alives are scheduled and sent when driven: the tool's 12-minute return
    must teach its follow-up's gaps. Before, such a call opened no trial and the return
    was dropped, so the next run_tests call was judged on the prior alone.
    """
    from langchain_claude_relay.planner.followup import survival, tool_key
    from langchain_claude_relay.planner.history import gap_odds
    from langchain_claude_relay.planner.plan import trace_of

    options: list[dict[str, object]] = []
    follow_keys: list[int] = []
    plan, keep_alives = CachePlanner.plan, CachePlanner.keep_alives

    def spy_plan(self: CachePlanner, request: object, **kw: object) -> object:
        options.append(kw)
        return plan(self, request, **kw)  # type: ignore[arg-type]

    def spy_keep_alives(self: CachePlanner, p: object, usage: object, **kw: object) -> object:
        follow_keys.append(trace_of(p, "test").follow_key)  # type: ignore[arg-type]
        return keep_alives(self, p, usage, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(CachePlanner, "plan", spy_plan)
    monkeypatch.setattr(CachePlanner, "keep_alives", spy_keep_alives)
    store = MemoryStore(clock=lambda: emulator.now)
    llm = _model(emulator, planner=_planner(emulator, store))
    messages, _ = _tool_round(llm, _system())  # not driven yet
    assert not options[0].get("keep_warm")
    assert options[0].get("learn_follow_ups") is True
    assert _keep_warm_until(llm, emulator, 12 * 60.0) == 2
    llm.invoke(messages, tools=[RUN_TESTS])  # the follow-up, 12 minutes later
    tests = tool_key(["run_tests"])
    learned = survival(gap_odds(store, follow_keys[0], tests, emulator.now))
    prior = survival(gap_odds(MemoryStore(), follow_keys[0], tests, emulator.now))
    # back between 10 and 15 minutes: 0.65 now; before, 0.03 against the prior's 0.025 (the
    # return was dropped; only the follow-up's own just-opened trial moved the odds)
    assert learned[2] - learned[3] > prior[2] - prior[3] + 0.1, (learned, prior)
    llm.close()
