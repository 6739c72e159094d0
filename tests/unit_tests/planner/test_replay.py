"""Learning must not make a replayed workload cost more: the same traffic a day later, same store.

Each case runs a workload through plan -> toy Claude -> observe on day one, then the same
requests 24 hours later on the same store (the cache itself is empty by then), and compares.
"""

from __future__ import annotations

from planner_helpers import ESTIMATOR, Clock, ToyClaude, prose, text, tool

from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.planner.history import PrefixHistory
from langchain_claude_relay.planner.placement import Option, Site, choose_markers
from langchain_claude_relay.planner.reuse import ReuseOdds
from langchain_claude_relay.planner.scan import scan_request
from langchain_claude_relay.planner.ttl import Rates
from langchain_claude_relay.request import Block, ClaudeRequest, Message
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.tokens import BlockMemo
from langchain_claude_relay.usage import NormalizedUsage

MODEL = "claude-sonnet-5-5"  # minimum 512
DAY = 86400.0
RATES = Rates.from_prices(lookup_model(MODEL).prices)


def _agent_episode(episode: int, steps: int) -> list[ClaudeRequest]:
    """A tool loop: each request adds a tool call and its result to the previous one."""
    tools = (tool("search_documents"), tool("run_tests"))
    system = (text("You are an agent. " + prose(600, 1)),)
    messages = [Message("user", (text(f"Task {episode}: " + prose(60, 100 + episode)),))]
    out = []
    for step in range(steps):
        out.append(ClaudeRequest(MODEL, tools, system, tuple(messages)))
        call = f"call_{episode}_{step}"
        use = Block("tool_use", {"id": call, "name": "search_documents", "input": {"q": step}})
        words = (80, 900, 6, 1100, 4, 300)[(episode + step) % 6]  # large ones, and tiny ones
        result = Block("tool_result", {"tool_use_id": call, "content": prose(words, step)})
        messages += [Message("assistant", (use,)), Message("user", (result,))]
    return out


def _chat(conversation: int, turns: int) -> list[ClaudeRequest]:
    system = (text("You are a support assistant. " + prose(700, 2)),)
    messages: list[Message] = []
    out = []
    for turn in range(turns):
        messages.append(Message("user", (text(prose(30, 1000 * conversation + turn)),)))
        out.append(ClaudeRequest(MODEL, (), system, tuple(messages)))
        messages.append(Message("assistant", (text(prose(80, 500 * conversation + turn)),)))
    return out


def _replay_usage(
    schedule: list[tuple[float, ClaudeRequest]],
) -> tuple[list[NormalizedUsage], list[NormalizedUsage]]:
    """Per-request usage on day one and on day two (same planner, same store)."""
    clock = Clock(0.0)
    planner = CachePlanner(MemoryStore(clock=clock), clock, encoding=ESTIMATOR)
    days: list[list[NormalizedUsage]] = []
    for day in range(2):
        claude = ToyClaude(minimum=512)
        usages = []
        for at, request in schedule:
            clock.now = day * DAY + at
            plan = planner.plan(request)
            usage = claude.send(plan.apply(), clock())
            planner.observe(plan, usage)
            usages.append(usage)
        days.append(usages)
    return days[0], days[1]


def _cost(usage: NormalizedUsage) -> float:
    return RATES.cost(
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_5m_tokens,
        usage.cache_write_1h_tokens,
    )


def _replay(schedule: list[tuple[float, ClaudeRequest]]) -> tuple[list[float], list[float]]:
    """Per-request input cost on day one and on day two (same planner, same store)."""
    one, two = _replay_usage(schedule)
    return [_cost(u) for u in one], [_cost(u) for u in two]


def _tail_odds(planner: CachePlanner, request: ClaudeRequest, now: float) -> ReuseOdds:
    """The odds the planner gives the request's tail (the last block's prefix) at ``now``."""
    scan = scan_request(request, BlockMemo(), ESTIMATOR)
    history = PrefixHistory(planner.store, lookup_model(MODEL).family, scan, now)
    return history.site_odds(Site(len(scan.items) - 1, "tail"))[0]


def test_a_followed_tail_keeps_its_odds_when_replayed() -> None:
    """Each tail was read by the next step on day one: a day-long gap says nothing against it.

    Before: the tail's own record had seen one arrival, whose only outcome (the replay, a day
    later) was "not back within the hour", so day two halved its odds (0.79 -> 0.42 on the
    bench's agent) and, where a slot was contested, left the tail unmarked: the next step
    wrote two steps' worth instead of one (1.047x -> 1.071x the bound on the bench's agent).
    """
    episode = _agent_episode(0, 6)
    clock = Clock(0.0)
    planner = CachePlanner(MemoryStore(clock=clock), clock, encoding=ESTIMATOR)
    claude = ToyClaude(minimum=512)
    first_day = []
    sites: list[set[str]] = []  # each plan's candidate prefixes
    for step, request in enumerate(episode):
        clock.now = 15.0 * step
        first_day.append(_tail_odds(planner, request, clock()))
        plan = planner.plan(request)
        assert plan.trace is not None
        sites.append({site.prefix_hash for site in plan.trace.sites})
        planner.observe(plan, claude.send(plan.apply(), clock()))
    checked = 0
    for step, request in enumerate(episode[:-1]):  # the last one was not followed
        tail = request.prefix_hashes()[-1]
        if any(tail in later for later in sites[step + 1 :]):
            continue  # also a candidate of a later step: that arrival was not followed
        again = _tail_odds(planner, request, DAY + 15.0 * step)
        assert again.within_5m >= first_day[step].within_5m, f"step {step}"
        checked += 1
    assert checked >= 3


def test_a_replayed_agent_costs_no_more() -> None:
    """Episodes 16 minutes apart: day one writes the system prompt for 5 minutes, finds it
    expired at the next episode and writes it for an hour then; day two, having learned the
    late returns, writes it for an hour at once. That one request may cost more (the 1-hour
    write moved earlier, by no more than day one paid for it later); no other may."""
    schedule = [
        (1000.0 * episode + 15.0 * step, request)
        for episode in range(3)
        for step, request in enumerate(_agent_episode(episode, 8))
    ]
    usage_one, usage_two = _replay_usage(schedule)
    day_one, day_two = [_cost(u) for u in usage_one], [_cost(u) for u in usage_two]
    assert sum(day_two) <= sum(day_one) * (1 + 1e-9)
    moved = 0
    for i, (one, two) in enumerate(zip(day_one, day_two, strict=True)):
        if two <= one * 1.02 + 1e-9:
            continue
        written = usage_two[i].cache_write_1h_tokens
        later = max((u.cache_write_1h_tokens for u in usage_one[i + 1 :]), default=0)
        assert written > 0, f"request {i} costs more on day two"
        assert later >= written, f"request {i}: a 1-hour write day one did not need"
        moved += 1
    assert moved <= 1


def test_a_replayed_chat_costs_no_more() -> None:
    conversations = [_chat(c, 10) for c in range(3)]
    schedule = sorted(
        (
            (400.0 * c + 25.0 * i, r)
            for c, conv in enumerate(conversations)
            for i, r in enumerate(conv)
        ),
        key=lambda item: item[0],
    )
    day_one, day_two = _replay(schedule)
    assert sum(day_two) <= sum(day_one) * (1 + 1e-9)


def test_the_end_of_the_system_prompt_is_marked_when_it_costs_nothing() -> None:
    """Other conversations read the system prompt only if an entry ends there.

    When the conversation's tail is as likely to come back as the system prompt (the bench's
    chat on day two, once tails learned their follow-ups), a marker at the system prompt and
    one at the tail price exactly like the tail marker alone (``reuse.make_monotone`` lifts
    the prompt's odds to the tail's). Before, ties went to fewer markers: the prompt was left
    to the tail's entry, and the next conversation wrote it again (1.012x -> 1.047x).
    """
    rates = Rates.from_prices(lookup_model(MODEL).prices)
    odds = ReuseOdds(0.9, 0.92)
    system = Option.priced(0, odds, rates, static=True)
    tail = Option.priced(1, odds, rates)
    placement = choose_markers([system, tail], [], [1400.0, 1500.0], {}, rates, "auto", 4)
    assert [index for index, _ttl in placement.markers] == [0, 1]
    plain = Option.priced(0, odds, rates)  # not the end of tools or system: fewer markers win
    placement = choose_markers([plain, tail], [], [1400.0, 1500.0], {}, rates, "auto", 4)
    assert [index for index, _ttl in placement.markers] == [1]
