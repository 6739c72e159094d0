"""Warm, then fan out: ``batch``/``abatch`` against the emulator with a first-byte delay.

Claude makes a cache entry readable only once the response that wrote it has begun; the
emulator does the same (it commits a request's writes when its response begins, after
``first_byte_delay`` wall seconds). So concurrent calls sharing a new prefix all pay to write
it, unless one goes first. Run with ``pytest -s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import ClaudeRelayError, RequestValidationError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore

MODEL = "claude-sonnet-4-6"
DELAY = 0.4  # wall seconds before each response begins
FANOUT = 20
WORDS = (
    "relay", "cache", "prefix", "token", "window", "system",
    "marker", "budget", "latency", "answer", "model",
)  # fmt: skip


def document(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def system_prompt(seed: int = 1) -> SystemMessage:
    return SystemMessage(document(2500, seed))  # ~3K tokens on the emulator


def questions(system: SystemMessage, n: int, start: int = 0) -> list[list[BaseMessage]]:
    return [
        [system, HumanMessage(f"Question {i}: what about item {i}?")]
        for i in range(start, start + n)
    ]


def model(emu: RelayEmulator, **kwargs: Any) -> ChatClaudeRelay:
    planner = CachePlanner(store=MemoryStore(), clock=lambda: emu.now)
    kwargs.setdefault("max_retries", 0)
    return ChatClaudeRelay(
        model=MODEL,
        base_url=emu.base_url,
        api_key="test",
        cache=planner,
        ledger=MemoryLedger(),
        **kwargs,
    )


def prefix_writes(emu: RelayEmulator, block: int = 0) -> int:
    """Billed calls that wrote the cache entry ending at ``block`` (0: the system prompt)."""
    return sum(1 for e in emu.billing_log if block in e.write_indices)


def prefix_reads(emu: RelayEmulator, block: int = 0) -> int:
    return sum(1 for e in emu.billing_log if e.hit_index is not None and e.hit_index >= block)


def warmup_leaders(emu: RelayEmulator) -> int:
    """Batch calls sent while others waited on them: exactly those are streamed (to let the
    others go at the first byte, when the prefixes they write are readable)."""
    return sum(1 for e in emu.billing_log if e.streamed)


def cost(emu: RelayEmulator) -> float:
    return sum(e.cost_usd for e in emu.billing_log)


class Runs(BaseCallbackHandler):
    """Records each chat-model run: start time, tags, parent, and the peak of concurrent runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.starts: list[tuple[float, tuple[str, ...], UUID | None]] = []

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
        tags: list[str] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.starts.append((time.perf_counter(), tuple(tags or ()), parent_run_id))

    def _end(self) -> None:
        with self.lock:
            self.active -= 1

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self._end()

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self._end()


# -- the headline figure ------------------------------------------------------------------------


def test_twenty_calls_sharing_a_new_prompt_write_it_once() -> None:
    inputs = questions(system_prompt(), FANOUT)
    config = {"max_concurrency": FANOUT}
    figures = {}
    for warmup in (False, True):
        with RelayEmulator(first_byte_delay=DELAY) as emu:
            llm = model(emu, batch_warmup=warmup)
            started = time.perf_counter()
            replies = llm.batch(inputs, config)
            elapsed = time.perf_counter() - started
            assert all(isinstance(r, AIMessage) and r.usage_metadata for r in replies)
            assert len(emu.billing_log) == FANOUT
            assert warmup_leaders(emu) == warmup  # the rest, released at its first byte, go at once
            figures[warmup] = (prefix_writes(emu), prefix_reads(emu), cost(emu), elapsed)
    (cold_writes, cold_reads, cold_cost, cold_s), (writes, reads, warm_cost, warm_s) = (
        figures[False],
        figures[True],
    )
    print(
        f"\n{FANOUT} calls sharing a new ~3K-token system prompt, first byte after {DELAY}s: "
        f"without warm-up {cold_writes} writes / {cold_reads} reads, ${cold_cost:.6f} "
        f"({cold_s:.2f}s); with warm-up {writes} write / {reads} reads, ${warm_cost:.6f} "
        f"({warm_s:.2f}s)"
    )
    # Without warm-up the planner still sees the others' pending write and does not repeat it:
    # the concurrent calls pay plain input instead of a second write, but they cannot read.
    assert cold_writes <= 2
    assert cold_reads <= 5
    assert (writes, reads) == (1, FANOUT - 1)
    assert warm_cost < cold_cost / 3
    assert warm_s >= 2 * DELAY  # the warm-up's first byte, then everyone else


def test_abatch_warms_up_too() -> None:
    inputs = questions(system_prompt(2), 10)
    with RelayEmulator(first_byte_delay=DELAY) as emu:
        llm = model(emu)
        replies = asyncio.run(llm.abatch(inputs, {"max_concurrency": 10}))
        assert all(isinstance(r, AIMessage) for r in replies)
        assert (prefix_writes(emu), prefix_reads(emu)) == (1, 9)
        assert [r.content for r in replies] == [r.content for r in llm.batch(inputs)]  # same order


# -- which inputs wait ----------------------------------------------------------------------------


def test_each_group_of_shared_prefixes_gets_its_own_warm_up() -> None:
    a, b = questions(system_prompt(3), 6), questions(system_prompt(4), 6)
    alone = ["Hello there", [("human", "A short question with no shared prefix")]]
    inputs: list[Any] = [x for pair in zip(a, b, strict=True) for x in pair] + alone
    with RelayEmulator(first_byte_delay=DELAY) as emu:
        for run in (
            lambda: model(emu).batch(inputs),
            lambda: asyncio.run(model(emu).abatch(inputs)),
        ):
            emu.reset()
            replies = run()
            assert len(replies) == len(inputs)
            assert prefix_writes(emu) == 2, "one write per system prompt"
            assert prefix_reads(emu) == 10


def test_a_prefix_already_cached_holds_nobody_back() -> None:
    inputs = questions(system_prompt(5), 8)
    with RelayEmulator(first_byte_delay=DELAY) as emu:
        llm = model(emu)
        llm.invoke(questions(system_prompt(5), 1, start=100)[0])  # the planner now predicts a read
        llm.batch(inputs, {"max_concurrency": 8})
        assert prefix_writes(emu) == 1
        assert prefix_reads(emu) == 8
        # the first call leads, but its plan reads the prompt, so it releases the rest before
        # it is sent; they share nothing more and go at once (not each after the last one's plan)
        assert warmup_leaders(emu) == 1


def test_a_shared_block_nobody_caches_holds_nobody_back() -> None:
    # a short system prompt (below the minimum) and long questions of their own: the first
    # call's plan writes only its question, so the rest go at once, not each after the last
    short = SystemMessage("You are terse.")
    inputs = [[short, HumanMessage(f"Question {i}: {document(1500, i)}")] for i in range(8)]
    with RelayEmulator(first_byte_delay=DELAY) as emu:
        model(emu).batch(inputs, {"max_concurrency": 8})
        assert warmup_leaders(emu) == 1


def test_tools_are_part_of_the_shared_prefix() -> None:
    @tool
    def lookup(section: str) -> str:
        """Look up a section of the handbook."""
        return section

    inputs = questions(system_prompt(6), 6)
    with RelayEmulator(first_byte_delay=DELAY) as emu:
        replies = model(emu).bind_tools([lookup]).batch(inputs, {"max_concurrency": 6})
        assert len(replies) == 6
        assert prefix_writes(emu, block=1) == 1  # block 0 is the tool, 1 the system prompt
        assert prefix_reads(emu, block=1) == 5


def test_a_bound_models_warm_up_writes_its_tools_too() -> None:
    # LangChain's binding passed only its config on to warm(): the prefix written had no tools
    @tool
    def lookup(section: str) -> str:
        """Look up a section of the handbook."""
        return section

    system = system_prompt(7)
    with RelayEmulator() as emu:
        bound = model(emu).bind_tools([lookup], tool_choice="auto").with_config(tags=["warm"])
        bound.warm([system, HumanMessage("Ready?")])
        assert prefix_writes(emu, block=1) == 1
        assert bound.invoke([system, HumanMessage("What about item 3?")]).tool_calls == []
        assert prefix_reads(emu, block=1) == 1
        assert prefix_writes(emu, block=1) == 1

        async def awarm() -> None:
            await bound.awarm([system_prompt(8), HumanMessage("Ready?")])

        asyncio.run(awarm())
        assert emu.billing_log[-1].block_count == 3  # the tool, the system prompt, the turn
        assert 1 in emu.billing_log[-1].write_indices


# -- LangChain's batch semantics ----------------------------------------------------------------


def test_configs_tags_and_max_concurrency_are_kept() -> None:
    inputs = questions(system_prompt(7), 9)
    runs = Runs()
    configs: list[Any] = [
        {"callbacks": [runs], "tags": [f"input-{i}"], "max_concurrency": 3} for i in range(9)
    ]
    with RelayEmulator(first_byte_delay=DELAY / 2) as emu:
        replies = model(emu).batch(inputs, configs)
    assert len(replies) == 9
    assert prefix_writes(emu) == 1
    assert sorted(tags for _, tags, _ in runs.starts) == sorted((f"input-{i}",) for i in range(9))
    assert all(parent is None for _, _, parent in runs.starts), "no run nested in the warm-up's"
    assert runs.peak <= 3


def test_exceptions_are_returned_or_raised_in_input_order() -> None:
    too_many_markers = HumanMessage(
        [
            {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
            for i in range(5)
        ]
    )
    system = system_prompt(8)
    inputs: list[Any] = [[system, too_many_markers], *questions(system, 5), 12345]
    with RelayEmulator(first_byte_delay=DELAY / 2) as emu:
        llm = model(emu)
        results = llm.batch(inputs, return_exceptions=True)
        assert isinstance(results[0], RequestValidationError)  # the would-be warm-up
        assert isinstance(results[-1], Exception)
        assert all(isinstance(r, AIMessage) for r in results[1:-1])
        assert prefix_writes(emu) == 1, "the next input warmed the prefix instead"
        with pytest.raises(RequestValidationError):
            llm.batch(inputs)
        async_results = asyncio.run(llm.abatch(inputs, return_exceptions=True))
        assert [type(r) for r in async_results] == [type(r) for r in results]


def test_a_failed_warm_up_releases_the_rest() -> None:
    inputs = questions(system_prompt(9), 6)
    with RelayEmulator(first_byte_delay=DELAY / 2) as emu:
        emu.fail_next("500")  # the warm-up's request
        results = model(emu).batch(inputs, {"max_concurrency": 6}, return_exceptions=True)
        assert isinstance(results[0], ClaudeRelayError)
        assert all(isinstance(r, AIMessage) for r in results[1:])


def test_batch_warmup_false_and_cache_off_are_langchains_batch() -> None:
    inputs = questions(system_prompt(10), 6)
    with RelayEmulator(first_byte_delay=DELAY) as emu:
        model(emu, batch_warmup=False).batch(inputs, {"max_concurrency": 6})
        assert not warmup_leaders(emu)  # all at once, no warm-up
        assert prefix_writes(emu) <= 2  # the others see the pending write and do not repeat it
        assert prefix_reads(emu) <= 1
        emu.reset()
        model(emu).batch(inputs, {"max_concurrency": 6}, prompt_cache="off")
        assert not warmup_leaders(emu)
        assert prefix_writes(emu) == 0
