"""First-use inputs: what a user actually has at hand is accepted, or refused out loud.

* ``CachePlanner.observe(plan, msg.usage_metadata)``: LangChain's usage dict (and a relay's raw
  ``usage`` object) is read like the ``NormalizedUsage`` it stands for; anything else is a
  ``TypeError`` that names what is accepted (it was an ``AttributeError`` on a dict).
* ``CLAUDE_RELAY_STATE`` set to something that is no Redis URL (the scheme forgotten, a directory
  meant for ``CLAUDE_RELAY_STATE_DIR``) still means local state, but says so once per process
  instead of quietly splitting a fleet's statistics, ledger and rate limits.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_relay import FakeRelay, completion
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay._env import redis_url
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.errors import StateStoreWarning
from langchain_claude_relay.planner import CachePlan, CachePlanner
from langchain_claude_relay.store import MemoryStore, default_store
from langchain_claude_relay.usage import NormalizedUsage, from_usage_metadata, normalize_usage

MODEL = "claude-sonnet-5-5"  # minimum 512
DOC = " ".join(
    f"Clause {i}: the supplier delivers the goods described in annex {i}." for i in range(300)
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _messages() -> list[BaseMessage]:
    return [SystemMessage(DOC), HumanMessage("hi")]


def _planned() -> tuple[CachePlanner, CachePlan]:
    planner = CachePlanner(MemoryStore(), _Clock())
    return planner, planner.plan(_messages(), model=MODEL)


# ------------------------------------------------------------------ observe(plan, usage)


def test_observe_takes_the_usage_metadata_of_a_real_message(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    """The reviewer's case: plan, invoke, then observe with ``msg.usage_metadata`` as it is."""
    relay.queue(
        completion(
            usage={
                "prompt_tokens": 3020,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 0},
                "cache_creation_input_tokens": 3000,
            },
            model=MODEL,
        )
    )
    planner, plan = _planned()
    msg = make_llm(model=MODEL).invoke(_messages())
    assert msg.usage_metadata is not None

    observation = planner.observe(plan, msg.usage_metadata)

    assert observation.actual_total_tokens == 3020
    assert observation.actual_write_tokens == 3000
    assert observation.actual_read_tokens == 0


def _twin_observations(usage: Any, normalized: NormalizedUsage) -> tuple[Any, Any]:
    """``usage`` observed by one planner, ``normalized`` by an identical twin."""
    planner, plan = _planned()
    twin, twin_plan = _planned()
    return planner.observe(plan, usage), twin.observe(twin_plan, normalized)


@pytest.mark.parametrize(
    "usage_metadata",
    [
        {
            "input_tokens": 3020,
            "output_tokens": 5,
            "total_tokens": 3025,
            "input_token_details": {"cache_read": 3000, "cache_creation": 0},
        },
        {
            "input_tokens": 3020,
            "output_tokens": 5,
            "total_tokens": 3025,
            "input_token_details": {
                "cache_read": 0,
                "cache_creation": 0,
                "ephemeral_1h_input_tokens": 3000,
            },
        },
        {"input_tokens": 120, "output_tokens": 5, "total_tokens": 125},  # no details: no cache
    ],
    ids=["read", "1h-write", "no-details"],
)
def test_observe_reads_usage_metadata_like_from_usage_metadata(
    usage_metadata: dict[str, Any],
) -> None:
    seen, expected = _twin_observations(usage_metadata, from_usage_metadata(usage_metadata))
    assert seen == expected
    assert seen.actual_total_tokens == usage_metadata["input_tokens"]


@pytest.mark.parametrize(
    "raw",
    [
        {  # OpenAI-style relay
            "prompt_tokens": 3020,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 3000},
        },
        {  # Claude's own shape, passed through by the relay
            "input_tokens": 20,
            "output_tokens": 5,
            "cache_read_input_tokens": 3000,
            "cache_creation_input_tokens": 0,
        },
    ],
    ids=["openai", "claude"],
)
def test_observe_reads_a_raw_relay_usage_like_normalize_usage(raw: dict[str, Any]) -> None:
    seen, expected = _twin_observations(raw, normalize_usage(raw))
    assert seen == expected
    assert (seen.actual_read_tokens, seen.actual_total_tokens) == (3000, 3020)


@pytest.mark.parametrize(
    ("usage", "named"),
    [
        (None, "None"),
        ({}, "an empty mapping"),
        ({"tokens": 12}, "'tokens'"),
        (42, "int"),
        ("usage", "str"),
        (object(), "object"),
    ],
    ids=["none", "empty", "unknown-keys", "int", "str", "object"],
)
def test_observe_refuses_anything_else_with_what_it_accepts(usage: Any, named: str) -> None:
    planner, plan = _planned()
    with pytest.raises(TypeError) as info:
        planner.observe(plan, usage)
    message = str(info.value)
    for accepted in ("usage_metadata", "prompt_tokens", "NormalizedUsage", named):
        assert accepted in message


# ------------------------------------------------------------ CLAUDE_RELAY_STATE misread

_KEY = ("state_env_not_redis",)


@pytest.fixture(autouse=True)
def _fresh_once_warnings() -> Iterator[None]:
    forget_warnings(lambda key: key == _KEY)
    yield
    forget_warnings(lambda key: key == _KEY)


def _state_warnings(calls: Callable[[], Any]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calls()
    return [str(w.message) for w in caught if issubclass(w.category, StateStoreWarning)]


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1:6379/0", "/srv/relay-state", "http://cache.internal:6379"],
    ids=["scheme-forgotten", "a-directory", "wrong-scheme"],
)
def test_a_state_value_that_is_no_redis_url_is_warned(value: str) -> None:
    with pytest.warns(StateStoreWarning) as record:
        assert redis_url({"CLAUDE_RELAY_STATE": f" {value} "}) is None
    message = str(record[0].message)
    assert value in message
    assert "not a Redis URL" in message
    assert "redis://host:6379/0" in message
    assert "CLAUDE_RELAY_STATE_DIR" in message


def test_a_forgotten_scheme_is_suggested() -> None:
    with pytest.warns(StateStoreWarning, match=r"did you mean redis://127\.0\.0\.1:6379/0\?"):
        redis_url({"CLAUDE_RELAY_STATE": "127.0.0.1:6379/0"})


@pytest.mark.parametrize(
    "value",
    [
        "alice:s3cret-pw@cache.internal:6379/0",
        "http://alice:s3cret-pw@cache.internal:6379/0?password=s3cret-pw",
        "redis:/:s3#cret-pw@cache.internal:6379/0",
    ],
    ids=["no-scheme", "http-and-query", "hash-in-password"],
)
def test_the_warning_never_shows_a_password(value: str) -> None:
    with pytest.warns(StateStoreWarning) as record:
        redis_url({"CLAUDE_RELAY_STATE": value})
    message = str(record[0].message)
    for secret in ("s3cret", "cret-pw", "alice"):
        assert secret not in message
    assert "cache.internal:6379/0" in message


def test_the_warning_comes_once_per_process_and_valid_values_stay_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither a Redis URL nor an unset value warns
        for fine in ("redis://127.0.0.1:6379/0", "rediss://h:6380/2", "unix:///tmp/r.sock", ""):
            redis_url({"CLAUDE_RELAY_STATE": fine})
        redis_url({})
    monkeypatch.setenv("CLAUDE_RELAY_STATE", "/srv/relay-state")

    def every_reader() -> None:
        for _ in range(3):
            assert redis_url() is None
        redis_url({"CLAUDE_RELAY_STATE": "127.0.0.1:6379/0"})

    assert len(_state_warnings(every_reader)) == 1
    assert _state_warnings(every_reader) == []


def test_the_default_store_warns_and_stays_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_STATE", "127.0.0.1:6379/0")
    store: list[Any] = []
    [message] = _state_warnings(lambda: store.append(default_store()))
    assert "127.0.0.1:6379/0" in message
    try:
        store[0].set("k:0f", 1)  # local state works: the call is not failed
        assert store[0].get("k:0f") == 1
    finally:
        store[0].close()


def test_keep_alives_takes_the_same_usage_forms_as_observe() -> None:
    metadata = {
        "input_tokens": 3020,
        "output_tokens": 5,
        "total_tokens": 3025,
        "input_token_details": {"cache_read": 0, "cache_creation": 0,
                                "ephemeral_5m_input_tokens": 3000},
    }  # fmt: skip
    advice = []
    for usage in (metadata, from_usage_metadata(metadata)):
        planner, plan = _planned()
        planner.observe(plan, usage)
        advice.append(planner.keep_alives(plan, usage))
    assert advice[0] == advice[1]
    planner, plan = _planned()
    with pytest.raises(TypeError, match="usage_metadata"):
        planner.keep_alives(plan, {"tokens": 3})
