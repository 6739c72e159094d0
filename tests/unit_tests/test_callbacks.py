"""Tests for langchain_claude_relay.callbacks: CostTracker and track_costs over every call path."""

from __future__ import annotations

import asyncio
import contextvars
import doctest
import json
import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx2
import pytest
from fake_relay import completion, sse, stream_events
from langchain_core.caches import InMemoryCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableLambda

from langchain_claude_relay import callbacks as callbacks_module
from langchain_claude_relay.callbacks import CostTracker, track_costs, usage_of
from langchain_claude_relay.cost import call_cost_usd
from langchain_claude_relay.usage import NormalizedUsage

P1, P2 = "a1" * 16, "b2" * 16
SONNET = "claude-sonnet-4-6"  # $3 in, $15 out, $0.30 read, $3.75 write 5m, $6 write 1h per MTok


def spec(
    plain: int = 0,
    read: int = 0,
    w5: int = 0,
    w1h: int = 0,
    out: int = 0,
    *,
    written: list[str] | None = None,
    read_prefix: str | None = None,
    predicted: int | None = None,
    observe: bool = True,
    model: str = SONNET,
    report_cost: bool = True,
    usage: bool = True,
) -> str:
    """A prompt telling ScriptedRelayChat what to answer (order-free, so batches are exact)."""
    return json.dumps(
        {
            "usage": [plain, read, w5, w1h, out] if usage else None,
            "written": written or [],
            "read_prefix": read_prefix,
            "predicted": predicted,
            "observe": observe,
            "model": model,
            "report_cost": report_cost,
        }
    )


class ScriptedRelayChat(BaseChatModel):
    """Answers like ChatClaudeRelay: usage_metadata with the cache split, and response_metadata
    with cost_usd, the relay's raw usage, the model name, the cache plan and observation."""

    fail: bool = False

    @property
    def _llm_type(self) -> str:
        return "scripted-relay"

    def _answer(self, messages: list[BaseMessage]) -> tuple[Any, dict[str, Any]]:
        if self.fail:
            msg = "relay down"
            raise RuntimeError(msg)
        script = json.loads(str(messages[-1].content))
        if script["usage"] is None:
            return None, {"model_name": script["model"]}
        plain, read, w5, w1h, out = script["usage"]
        usage = NormalizedUsage(plain, read, w5, w1h, out, write_split_known=True)
        meta: dict[str, Any] = {
            "model_name": script["model"],
            "model_provider": "claude-relay",
            "usage": {
                "input_tokens": plain,
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": w5 + w1h,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": w5,
                    "ephemeral_1h_input_tokens": w1h,
                },
                "output_tokens": out,
            },
            "cache_plan": {
                "predicted_read_tokens": script["predicted"] or 0,
                "breakpoints": [{"prefix_hash": p, "ttl": "5m"} for p in script["written"]],
            },
        }
        if script["report_cost"]:
            meta["cost_usd"] = call_cost_usd(usage, script["model"])
        if script["observe"]:  # the shape of the planner's Observation.to_dict()
            outcomes = [{"prefix_hash": p, "predicted": "write", "actual": "write"}
                        for p in script["written"]]  # fmt: skip
            if script["read_prefix"]:
                outcomes.insert(
                    0, {"prefix_hash": script["read_prefix"], "predicted": "read", "actual": "read"}
                )
            meta["cache_observation"] = {
                "predicted_read_tokens": script["predicted"],
                "breakpoints": outcomes,
            }
        return usage.to_usage_metadata(), meta

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        usage_metadata, meta = self._answer(messages)
        message = AIMessage(content="ok", usage_metadata=usage_metadata, response_metadata=meta)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        usage_metadata, meta = self._answer(messages)
        for piece in ("o", "k", "!"):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        # like ChatClaudeRelay: usage, cost and plan once, in the closing chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata=usage_metadata, response_metadata=meta
            )
        )


# Worked by hand with Sonnet 4.6 prices:
#   WRITE: 100 in + 10,000 written 5m at P1 + 50 out = 300 + 37,500 + 750 -> $0.03855;
#          uncached 10,100*3 + 750 -> $0.03105
#   READ:  100 in + 10,000 read at P1 + 50 out = 300 + 3,000 + 750 -> $0.00405; uncached $0.03105
#   WRITE_1H: 100 in + 5,000 written 1h at P2 + 50 out = 300 + 30,000 + 750 -> $0.03105;
#          uncached 5,100*3 + 750 -> $0.01605
WRITE = spec(100, 0, 10_000, 0, 50, written=[P1], predicted=0)
READ = spec(100, 10_000, 0, 0, 50, read_prefix=P1, predicted=10_000)
WRITE_1H = spec(100, 0, 0, 5_000, 50, written=[P2], predicted=5_000)


@pytest.fixture
def llm() -> ScriptedRelayChat:
    return ScriptedRelayChat()


def test_invoke_in_the_block_is_counted_and_outside_is_not(llm: ScriptedRelayChat) -> None:
    llm.invoke(WRITE_1H)  # before: not counted
    with track_costs() as costs:
        llm.invoke(WRITE)
        llm.invoke(READ)
    llm.invoke(WRITE_1H)  # after: not counted
    assert costs.calls == 2
    assert (costs.input_tokens, costs.cache_read_tokens) == (200, 10_000)
    assert (costs.cache_write_tokens, costs.output_tokens) == (10_000, 100)
    assert costs.total_input_tokens == 20_200
    assert costs.cost_usd == pytest.approx(0.03855 + 0.00405)
    assert costs.uncached_cost_usd == pytest.approx(0.0621)
    assert costs.saved_usd == pytest.approx(0.0621 - 0.0426)
    assert costs.hit_rate == 0.5
    assert costs.wasted_write_tokens == 0  # READ read what WRITE wrote
    assert costs.unpriced_calls == 0


def test_wasted_writes_and_predictions(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        llm.invoke(WRITE)
        llm.invoke(READ)
        llm.invoke(WRITE_1H)  # written at P2, never read in the block
    assert costs.wasted_write_tokens == 5_000
    s = costs.ledger_summary()
    assert (s.predicted_calls, s.predicted_hits, s.actual_hits, s.mispredictions) == (3, 2, 1, 1)
    assert s.wasted_write_usd == pytest.approx(5_000 * 3 / 1e6)  # the 1h premium over input


@pytest.mark.parametrize(
    ("calls", "wasted"),
    [
        ([spec(0, 0, 1_000, 0, 1, observe=False), spec(0, 500, 0, 0, 1, observe=False)], 0),
        ([spec(0, 0, 1_000, 0, 1, observe=False), spec(5, 0, 0, 0, 1, observe=False)], 1_000),
        ([spec(5, 500, 0, 0, 1, observe=False), spec(0, 0, 1_000, 0, 1, observe=False)], 1_000),
    ],
    ids=["later-read", "later-no-read", "read-came-first"],
)
def test_wasted_writes_without_prefixes_use_later_reads(
    llm: ScriptedRelayChat, calls: list[str], wasted: int
) -> None:
    clock = iter(range(100))
    with track_costs(clock=lambda: float(next(clock))) as costs:
        for prompt in calls:
            llm.invoke(prompt)
    assert costs.wasted_write_tokens == wasted


def test_plan_without_observation_marks_breakpoints_written(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        llm.invoke(spec(0, 0, 1_000, 0, 1, written=[P1], observe=False))
    assert costs.entries()[0].written_prefixes == (P1,)
    assert costs.wasted_write_tokens == 1_000


def test_stream_is_counted_once_with_the_final_chunks_usage(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        chunks = list(llm.stream(WRITE))
    assert "".join(str(c.content) for c in chunks) == "ok!"
    assert costs.calls == 1
    assert costs.cost_usd == pytest.approx(0.03855)
    assert costs.cache_write_tokens == 10_000
    assert costs.entries()[0].written_prefixes == (P1,)


def test_batch_runs_in_threads_and_every_call_counts(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        llm.batch([WRITE, READ] * 10, config={"max_concurrency": 4})
    assert costs.calls == 20
    assert costs.cost_usd == pytest.approx(10 * (0.03855 + 0.00405))
    assert costs.cache_read_tokens == 100_000


async def test_async_invoke_stream_and_batch(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        await llm.ainvoke(WRITE)
        async for _ in llm.astream(READ):
            pass
        await llm.abatch([WRITE_1H] * 3)
        await asyncio.gather(*(llm.ainvoke(READ) for _ in range(4)))
    assert costs.calls == 9
    expected = 0.03855 + 5 * 0.00405 + 3 * 0.03105
    assert costs.cost_usd == pytest.approx(expected)


def test_nested_blocks_count_inner_calls_in_both(llm: ScriptedRelayChat) -> None:
    chain = RunnableLambda(lambda prompt: llm.invoke(prompt))
    with track_costs() as outer:
        llm.invoke(WRITE)
        with track_costs() as inner:
            llm.invoke(READ)
            chain.invoke(READ)  # a chain: the model inherits the handler, counted once
        llm.invoke(WRITE_1H)
    assert inner.calls == 2
    assert outer.calls == 4
    assert inner.cost_usd == pytest.approx(2 * 0.00405)
    assert outer.cost_usd == pytest.approx(0.03855 + 2 * 0.00405 + 0.03105)


def test_chain_started_outside_an_inner_block_is_not_counted_twice(llm: ScriptedRelayChat) -> None:
    def step(prompt: str) -> Any:
        with track_costs() as inner:
            result = llm.invoke(prompt)
        assert inner.calls == 1
        return result

    with track_costs() as outer:
        RunnableLambda(step).invoke(READ)  # outer is inherited AND inner forwards to outer
    assert outer.calls == 1


def test_threads_with_a_copied_context_are_counted_exactly(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(lambda: [llm.invoke(READ) for _ in range(25)],),
            )
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert costs.calls == 200
    assert costs.cache_read_tokens == 2_000_000
    assert costs.cost_usd == pytest.approx(200 * 0.00405)


def test_explicit_callback_without_a_block(llm: ScriptedRelayChat) -> None:
    tracker = CostTracker()
    llm.invoke(WRITE, config={"callbacks": [tracker]})
    llm.invoke(READ)
    assert tracker.calls == 1
    assert tracker.cost_usd == pytest.approx(0.03855)


def test_langchain_response_cache_hits_cost_nothing() -> None:
    cached = ScriptedRelayChat(cache=InMemoryCache())
    with track_costs() as costs:
        cached.invoke(READ)
        cached.invoke(READ)
    assert (costs.calls, costs.llm_cache_hits) == (1, 1)
    assert costs.cost_usd == pytest.approx(0.00405)


def test_failed_calls_and_calls_without_usage(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        with pytest.raises(RuntimeError):
            ScriptedRelayChat(fail=True).invoke(READ)
        llm.invoke(spec(usage=False))
        llm.invoke(READ)
    assert (costs.calls, costs.calls_without_usage) == (2, 1)
    assert costs.cost_usd == pytest.approx(0.00405)
    assert costs.summary()["calls_with_usage"] == 1


def test_cost_is_priced_from_the_model_when_not_reported(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        llm.invoke(spec(1_000, 0, 0, 0, 100, report_cost=False))  # 3,000 + 1,500 -> $0.0045
        llm.invoke(spec(1_000, 0, 0, 0, 100, model="my-local-model", report_cost=False))
    assert costs.cost_usd == pytest.approx(0.0045)
    assert costs.unpriced_calls == 1


@pytest.mark.parametrize(
    ("usage_metadata", "response_metadata", "expected"),
    [
        pytest.param(  # ChatAnthropic: the TTL split in input_token_details
            {"input_tokens": 1_600, "output_tokens": 5, "input_token_details": {
                "cache_read": 500, "cache_creation": 1_000,
                "ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600}},
            {},
            NormalizedUsage(100, 500, 400, 600, 5),
            id="anthropic-split",
        ),
        pytest.param(  # writes without a split are 5m writes
            {"input_tokens": 1_600, "output_tokens": 5,
             "input_token_details": {"cache_read": 500, "cache_creation": 1_000}},
            {},
            NormalizedUsage(100, 500, 1_000, 0, 5),
            id="unsplit-writes",
        ),
        pytest.param(  # ChatOpenAI drops cache writes; the raw token_usage still has them
            {"input_tokens": 1_600, "output_tokens": 5, "input_token_details": {"cache_read": 500}},
            {"token_usage": {"prompt_tokens": 1_600, "completion_tokens": 5,
                             "prompt_tokens_details": {"cached_tokens": 500},
                             "cache_creation_input_tokens": 1_000}},
            NormalizedUsage(100, 500, 1_000, 0, 5),
            id="openai-raw-usage",
        ),
        pytest.param(  # garbage raw usage: what LangChain kept is used
            {"input_tokens": 600, "output_tokens": 5, "input_token_details": {"cache_read": 500}},
            {"usage": {"prompt_tokens": "lots"}},
            NormalizedUsage(100, 500, 0, 0, 5),
            id="garbage-raw",
        ),
        pytest.param(  # ChatClaudeRelay's own split (TTL hint from its markers) beats the raw
            {"input_tokens": 1_600, "output_tokens": 5, "input_token_details": {
                "cache_read": 500, "cache_creation": 1_000,
                "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1_000}},
            {"usage": {"prompt_tokens": 1_600, "completion_tokens": 5,
                       "prompt_tokens_details": {"cached_tokens": 500},
                       "cache_creation_input_tokens": 1_000}},
            NormalizedUsage(100, 500, 0, 1_000, 5),
            id="langchain-split-wins",
        ),
        pytest.param({}, {}, None, id="no-usage"),
        pytest.param({}, {"usage": {"prompt_tokens": 7, "completion_tokens": 2}},
                     NormalizedUsage(7, 0, 0, 0, 2), id="raw-only"),
    ],
)  # fmt: skip
def test_usage_sources(
    usage_metadata: dict[str, Any], response_metadata: dict[str, Any], expected: Any
) -> None:
    got = usage_of(usage_metadata, response_metadata)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        fields = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens")
        fields += ("cache_write_1h_tokens", "output_tokens")  # type: ignore[assignment]
        assert [getattr(got, f) for f in fields] == [getattr(expected, f) for f in fields]


def test_calls_are_ordered_by_start_not_by_end() -> None:
    """A long call that wrote P1 ends after a short one that read P1: its write was not wasted."""
    now = iter([1.0, 2.0, 3.0, 4.0])
    tracker = CostTracker(clock=lambda: next(now))
    first, second = uuid4(), uuid4()
    tracker.on_chat_model_start({}, [], run_id=first)
    tracker.on_chat_model_start({}, [], run_id=second)
    llm = ScriptedRelayChat()
    for run_id, prompt in ((second, READ), (first, WRITE)):
        result = llm.generate([[HumanMessage(prompt)]], callbacks=[])
        tracker.on_llm_end(result, run_id=run_id)
    assert [e.timestamp for e in tracker.entries()] == [2.0, 1.0]
    assert tracker.wasted_write_tokens == 0


def test_summary_and_report(llm: ScriptedRelayChat) -> None:
    with track_costs() as costs:
        llm.invoke(WRITE)
        llm.invoke(READ)
    data = costs.summary()
    assert json.loads(json.dumps(data)) == data
    assert data["calls"] == 2
    assert data["hit_rate"] == 0.5
    assert data["cost_usd"] == pytest.approx(0.0426)
    report = str(costs)
    assert "Calls: 2 (cache hit rate 50.0%)" in report
    assert "cache read 10,000" in report
    assert "cache write 10,000" in report
    assert "$0.0426" in report
    assert "saved $0.0195" in report
    assert "CostTracker(calls=2" in repr(costs)


def test_empty_block() -> None:
    with track_costs() as costs:
        pass
    assert (costs.calls, costs.cost_usd, costs.hit_rate, costs.wasted_write_tokens) == (0, 0, 0, 0)
    assert "Calls: 0" in str(costs)


# -- the real ChatClaudeRelay against the fake relay (tests/unit_tests/fake_relay.py) ------------


RELAY_USAGE = {
    "prompt_tokens": 12_100,
    "completion_tokens": 40,
    "prompt_tokens_details": {"cached_tokens": 10_000},
    "cache_creation_input_tokens": 2_000,
}


def test_chat_claude_relay_invoke_and_stream(make_llm: Any, relay: Any) -> None:
    relay.queue(
        completion(usage=RELAY_USAGE),
        httpx2.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=sse(stream_events("Hello there", RELAY_USAGE)).encode(),
        ),
    )
    model = make_llm()
    with track_costs() as costs:
        message = model.invoke("hi")
        streamed = list(model.stream("hi"))
    assert costs.calls == 2
    reported = message.response_metadata["cost_usd"]
    assert reported is not None
    # the default model, Sonnet 5.5 ($2 in, $0.20 read, $2.50 write 5m, $10 out per MTok):
    # 100 in*2 + 10,000 read*0.2 + 2,000 write 5m*2.5 + 40 out*10 = 200+2,000+5,000+400
    assert reported == pytest.approx(0.0076)
    assert costs.cost_usd == pytest.approx(2 * reported)
    assert costs.cache_read_tokens == 20_000
    assert costs.cache_write_tokens == 4_000
    assert costs.input_tokens == 200
    assert costs.output_tokens == 80
    assert streamed[-1].response_metadata["cost_usd"] == pytest.approx(reported)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(callbacks_module)
    assert result.attempted >= 2
    assert result.failed == 0
