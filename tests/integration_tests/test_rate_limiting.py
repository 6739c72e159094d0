"""ChatClaudeRelay's rate limiter against the emulator's limits, on one virtual clock.

The emulator refuses a request with a 429 when it would take a 60-second *sliding window* over
its virtual clock past a limit. The client limiter is a token bucket (Anthropic's model): it
starts full and refills continuously, so in any 60 s it may admit up to twice its limit. The
tests that expect zero 429s therefore give the emulator a window of twice the preset (what a
tier-1 bucket can admit in any 60 s); one test measures what happens at equal limits.

Both sides run on the emulator's clock: the limiter reads ``emu.now`` and "sleeps" by advancing
it, so a burst that takes minutes of virtual time runs in about a second. Run with ``pytest -s``
to see the figures.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import SecretStr, ValidationError

from langchain_claude_relay import (
    CachePlanner,
    ChatClaudeRelay,
    RateLimiter,
    RateLimitError,
    shared_limiter,
)
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import ClaudeRelayError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.limiter import RateLimits, clear_shared_limiters
from langchain_claude_relay.limiter.booking import DEFAULT_OUTPUT_ESTIMATE, relay_limiter_key
from langchain_claude_relay.store import MemoryStore

MODEL = "claude-sonnet-4-6"
READS_COUNT_MODEL = "claude-3-5-haiku-20241022"  # Haiku 3.5: cache reads count toward ITPM
TIER1 = RateLimits(rpm=50, itpm=40_000)
BUCKET_WINDOW = {"rpm": 100, "itpm": 80_000}  # the most a tier-1 bucket admits in any 60 s
BURST = 30
WORDS = (
    "relay", "cache", "prefix", "token", "window", "system",
    "marker", "budget", "latency", "answer", "model",
)  # fmt: skip


def document(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


@pytest.fixture(autouse=True)
def _fresh_shared_limiters() -> Iterator[None]:
    clear_shared_limiters()
    yield
    clear_shared_limiters()


def virtual_limiter(emu: RelayEmulator, limits: RateLimits = TIER1) -> RateLimiter:
    """A limiter on the emulator's clock: waiting advances the emulator's time."""

    async def asleep(seconds: float) -> None:
        emu.advance(seconds)

    return RateLimiter(
        limits.rpm,
        limits.itpm,
        limits.otpm,
        clock=lambda: emu.now,
        sleep=emu.advance,
        asleep=asleep,
    )


def model(emu: RelayEmulator, *, name: str = MODEL, **kwargs: Any) -> ChatClaudeRelay:
    planner = CachePlanner(store=MemoryStore(), clock=lambda: emu.now)
    kwargs.setdefault("max_retries", 0)  # a 429 surfaces at once: the test counts it
    return ChatClaudeRelay(
        model=name,
        base_url=emu.base_url,
        api_key="test",
        cache=planner,
        ledger=MemoryLedger(),
        **kwargs,
    )


def unique_documents(n: int = BURST, words: int = 4000) -> list[list[Any]]:
    """``n`` requests of about ``1.2 * words`` uncached tokens each (no shared prefix)."""
    return [
        [SystemMessage(document(words, 100 + i)), HumanMessage(f"Question {i}?")] for i in range(n)
    ]


def shared_document(n: int = BURST, words: int = 8000) -> list[list[Any]]:
    """``n`` requests sharing one large system prompt, each with its own short question."""
    system = SystemMessage(document(words, 7))
    return [[system, HumanMessage(f"Short question {i}?")] for i in range(n)]


def burst(llm: ChatClaudeRelay, inputs: list[list[Any]]) -> int:
    """Send the inputs one after the other; returns how many were refused with a 429."""
    refused = 0
    for messages in inputs:
        try:
            llm.invoke(messages)
        except RateLimitError:
            refused += 1
    return refused


def emulator_429s(emu: RelayEmulator) -> int:
    return sum(1 for r in emu.request_log if r.status == 429)


def counted_by_emulator(emu: RelayEmulator, model_name: str = MODEL) -> int:
    reads_count = model_name == READS_COUNT_MODEL
    return sum(
        e.input_tokens + e.cache_write_5m + e.cache_write_1h + (e.cache_read if reads_count else 0)
        for e in emu.billing_log
    )


# -- bursts ---------------------------------------------------------------------------------


def test_a_burst_gets_429s_without_the_limiter_and_none_with_it() -> None:
    inputs = unique_documents()
    with RelayEmulator(**BUCKET_WINDOW) as emu:
        refused_without = burst(model(emu), inputs)
        assert emulator_429s(emu) == refused_without
    with RelayEmulator(**BUCKET_WINDOW) as emu:
        limiter = shared_limiter(
            relay_limiter_key(emu.base_url, "test", "tier1"),
            "tier1",
            clock=lambda: emu.now,
            sleep=emu.advance,
        )
        llm = model(emu, rate_limits="tier1")  # picks up the shared limiter of this account
        assert llm.rate_limiter is limiter
        refused_with = burst(llm, inputs)
        stats = limiter.stats()
        print(
            f"\nburst of {BURST} x ~4.8K uncached tokens, relay window {BUCKET_WINDOW}: "
            f"{refused_without} x 429 without the limiter, {refused_with} with 'tier1' "
            f"({stats['seconds_waited']:.0f} virtual s waited)"
        )
        assert refused_without >= BURST // 3
        assert refused_with == 0
        assert emulator_429s(emu) == 0
        assert len(emu.billing_log) == BURST
        # LangChain counted each request once (its acquire); our bookings were tokens only.
        assert stats["requests"] == BURST
        assert stats["reservations"] == BURST
        assert stats["settled"] == BURST
        assert stats["open"] == 0
        assert stats["cancelled"] == 0
        # Settled with exactly what the relay counted toward its input limit.
        assert stats["settled_input_tokens"] == counted_by_emulator(emu)
        assert stats["seconds_waited"] > 60  # the burst was spread over minutes


def test_at_equal_limits_a_sliding_window_still_refuses_some() -> None:
    """A known gap, measured: a tier-1 bucket against a tier-1 *sliding window*."""
    inputs = unique_documents()
    with RelayEmulator(tier="tier1") as emu:
        refused_without = burst(model(emu), inputs)
    with RelayEmulator(tier="tier1") as emu:
        limiter = virtual_limiter(emu)
        refused_with = burst(model(emu, rate_limiter=limiter), inputs)
        print(
            f"\nsame burst against a tier-1 sliding window: {refused_without} x 429 without, "
            f"{refused_with} with a tier-1 bucket"
        )
        assert refused_with < refused_without / 2
        # A refused call keeps its booking (the relay had no room), so nothing is left open.
        assert limiter.stats()["open"] == 0
        assert limiter.stats()["cancelled"] == 0


@pytest.mark.parametrize("model_name", [MODEL, READS_COUNT_MODEL])
def test_cached_reads_are_booked_only_for_models_that_count_them(model_name: str) -> None:
    inputs = shared_document()
    with RelayEmulator(**BUCKET_WINDOW) as emu:
        limiter = virtual_limiter(emu)
        llm = model(emu, name=model_name, rate_limiter=limiter)
        refused = burst(llm, inputs)
        stats = limiter.stats()
        log = emu.billing_log
        whole_prompt = sum(e.input_tokens + e.cache_read + e.cache_write for e in log)
        print(
            f"\n{model_name}: {BURST} calls sharing a ~9.6K-token prompt: booked "
            f"{stats['estimated_input_tokens']:.0f} input tokens (whole prompts: {whole_prompt}), "
            f"waited {stats['seconds_waited']:.0f} virtual s"
        )
        assert refused == 0
        assert emulator_429s(emu) == 0
        assert all(e.cache_read > 9000 for e in log[1:]), "every call after the first reads"
        assert stats["settled_input_tokens"] == counted_by_emulator(emu, model_name)
        if model_name == MODEL:
            # One write, then ~30 uncached tokens per call: no waiting at all.
            assert stats["estimated_input_tokens"] < 0.1 * whole_prompt
            assert stats["seconds_waited"] == 0
        else:
            assert stats["estimated_input_tokens"] > 0.9 * whole_prompt
            assert stats["seconds_waited"] > 5 * 60  # ~290K counted tokens at 40K/min


def test_async_burst_shares_the_limiter_without_429s() -> None:
    inputs = unique_documents(12)
    with RelayEmulator(**BUCKET_WINDOW) as emu:
        limiter = virtual_limiter(emu)
        llm = model(emu, rate_limiter=limiter)

        async def run() -> list[Any]:
            half = len(inputs) // 2
            batch = llm.abatch(inputs[:half], {"max_concurrency": 4}, return_exceptions=True)
            streams = [_collect(llm, x) for x in inputs[half:]]
            return [*(await batch), *await asyncio.gather(*streams, return_exceptions=True)]

        results = asyncio.run(run())
        assert not [r for r in results if isinstance(r, BaseException)]
        assert emulator_429s(emu) == 0
        stats = limiter.stats()
        assert stats["settled"] == len(inputs)
        assert stats["open"] == 0
        assert stats["requests"] == len(inputs)
        assert stats["settled_input_tokens"] == counted_by_emulator(emu)


async def _collect(llm: ChatClaudeRelay, messages: list[Any]) -> Any:
    chunks = [chunk async for chunk in llm.astream(messages)]
    return chunks[-1]


# -- settle, cancel, keep -----------------------------------------------------------------------


def test_failed_refused_and_answered_calls_close_their_bookings() -> None:
    with RelayEmulator() as emu:
        limiter = virtual_limiter(emu, RateLimits(itpm=100_000, otpm=50_000))
        llm = model(emu, rate_limiter=limiter, max_tokens=300)
        messages = [SystemMessage(document(2000, 3)), HumanMessage("Hi")]

        emu.fail_next("500")  # never billed: the booking is given back
        with pytest.raises(ClaudeRelayError):
            llm.invoke(messages)
        assert limiter.stats()["cancelled"] == 1
        assert limiter.available() == {"itpm": 100_000, "otpm": 50_000}

        reply = llm.invoke(messages)  # answered: settled with the real usage
        counted = counted_by_emulator(emu)
        output = reply.usage_metadata["output_tokens"]
        assert limiter.stats()["settled_input_tokens"] == counted
        assert limiter.available() == pytest.approx(
            {"itpm": 100_000 - counted, "otpm": 50_000 - output}
        )

        emu.configure(rpm=1)  # the relay has no room: a 429 our buckets did not expect
        before = limiter.available()
        with pytest.raises(RateLimitError):
            llm.invoke([SystemMessage(document(2000, 4)), HumanMessage("Hi")])
        stats = limiter.stats()
        assert stats["settled"] == 2
        assert stats["cancelled"] == 1
        assert stats["open"] == 0
        kept = limiter.available()
        assert kept["itpm"] < before["itpm"]
        assert kept["otpm"] == before["otpm"] - 300


def test_streams_close_their_bookings_in_finally() -> None:
    with RelayEmulator() as emu:
        limiter = virtual_limiter(emu, RateLimits(itpm=100_000))
        llm = model(emu, rate_limiter=limiter)
        messages = [HumanMessage("Tell me a long story about caches. " * 20)]

        chunks = list(llm.stream(messages))  # to the end: settled with the usage chunk
        assert chunks[-1].usage_metadata is not None
        assert limiter.stats()["settled_input_tokens"] == counted_by_emulator(emu)

        for _chunk in llm.stream(messages):  # the consumer stops early: settled, estimate kept
            break
        emu.fail_next("500")  # fails before the stream begins: cancelled
        with pytest.raises(ClaudeRelayError):
            list(llm.stream(messages))
        emu.fail_next("cut")  # begins, then is cut: the relay counted it, estimate kept
        with pytest.raises(ClaudeRelayError):
            list(llm.stream(messages))
        stats = limiter.stats()
        assert stats["settled"] == 3
        assert stats["cancelled"] == 1
        assert stats["open"] == 0


def test_other_langchain_limiters_are_left_alone() -> None:
    from langchain_core.rate_limiters import InMemoryRateLimiter

    with RelayEmulator() as emu:
        llm = model(emu, rate_limiter=InMemoryRateLimiter(requests_per_second=1000))
        assert llm.invoke("Hello").content


def test_output_estimate_is_max_tokens_or_the_default() -> None:
    with RelayEmulator() as emu:
        limiter = virtual_limiter(emu, RateLimits(otpm=100_000))
        model(emu, rate_limiter=limiter, max_tokens=77).invoke("Hi")
        model(emu, rate_limiter=limiter).invoke("Hi")
        assert limiter.stats()["estimated_output_tokens"] == 77 + DEFAULT_OUTPUT_ESTIMATE


def test_cache_off_books_a_rough_whole_prompt_estimate() -> None:
    with RelayEmulator() as emu:
        limiter = virtual_limiter(emu, RateLimits(itpm=100_000))
        llm = ChatClaudeRelay(
            model=MODEL,
            base_url=emu.base_url,
            api_key="test",
            cache="off",
            ledger=MemoryLedger(),
            rate_limiter=limiter,
        )
        llm.invoke([SystemMessage(document(3000, 5)), HumanMessage("Hi")])
        stats = limiter.stats()
        real = counted_by_emulator(emu)
        assert 0.8 * real < stats["estimated_input_tokens"] < 1.25 * real


# -- the rate_limits convenience ---------------------------------------------------------------


def test_rate_limits_builds_one_shared_limiter_per_account_and_limits() -> None:
    url = "https://relay.example.com/v1"
    a = ChatClaudeRelay(base_url=url, api_key="sk-relay-aaaaaaaaaaaa", rate_limits="tier1")
    b = ChatClaudeRelay(
        model="claude-opus-4-5", base_url=url + "/", api_key="sk-relay-aaaaaaaaaaaa",
        rate_limits=RateLimits(rpm=50, itpm=40_000),
    )  # fmt: skip
    c = ChatClaudeRelay(base_url=url, api_key="sk-relay-bbbbbbbbbbbb", rate_limits="tier1")
    d = ChatClaudeRelay(
        base_url=url, api_key="sk-relay-aaaaaaaaaaaa", rate_limits={"rpm": 1000, "itpm": 80_000}
    )
    assert isinstance(a.rate_limiter, RateLimiter)
    assert a.rate_limiter is b.rate_limiter  # same account, same limits, any model
    assert c.rate_limiter is not a.rate_limiter  # another key is another account
    assert d.rate_limiter is not a.rate_limiter
    assert d.rate_limiter.limits == RateLimits(1000, 80_000)
    assert d.rate_limits == {"rpm": 1000, "itpm": 80_000, "otpm": None}
    key = relay_limiter_key(url, SecretStr("sk-relay-aaaaaaaaaaaa"), "tier1")
    assert key == relay_limiter_key(url, "sk-relay-aaaaaaaaaaaa", TIER1)
    assert "sk-relay" not in key
    assert "relay.example" not in key
    assert key.endswith("|rpm=50,itpm=40000")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rate_limits": "tier9"}, "unknown rate-limit preset"),
        ({"rate_limits": {"rpm": 10, "tpm": 5}}, "unknown rate limit"),
        ({"rate_limits": {"rpm": -1}}, "positive number"),
        ({"rate_limits": 50}, "not understood"),
        ({"rate_limits": "tier1", "rate_limiter": RateLimiter(rpm=1)}, "not both"),
    ],
)
def test_bad_rate_limits_are_refused_at_construction(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ChatClaudeRelay(base_url="https://relay.example.com/v1", api_key="k", **kwargs)


def test_limiter_names_are_exported() -> None:
    import langchain_claude_relay

    assert {"RateLimiter", "shared_limiter"} <= set(langchain_claude_relay.__all__)
