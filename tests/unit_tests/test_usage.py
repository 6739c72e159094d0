"""Tests for langchain_claude_relay.usage: every relay usage dialect, rules and garbage."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langchain_core.messages.ai import add_usage

from langchain_claude_relay.cost import call_cost_usd
from langchain_claude_relay.errors import APIResponseError, RequestValidationError
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.usage import (
    MAX_TOKEN_COUNT,
    NormalizedUsage,
    WriteTTL,
    chat_anthropic_usage_metadata,
    from_usage_metadata,
    normalize_usage,
    with_inferred_writes,
)


def nu(
    plain: int,
    read: int,
    w5: int,
    w1: int,
    out: int,
    reasoning: int | None = None,
    *,
    split: bool = False,
    cached: bool | None = None,
    writes: bool | None = None,
) -> NormalizedUsage:
    return NormalizedUsage(
        input_tokens=plain,
        cache_read_tokens=read,
        cache_write_5m_tokens=w5,
        cache_write_1h_tokens=w1,
        output_tokens=out,
        reasoning_tokens=reasoning,
        write_split_known=split,
        prompt_includes_cached=cached,
        prompt_includes_writes=writes,
    )


def meta(
    input_total: int,
    out: int,
    total: int,
    read: int,
    creation: int,
    w5: int,
    w1: int,
    reasoning: int | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "input_tokens": input_total,
        "output_tokens": out,
        "total_tokens": total,
        "input_token_details": {
            "cache_read": read,
            # ChatAnthropic's convention: the generic total is 0 once the 5m/1h split is given
            "cache_creation": creation if w5 + w1 == 0 else 0,
            "ephemeral_5m_input_tokens": w5,
            "ephemeral_1h_input_tokens": w1,
        },
    }
    if reasoning is not None:
        result["output_token_details"] = {"reasoning": reasoning}
    return result


# (id, raw usage, write_ttl_hint, expected NormalizedUsage, expected usage_metadata).
# Shapes follow what each relay really sends; numbers worked out by hand.
SAMPLES: list[tuple[str, Any, str | None, NormalizedUsage, dict[str, Any]]] = [
    (
        "openrouter_cache_write",  # the example in OpenRouter's usage-accounting docs
        {
            "completion_tokens": 2,
            "completion_tokens_details": {"reasoning_tokens": 0},
            "cost": 0.95,
            "cost_details": {"upstream_inference_cost": 19},
            "prompt_tokens": 194,
            "prompt_tokens_details": {
                "cached_tokens": 0,
                "cache_write_tokens": 100,
                "audio_tokens": 0,
            },
            "total_tokens": 196,
        },
        None,
        nu(94, 0, 100, 0, 2, 0, writes=True),
        meta(194, 2, 196, 0, 100, 100, 0, reasoning=0),
    ),
    (
        "openrouter_cache_hit",
        {
            "prompt_tokens": 10339,
            "completion_tokens": 60,
            "total_tokens": 10399,
            "prompt_tokens_details": {"cached_tokens": 10318, "cache_write_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        None,
        nu(21, 10318, 0, 0, 60, 0, cached=True),
        meta(10339, 60, 10399, 10318, 0, 0, 0, reasoning=0),
    ),
    (
        "litellm_current_1h_write",  # prompt_tokens = text + cached + creation
        {
            "prompt_tokens": 2065,
            "completion_tokens": 5,
            "total_tokens": 2070,
            "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": 5},
            "prompt_tokens_details": {
                "cached_tokens": 0,
                "text_tokens": 17,
                "cache_write_tokens": 2048,
                "cache_creation_tokens": 2048,
                "cache_creation_token_details": {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 2048,
                },
            },
            "cache_creation_input_tokens": 2048,
            "cache_read_input_tokens": 0,
        },
        None,
        nu(17, 0, 0, 2048, 5, 0, split=True, writes=True),
        meta(2065, 5, 2070, 0, 2048, 0, 2048, reasoning=0),
    ),
    (
        "litellm_current_read_and_5m_write",  # reads in two fields: the same tokens
        {
            "prompt_tokens": 5512,
            "completion_tokens": 300,
            "total_tokens": 5812,
            "prompt_tokens_details": {
                "cached_tokens": 4000,
                "cache_creation_tokens": 1500,
                "cache_creation_token_details": {
                    "ephemeral_5m_input_tokens": 1500,
                    "ephemeral_1h_input_tokens": 0,
                },
            },
            "cache_creation_input_tokens": 1500,
            "cache_read_input_tokens": 4000,
        },
        None,
        nu(12, 4000, 1500, 0, 300, split=True, cached=True, writes=True),
        meta(5512, 300, 5812, 4000, 1500, 1500, 0),
    ),
    (
        "litellm_legacy_reads_in_prompt_writes_not",  # prompt_tokens = input + cache_read
        {
            "prompt_tokens": 3010,
            "completion_tokens": 20,
            "total_tokens": 3030,
            "prompt_tokens_details": {"cached_tokens": 3000},
            "cache_creation_input_tokens": 1500,
            "cache_read_input_tokens": 3000,
        },
        None,
        nu(10, 3000, 1500, 0, 20, cached=True, writes=False),
        meta(4510, 20, 4530, 3000, 1500, 1500, 0),
    ),
    (
        "new_api_openai_semantic",  # new-api's OpenAI-style usage of a Claude channel
        {
            "prompt_tokens": 5512,
            "completion_tokens": 300,
            "total_tokens": 5812,
            "usage_semantic": "openai",
            "usage_source": "anthropic",
            "prompt_tokens_details": {
                "cached_tokens": 4000,
                "cached_creation_tokens": 1500,
                "cache_write_tokens": 1500,
                "text_tokens": 0,
                "audio_tokens": 0,
                "image_tokens": 0,
            },
            "completion_tokens_details": {
                "text_tokens": 0,
                "audio_tokens": 0,
                "image_tokens": 0,
                "reasoning_tokens": 120,
            },
            "input_tokens": 5512,
            "output_tokens": 300,
            "input_tokens_details": None,
            "claude_cache_creation_5_m_tokens": 500,
            "claude_cache_creation_1_h_tokens": 1000,
        },
        None,
        nu(12, 4000, 500, 1000, 300, 120, split=True, cached=True, writes=True),
        meta(5512, 300, 5812, 4000, 1500, 500, 1000, reasoning=120),
    ),
    (
        "new_api_legacy_prompt_excludes_cache",  # prompt_tokens = Anthropic input_tokens
        {
            "prompt_tokens": 12,
            "completion_tokens": 300,
            "total_tokens": 312,
            "prompt_tokens_details": {
                "cached_tokens": 4000,
                "cached_creation_tokens": 1500,
                "text_tokens": 0,
                "audio_tokens": 0,
                "image_tokens": 0,
            },
            "completion_tokens_details": {"reasoning_tokens": 0},
            "input_tokens": 0,
            "output_tokens": 0,
            "claude_cache_creation_5_m_tokens": 1500,
            "claude_cache_creation_1_h_tokens": 0,
        },
        None,
        nu(12, 4000, 1500, 0, 300, 0, split=True, cached=False, writes=False),
        meta(5512, 300, 5812, 4000, 1500, 1500, 0, reasoning=0),
    ),
    (
        "new_api_anthropic_semantic_beats_numbers",  # 9000 >= 1000 would read as included
        {
            "prompt_tokens": 9000,
            "completion_tokens": 40,
            "total_tokens": 9040,
            "usage_semantic": "anthropic",
            "prompt_tokens_details": {"cached_tokens": 1000, "cached_creation_tokens": 0},
        },
        None,
        nu(9000, 1000, 0, 0, 40, cached=False),
        meta(10000, 40, 10040, 1000, 0, 0, 0),
    ),
    (
        "anthropic_native_messages_api",  # Anthropic's own usage object
        {
            "input_tokens": 21,
            "cache_creation_input_tokens": 188086,
            "cache_read_input_tokens": 0,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 0,
                "ephemeral_1h_input_tokens": 188086,
            },
            "output_tokens": 393,
            "service_tier": "standard",
        },
        None,
        nu(21, 0, 0, 188086, 393, split=True, writes=False),
        meta(188107, 393, 188500, 0, 188086, 0, 188086),
    ),
    (
        "anthropic_style_relay_no_split_hint_1h",
        {
            "input_tokens": 50,
            "output_tokens": 10,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200,
        },
        "1h",
        nu(50, 1000, 0, 200, 10, cached=False, writes=False),
        meta(1250, 10, 1260, 1000, 200, 0, 200),
    ),
    (
        "one_api_style_prompt_excludes_reads",  # top-level Anthropic fields, total = P + C
        {
            "prompt_tokens": 30,
            "completion_tokens": 50,
            "total_tokens": 80,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 2500,
        },
        None,
        nu(30, 2500, 0, 0, 50, cached=False),
        meta(2530, 50, 2580, 2500, 0, 0, 0),
    ),
    (
        "prompt_excludes_cache_total_tells",  # numbers alone would read it as included
        {
            "prompt_tokens": 5000,
            "completion_tokens": 100,
            "total_tokens": 8100,
            "prompt_tokens_details": {"cached_tokens": 2000},
            "cache_creation_tokens": 1000,
        },
        None,
        nu(5000, 2000, 1000, 0, 100, cached=False, writes=False),
        meta(8000, 100, 8100, 2000, 1000, 1000, 0),
    ),
    (
        # a new-api fork: prompt_tokens is Anthropic's (here 0: all cached), input_tokens is all
        "new_api_fork_zero_prompt_full_input_tokens",
        {
            "prompt_tokens": 0,
            "completion_tokens": 80,
            "total_tokens": 80,
            "input_tokens": 6000,
            "output_tokens": 80,
            "usage_semantic": "anthropic",
            "prompt_tokens_details": {
                "cached_tokens": 5000,
                "cached_creation_tokens": 1000,
                "cache_write_tokens": 1000,
            },
            "claude_cache_creation_5_m_tokens": 1000,
            "claude_cache_creation_1_h_tokens": 0,
        },
        None,
        nu(0, 5000, 1000, 0, 80, split=True, cached=True, writes=True),
        meta(6000, 80, 6080, 5000, 1000, 1000, 0),
    ),
    (
        "reads_in_prompt_total_tells",  # numbers alone would read the writes as included too
        {
            "prompt_tokens": 5100,
            "completion_tokens": 10,
            "total_tokens": 5410,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 300,
        },
        None,
        nu(5000, 100, 300, 0, 10, cached=True, writes=False),
        meta(5400, 10, 5410, 100, 300, 300, 0),
    ),
    (
        "plain_openai_no_cache_fields",
        {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
        None,
        nu(42, 0, 0, 0, 7),
        meta(42, 7, 49, 0, 0, 0, 0),
    ),
    (
        "openai_reasoning_and_cached",
        {
            "prompt_tokens": 1200,
            "completion_tokens": 800,
            "total_tokens": 2000,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 640,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        None,
        nu(176, 1024, 0, 0, 800, 640, cached=True),
        meta(1200, 800, 2000, 1024, 0, 0, 0, reasoning=640),
    ),
    (
        "deepseek_style_hit_miss",
        {
            "prompt_tokens": 1500,
            "completion_tokens": 20,
            "total_tokens": 1520,
            "prompt_cache_hit_tokens": 1280,
            "prompt_cache_miss_tokens": 220,
            "prompt_tokens_details": {"cached_tokens": 1280},
        },
        None,
        nu(220, 1280, 0, 0, 20, cached=True),
        meta(1500, 20, 1520, 1280, 0, 0, 0),
    ),
    (
        "responses_api_shape",  # input_tokens with input_tokens_details: OpenAI semantics
        {
            "input_tokens": 2048,
            "input_tokens_details": {"cached_tokens": 1920},
            "output_tokens": 64,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 2112,
        },
        None,
        nu(128, 1920, 0, 0, 64, 0, cached=True),
        meta(2048, 64, 2112, 1920, 0, 0, 0, reasoning=0),
    ),
    (
        "numeric_strings_and_integral_floats",
        {
            "prompt_tokens": "1200",
            "completion_tokens": 50.0,
            "total_tokens": " 1250 ",
            "prompt_tokens_details": {"cached_tokens": "1000"},
        },
        None,
        nu(200, 1000, 0, 0, 50, cached=True),
        meta(1200, 50, 1250, 1000, 0, 0, 0),
    ),
    (
        "reads_in_two_fields_disagree_take_max",
        {
            "prompt_tokens": 5000,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 2990},
            "cache_read_input_tokens": 3000,
        },
        None,
        nu(2000, 3000, 0, 0, 1, cached=True),
        meta(5000, 1, 5001, 3000, 0, 0, 0),
    ),
    (
        "split_short_of_total_rest_to_hint",
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 1000,
            "cache_creation": {"ephemeral_1h_input_tokens": 600},
            "output_tokens": 5,
        },
        None,
        nu(10, 0, 400, 600, 5, writes=False),
        meta(1010, 5, 1015, 0, 1000, 400, 600),
    ),
    (
        "split_short_of_total_rest_to_hint_1h",
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 600},
            "output_tokens": 5,
        },
        "1h",
        nu(10, 0, 0, 1000, 5, writes=False),
        meta(1010, 5, 1015, 0, 1000, 0, 1000),
    ),
    (
        "split_over_total_scaled_down",
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 900,
            "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 600},
            "output_tokens": 5,
        },
        None,
        nu(10, 0, 450, 450, 5, writes=False),
        meta(910, 5, 915, 0, 900, 450, 450),
    ),
    (
        "split_without_total_field",
        {
            "prompt_tokens": 1010,
            "completion_tokens": 3,
            "cache_creation": {"ephemeral_5m_input_tokens": 700, "ephemeral_1h_input_tokens": 300},
        },
        None,
        nu(10, 0, 700, 300, 3, split=True, writes=True),
        meta(1010, 3, 1013, 0, 1000, 700, 300),
    ),
    (
        "nulls_are_missing",
        {
            "prompt_tokens": 100,
            "completion_tokens": None,
            "prompt_tokens_details": None,
            "cache_creation": None,
            "completion_tokens_details": None,
        },
        None,
        nu(100, 0, 0, 0, 0),
        meta(100, 0, 100, 0, 0, 0, 0),
    ),
    ("empty_object", {}, None, nu(0, 0, 0, 0, 0), meta(0, 0, 0, 0, 0, 0, 0)),
    ("no_usage_at_all", None, "1h", nu(0, 0, 0, 0, 0), meta(0, 0, 0, 0, 0, 0, 0)),
]


@pytest.mark.parametrize(
    ("raw", "hint", "expected", "expected_meta"),
    [pytest.param(*s[1:], id=s[0]) for s in SAMPLES],
)
def test_dialect_samples(
    raw: Any, hint: Any, expected: NormalizedUsage, expected_meta: dict[str, Any]
) -> None:
    result = normalize_usage(raw, write_ttl_hint=hint)
    assert result == expected
    assert result.to_usage_metadata() == expected_meta


def test_sample_table_is_large_enough() -> None:
    assert len(SAMPLES) >= 10


def test_usage_metadata_is_accepted_by_langchain() -> None:
    by_id = {s[0]: s[1] for s in SAMPLES}
    first = normalize_usage(by_id["new_api_openai_semantic"]).to_usage_metadata()
    second = normalize_usage(by_id["anthropic_native_messages_api"]).to_usage_metadata()
    message = AIMessage(content="ok", usage_metadata=first)
    assert message.usage_metadata == first
    summed = add_usage(first, second)
    assert summed["input_tokens"] == 5512 + 188107
    assert summed["input_token_details"]["cache_creation"] == 0  # the split says it all
    assert summed["input_token_details"].get("ephemeral_1h_input_tokens") == 1000 + 188086


def test_derived_totals_and_to_dict_round_trip_through_json() -> None:
    usage = nu(12, 4000, 500, 1000, 300, 120, split=True, cached=True, writes=True)
    assert usage.cache_write_tokens == 1500
    assert usage.total_input_tokens == 5512
    as_json = json.loads(json.dumps(usage.to_dict()))
    assert as_json == {
        "input_tokens": 12,
        "cache_read_tokens": 4000,
        "cache_write_5m_tokens": 500,
        "cache_write_1h_tokens": 1000,
        "output_tokens": 300,
        "reasoning_tokens": 120,
        "write_split_known": True,
        "prompt_includes_cached": True,
        "prompt_includes_writes": True,
        "cache_write_tokens": 1500,
        "total_input_tokens": 5512,
    }


@pytest.mark.parametrize(
    "value",
    [-1, True, 1.5, math.nan, "x", [0]],
)
def test_normalized_usage_rejects_bad_counts(value: Any) -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        nu(value, 0, 0, 0, 0)


def test_invalid_ttl_hint_is_a_request_validation_error() -> None:
    with pytest.raises(RequestValidationError, match="write_ttl_hint"):
        normalize_usage({}, write_ttl_hint="2h")  # type: ignore[arg-type]


# --- garbage ---------------------------------------------------------------------------------

GARBAGE: list[tuple[str, Any, str]] = [
    ("negative", {"prompt_tokens": -1}, "usage.prompt_tokens"),
    ("negative_string", {"prompt_tokens": "-5"}, "usage.prompt_tokens"),
    ("word", {"completion_tokens": "abc"}, "usage.completion_tokens"),
    ("empty_string", {"prompt_tokens": ""}, "usage.prompt_tokens"),
    ("exponent_string", {"prompt_tokens": "1e3"}, "usage.prompt_tokens"),
    ("fraction", {"prompt_tokens": 12.5}, "usage.prompt_tokens"),
    ("nan", {"total_tokens": math.nan}, "usage.total_tokens"),
    ("nan_string", {"total_tokens": "NaN"}, "usage.total_tokens"),
    ("inf", {"prompt_tokens": math.inf}, "usage.prompt_tokens"),
    ("bool", {"prompt_tokens": True}, "usage.prompt_tokens"),
    ("list", {"prompt_tokens": [1]}, "usage.prompt_tokens"),
    ("object", {"prompt_tokens": {"a": 1}}, "usage.prompt_tokens"),
    ("absurd", {"prompt_tokens": MAX_TOKEN_COUNT + 1}, "usage.prompt_tokens"),
    ("overlong_digits", {"prompt_tokens": "9" * 5000}, "usage.prompt_tokens"),
    ("unicode_digits", {"prompt_tokens": "\u0661\u0662"}, "usage.prompt_tokens"),
    ("details_string", {"prompt_tokens_details": "x"}, "usage.prompt_tokens_details"),
    ("details_list", {"prompt_tokens_details": [1, 2]}, "usage.prompt_tokens_details"),
    (
        "nested_negative",
        {"prompt_tokens_details": {"cached_tokens": -3}},
        "usage.prompt_tokens_details.cached_tokens",
    ),
    (
        "nested_write_junk",
        {"input_tokens_details": {"cache_write_tokens": {"n": 1}}},
        "usage.input_tokens_details.cache_write_tokens",
    ),
    ("split_list", {"cache_creation": [1, 2]}, "usage.cache_creation"),
    (
        "split_word",
        {"cache_creation": {"ephemeral_1h_input_tokens": "lots"}},
        "usage.cache_creation.ephemeral_1h_input_tokens",
    ),
    (
        "split_in_details_junk",
        {"prompt_tokens_details": {"cache_creation_token_details": 7}},
        "usage.prompt_tokens_details.cache_creation_token_details",
    ),
    (
        "reasoning_fraction",
        {"completion_tokens_details": {"reasoning_tokens": 1.5}},
        "usage.completion_tokens_details.reasoning_tokens",
    ),
    ("flat_split_negative", {"claude_cache_creation_1_h_tokens": -1}, "usage.claude_cache"),
]


@pytest.mark.parametrize(("raw", "field"), [pytest.param(g[1], g[2], id=g[0]) for g in GARBAGE])
def test_garbage_raises_api_response_error_naming_the_field(raw: Any, field: str) -> None:
    with pytest.raises(APIResponseError, match="malformed usage") as info:
        normalize_usage(raw)
    assert field in str(info.value)


@pytest.mark.parametrize("raw", [[], "usage", 42, b"{}", 1.5, True])
def test_non_object_usage_raises(raw: Any) -> None:
    with pytest.raises(APIResponseError, match="usage must be a JSON object"):
        normalize_usage(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12),
        (" 12 ", 12),
        ("0", 0),
        (12.0, 12),
        ("0" * 5000 + "7", 7),
        (MAX_TOKEN_COUNT, MAX_TOKEN_COUNT),
        (str(MAX_TOKEN_COUNT), MAX_TOKEN_COUNT),
    ],
)
def test_accepted_count_spellings(value: Any, expected: int) -> None:
    assert normalize_usage({"prompt_tokens": value}).input_tokens == expected


# --- properties ------------------------------------------------------------------------------

COUNT = st.integers(min_value=0, max_value=10**7)


@dataclass(frozen=True)
class Truth:
    plain: int
    read: int
    w5: int
    w1: int
    out: int

    @property
    def write(self) -> int:
        return self.w5 + self.w1

    @property
    def total_input(self) -> int:
        return self.plain + self.read + self.write


truths = st.builds(Truth, COUNT, COUNT, COUNT, COUNT, COUNT)


# Encoders: truth -> (raw usage in one dialect, carries the TTL split, truth identifiable).
Encoder = Callable[[Truth], tuple[dict[str, Any], bool, bool]]


def enc_openrouter(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    prompt = t.total_input
    raw = {
        "prompt_tokens": prompt,
        "completion_tokens": t.out,
        "total_tokens": prompt + t.out,
        "prompt_tokens_details": {"cached_tokens": t.read, "cache_write_tokens": t.write},
    }
    return raw, False, True


def enc_litellm_current(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    prompt = t.total_input
    raw = {
        "prompt_tokens": prompt,
        "completion_tokens": t.out,
        "total_tokens": prompt + t.out,
        "prompt_tokens_details": {
            "cached_tokens": t.read,
            "text_tokens": t.plain,
            "cache_creation_tokens": t.write,
            "cache_creation_token_details": {
                "ephemeral_5m_input_tokens": t.w5,
                "ephemeral_1h_input_tokens": t.w1,
            },
        },
        "cache_creation_input_tokens": t.write,
        "cache_read_input_tokens": t.read,
    }
    return raw, True, True


def enc_litellm_legacy(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    prompt = t.plain + t.read
    raw = {
        "prompt_tokens": prompt,
        "completion_tokens": t.out,
        "total_tokens": prompt + t.out,
        "prompt_tokens_details": {"cached_tokens": t.read},
        "cache_creation_input_tokens": t.write,
        "cache_read_input_tokens": t.read,
    }
    # Numbers alone tell "reads only" from "all" when the writes outweigh the plain input.
    return raw, False, t.write == 0 or t.plain < t.write


def enc_new_api_openai(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    prompt = t.total_input
    raw = {
        "prompt_tokens": prompt,
        "completion_tokens": t.out,
        "total_tokens": prompt + t.out,
        "usage_semantic": "openai",
        "prompt_tokens_details": {
            "cached_tokens": t.read,
            "cached_creation_tokens": t.write,
            "cache_write_tokens": t.write,
        },
        "input_tokens": prompt,
        "output_tokens": t.out,
        "claude_cache_creation_5_m_tokens": t.w5,
        "claude_cache_creation_1_h_tokens": t.w1,
    }
    return raw, True, True


def enc_new_api_anthropic(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    raw = {
        "prompt_tokens": t.plain,
        "completion_tokens": t.out,
        "total_tokens": t.plain + t.out,
        "usage_semantic": "anthropic",
        "prompt_tokens_details": {"cached_tokens": t.read, "cached_creation_tokens": t.write},
        "claude_cache_creation_5_m_tokens": t.w5,
        "claude_cache_creation_1_h_tokens": t.w1,
    }
    return raw, True, True


def enc_new_api_legacy(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    raw = {
        "prompt_tokens": t.plain,
        "completion_tokens": t.out,
        "total_tokens": t.plain + t.out,
        "prompt_tokens_details": {"cached_tokens": t.read, "cached_creation_tokens": t.write},
        "input_tokens": 0,
        "output_tokens": 0,
    }
    # Identifiable only when the plain input is smaller than the reads (typical of a hit).
    return raw, False, t.read + t.write == 0 or t.plain < t.read


def enc_anthropic_native(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    raw = {
        "input_tokens": t.plain,
        "output_tokens": t.out,
        "cache_read_input_tokens": t.read,
        "cache_creation_input_tokens": t.write,
        "cache_creation": {"ephemeral_5m_input_tokens": t.w5, "ephemeral_1h_input_tokens": t.w1},
    }
    return raw, True, True


def enc_excludes_with_true_total(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    raw = {
        "prompt_tokens": t.plain,
        "completion_tokens": t.out,
        "total_tokens": t.total_input + t.out,
        "cache_read_input_tokens": t.read,
        "cache_write_tokens": t.write,
    }
    return raw, False, True


def enc_reads_in_prompt_true_total(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    prompt = t.plain + t.read
    raw = {
        "prompt_tokens": prompt,
        "completion_tokens": t.out,
        "total_tokens": t.total_input + t.out,
        "cache_read_input_tokens": t.read,
        "cache_creation_input_tokens": t.write,
    }
    return raw, False, True


def enc_responses_api(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    raw = {
        "input_tokens": t.total_input,
        "input_tokens_details": {"cached_tokens": t.read, "write_cached_tokens": t.write},
        "output_tokens": t.out,
        "total_tokens": t.total_input + t.out,
    }
    return raw, False, True


def enc_strings(t: Truth) -> tuple[dict[str, Any], bool, bool]:
    raw, split, ok = enc_litellm_current(t)
    return json.loads(json.dumps(raw), parse_int=str), split, ok


ENCODERS: dict[str, Encoder] = {
    "openrouter": enc_openrouter,
    "litellm_current": enc_litellm_current,
    "litellm_legacy": enc_litellm_legacy,
    "new_api_openai": enc_new_api_openai,
    "new_api_anthropic": enc_new_api_anthropic,
    "new_api_legacy": enc_new_api_legacy,
    "anthropic_native": enc_anthropic_native,
    "excludes_with_true_total": enc_excludes_with_true_total,
    "reads_in_prompt_true_total": enc_reads_in_prompt_true_total,
    "responses_api": enc_responses_api,
    "numeric_strings": enc_strings,
}


@pytest.mark.parametrize("dialect", sorted(ENCODERS))
@given(truth=truths, hint=st.sampled_from(["5m", "1h", None]))
@settings(max_examples=60, deadline=None)
def test_truth_comes_back_in_every_dialect(dialect: str, truth: Truth, hint: Any) -> None:
    raw, carries_split, identifiable = ENCODERS[dialect](truth)
    result = normalize_usage(raw, write_ttl_hint=hint)
    # Reads, writes and output always come back exactly; writes by TTL when carried.
    assert result.cache_read_tokens == truth.read
    assert result.cache_write_tokens == truth.write
    assert result.output_tokens == truth.out
    if carries_split:
        assert (result.cache_write_5m_tokens, result.cache_write_1h_tokens) == (truth.w5, truth.w1)
    elif (hint or "5m") == "5m":
        assert result.cache_write_1h_tokens == 0
    else:
        assert result.cache_write_5m_tokens == 0
    if identifiable:
        assert result.input_tokens == truth.plain
        assert result.total_input_tokens == truth.total_input
    else:  # the documented ambiguous case: under-count, never double count
        assert result.total_input_tokens <= truth.total_input


@given(truth=truths)
def test_legacy_litellm_ambiguous_case_is_the_documented_fallback(truth: Truth) -> None:
    assume(truth.write > 0 and truth.plain >= truth.write)
    raw, _, _ = enc_litellm_legacy(truth)
    result = normalize_usage(raw)
    # Read as "includes reads and writes": plain input short by exactly the writes.
    assert result.input_tokens == truth.plain - truth.write
    assert result.prompt_includes_writes is True
    assert result.prompt_includes_cached is (True if truth.read else None)


READ_KEYS = ["cache_read_input_tokens", "prompt_cache_hit_tokens"]
DETAIL_READ_KEYS = ["cached_tokens", "cache_read_input_tokens"]
WRITE_KEYS = ["cache_creation_input_tokens", "cache_write_tokens", "cached_creation_tokens"]

maybe_count = st.none() | COUNT


@given(
    prompt=maybe_count,
    completion=maybe_count,
    total=maybe_count,
    top_reads=st.lists(maybe_count, min_size=2, max_size=2),
    detail_reads=st.lists(maybe_count, min_size=2, max_size=2),
    writes=st.lists(maybe_count, min_size=3, max_size=3),
    split=st.none() | st.tuples(maybe_count, maybe_count),
    semantic=st.sampled_from([None, "openai", "anthropic", "other"]),
)
def test_any_numeric_combination_is_never_negative_and_never_double_counts(
    prompt: int | None,
    completion: int | None,
    total: int | None,
    top_reads: list[int | None],
    detail_reads: list[int | None],
    writes: list[int | None],
    split: tuple[int | None, int | None] | None,
    semantic: str | None,
) -> None:
    raw: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "usage_semantic": semantic,
        "prompt_tokens_details": dict(zip(DETAIL_READ_KEYS, detail_reads, strict=True)),
    }
    raw.update(zip(READ_KEYS, top_reads, strict=True))
    raw.update(zip(WRITE_KEYS, writes, strict=True))
    if split is not None:
        raw["cache_creation"] = {
            "ephemeral_5m_input_tokens": split[0],
            "ephemeral_1h_input_tokens": split[1],
        }
    result = normalize_usage(raw)

    counts = [
        result.input_tokens,
        result.cache_read_tokens,
        result.cache_write_5m_tokens,
        result.cache_write_1h_tokens,
        result.output_tokens,
    ]
    assert all(c >= 0 for c in counts)
    assert result.total_input_tokens == (
        result.input_tokens + result.cache_read_tokens + result.cache_write_tokens
    )
    reported_reads = max([r for r in top_reads + detail_reads if r is not None], default=0)
    assert result.cache_read_tokens == reported_reads  # one fact in two fields: never summed
    reported_writes = [w for w in writes if w is not None]
    if reported_writes:
        assert result.cache_write_tokens == max(reported_writes)  # the total is trusted
    p = prompt or 0
    cached = result.cache_read_tokens + result.cache_write_tokens
    # Each cached token counted once: the total is the prompt plus at most the cached tokens
    # the prompt did not already hold, and never less than either part.
    assert max(p, cached) <= result.total_input_tokens <= p + cached
    assert result.input_tokens <= p


KNOWN_KEYS = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_write_tokens",
    "cache_creation_tokens",
    "cached_creation_tokens",
    "write_cached_tokens",
    "claude_cache_creation_5_m_tokens",
    "usage_semantic",
]
CONTAINER_KEYS = [
    "prompt_tokens_details",
    "input_tokens_details",
    "completion_tokens_details",
    "cache_creation",
]
INNER_KEYS = [
    "cached_tokens",
    "cache_write_tokens",
    "cache_creation_token_details",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "reasoning_tokens",
]

junk_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["12", "-1", "nan", "1e400", "", " 7 ", "0x10"])
)
junk_json = st.recursive(
    junk_scalar,
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(INNER_KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(
    top=st.dictionaries(st.sampled_from(KNOWN_KEYS), junk_scalar, max_size=5),
    containers=st.dictionaries(st.sampled_from(CONTAINER_KEYS), junk_json, max_size=2),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_nothing_but_api_response_error_escapes(
    top: dict[str, Any], containers: dict[str, Any]
) -> None:
    try:
        result = normalize_usage({**top, **containers})
    except APIResponseError as exc:
        message = str(exc)
    else:
        message = ""
        counts = [v for v in result.to_dict().values() if not isinstance(v, bool)]
        assert all(v is None or (isinstance(v, int) and v >= 0) for v in counts)
    assert message == "" or "malformed usage" in message


@given(raw=junk_json)
def test_any_json_value_as_usage_is_handled(raw: Any) -> None:
    with contextlib.suppress(APIResponseError):
        normalize_usage(raw)


@given(truth=truths)
def test_usage_metadata_input_counts_everything(truth: Truth) -> None:
    usage = nu(truth.plain, truth.read, truth.w5, truth.w1, truth.out)
    metadata = usage.to_usage_metadata()
    assert metadata["input_tokens"] == truth.total_input
    assert metadata["total_tokens"] == truth.total_input + truth.out
    details = metadata["input_token_details"]
    assert details.get("cache_read") == truth.read
    assert from_usage_metadata(metadata).cache_write_tokens == truth.write
    assert sum(details.values()) <= metadata["input_tokens"]
    assert "output_token_details" not in metadata
    assert replace(usage, reasoning_tokens=3).to_usage_metadata()["output_token_details"] == {
        "reasoning": 3
    }


# ------------------------------------------- usage_metadata in ChatAnthropic's convention (2026)


def _langsmith_input_cost(metadata: dict, model: str) -> float:
    """LangSmith's token-based cost of the input side: each detail at its price, the rest plain.

    (langsmith-sdk PR #2519: ``remainder = input_tokens - sum(details)``, clamped at 0.)
    """
    prices = lookup_model(model).prices
    assert prices is not None
    rate = {
        "cache_read": prices.cache_read,
        "cache_creation": prices.cache_write_5m,
        "ephemeral_5m_input_tokens": prices.cache_write_5m,
        "ephemeral_1h_input_tokens": prices.cache_write_1h,
    }
    details = metadata.get("input_token_details", {})
    remainder = max(metadata["input_tokens"] - sum(details.values()), 0)
    return (remainder * prices.input + sum(n * rate[k] for k, n in details.items())) / 1e6


# Anthropic usage -> what langchain-anthropic 1.7.10's _create_usage_metadata returns for it.
CHAT_ANTHROPIC_CASES = [
    (
        {"input_tokens": 20, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 1500,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1500},
         "output_tokens": 40},
        {"input_tokens": 4520, "output_tokens": 40, "total_tokens": 4560,
         "input_token_details": {"cache_read": 3000, "cache_creation": 0,
                                 "ephemeral_5m_input_tokens": 0,
                                 "ephemeral_1h_input_tokens": 1500}},
    ),
    (
        {"input_tokens": 7, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
         "output_tokens": 3},
        {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10,
         "input_token_details": {"cache_read": 0, "cache_creation": 0,
                                 "ephemeral_5m_input_tokens": 0,
                                 "ephemeral_1h_input_tokens": 0}},
    ),
    (
        {"input_tokens": 100, "cache_read_input_tokens": 200, "cache_creation_input_tokens": 700,
         "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 400},
         "output_tokens": 5},
        {"input_tokens": 1000, "output_tokens": 5, "total_tokens": 1005,
         "input_token_details": {"cache_read": 200, "cache_creation": 0,
                                 "ephemeral_5m_input_tokens": 300,
                                 "ephemeral_1h_input_tokens": 400}},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("anthropic_usage", "expected"), CHAT_ANTHROPIC_CASES)
def test_usage_metadata_is_reported_the_way_chat_anthropic_reports_it(
    anthropic_usage: dict, expected: dict
) -> None:
    assert chat_anthropic_usage_metadata(normalize_usage(anthropic_usage)) == expected


def test_the_chat_model_reports_chat_anthropics_convention() -> None:
    usage = normalize_usage(CHAT_ANTHROPIC_CASES[0][0])
    assert usage.to_usage_metadata() == chat_anthropic_usage_metadata(usage)


_COUNT = st.integers(min_value=0, max_value=10**7)


@given(
    plain=_COUNT, read=_COUNT, w5=_COUNT, w1=_COUNT, out=_COUNT,
    model=st.sampled_from(["claude-sonnet-5-5", "claude-opus-5-5", "claude-fable-5-1"]),
)  # fmt: skip
def test_langsmith_prices_our_usage_metadata_at_our_cost(
    plain: int, read: int, w5: int, w1: int, out: int, model: str
) -> None:
    usage = NormalizedUsage(plain, read, w5, w1, out)
    metadata = chat_anthropic_usage_metadata(usage)
    details = metadata["input_token_details"]
    assert sum(details.values()) <= metadata["input_tokens"]  # the standard tests' invariant
    prices = lookup_model(model).prices
    assert prices is not None
    ours = call_cost_usd(usage, model)
    assert ours is not None
    output = out * prices.output / 1e6
    assert _langsmith_input_cost(dict(metadata), model) + output == pytest.approx(ours, rel=1e-9)


# -- writes a relay hides, inferred from the markers sent ----------------------------------------


@pytest.mark.parametrize(
    ("read", "plain", "ends", "expected"),
    [
        # (read, plain input) + markers (end, ttl) -> (5m writes, 1h writes, plain left) or None
        pytest.param(0, 10_000, [(6_000, "5m")], (6_000, 0, 4_000), id="first-write"),
        pytest.param(6_000, 4_000, [(6_000, "5m"), (9_000, "5m")], (3_000, 0, 1_000), id="tail"),
        pytest.param(0, 10_000, [(4_000, "1h"), (9_000, "5m")], (5_000, 4_000, 1_000), id="mixed"),
        pytest.param(5_000, 5_000, [(4_000, "1h"), (9_000, "5m")], (4_000, 0, 1_000), id="1h-read"),
        pytest.param(9_000, 1_000, [(9_000, "5m")], None, id="all-read"),
        pytest.param(0, 3_000, [(9_000, "5m")], (3_000, 0, 0), id="over-estimate-capped"),
        pytest.param(0, 3_000, [], None, id="no-marker"),
    ],
)
def test_inferred_writes_table(
    read: int,
    plain: int,
    ends: list[tuple[int, WriteTTL]],
    expected: tuple[int, int, int] | None,
) -> None:
    usage = NormalizedUsage(plain, read, 0, 0, 7)
    got = with_inferred_writes(usage, ends)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert (got.cache_write_5m_tokens, got.cache_write_1h_tokens, got.input_tokens) == expected
    assert (got.cache_read_tokens, got.output_tokens) == (read, 7)


@given(
    read=st.integers(0, 50_000),
    plain=st.integers(0, 50_000),
    ends=st.lists(st.tuples(st.integers(0, 120_000), st.sampled_from(["5m", "1h"])), max_size=4),
)
def test_inferred_writes_only_move_plain_input(
    read: int, plain: int, ends: list[tuple[int, WriteTTL]]
) -> None:
    usage = NormalizedUsage(plain, read, 0, 0, 3)
    got = with_inferred_writes(usage, ends)
    if got is None:
        return
    assert got.total_input_tokens == usage.total_input_tokens  # the relay's total is kept
    assert 0 < got.cache_write_tokens <= plain
    assert got.cache_read_tokens == read
    assert with_inferred_writes(got, ends) is None  # writes already there: nothing more
