"""Bad settings are refused before anything is sent, with what is wrong and how to fix it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from langchain_claude_relay._settings_checks import check_api_key, check_sampling
from langchain_claude_relay.errors import RequestValidationError

TEMPERATURE_RANGE = (
    "Claude accepts 0 to 1 (0: the most predictable answers, 1: the most varied). "
    "Pass a value from 0 to 1, or leave temperature unset."
)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": 5}, f"temperature=5 is out of range: {TEMPERATURE_RANGE}"),
        ({"temperature": -0.1}, f"temperature=-0.1 is out of range: {TEMPERATURE_RANGE}"),
        ({"temperature": math.nan}, f"temperature=nan is out of range: {TEMPERATURE_RANGE}"),
        (
            {"temperature": "hot"},
            "temperature='hot' is not a number: Claude accepts 0 to 1 (0: the most predictable "
            "answers, 1: the most varied). Pass a number, e.g. temperature=0.5.",
        ),
        (
            {"temperature": True},
            "temperature=True is not a number: Claude accepts 0 to 1 (0: the most predictable "
            "answers, 1: the most varied). Pass a number, e.g. temperature=0.5.",
        ),
        (
            {"top_p": 1.5},
            "top_p=1.5 is out of range: Claude accepts 0 to 1 (the share of probability mass "
            "sampled from). Pass a value from 0 to 1, or leave top_p unset.",
        ),
        (
            {"max_tokens": -5},
            "max_tokens=-5 is invalid: it caps the tokens Claude writes, a whole number of at "
            "least 1. Pass e.g. max_tokens=1024, or leave it unset for the default.",
        ),
        (
            {"max_tokens": 0},
            "max_tokens=0 is invalid: it caps the tokens Claude writes, a whole number of at "
            "least 1. Pass e.g. max_tokens=1024, or leave it unset for the default.",
        ),
        (
            {"max_tokens": -1, "allow_zero_max_tokens": True},
            "max_tokens=-1 is invalid: it caps the tokens Claude writes, a whole number of at "
            "least 0. Pass e.g. max_tokens=1024, or leave it unset for the default.",
        ),
        (
            {"max_tokens": 10.5},
            "max_tokens=10.5 is invalid: it caps the tokens Claude writes, a whole number of at "
            "least 1. Pass e.g. max_tokens=1024, or leave it unset for the default.",
        ),
        (
            {"top_k": -1},
            "top_k=-1 is invalid: it samples from the K most likely tokens, a whole number of "
            "at least 0. Pass e.g. top_k=40, or leave it unset.",
        ),
    ],
)
def test_bad_sampling_settings_are_refused_with_the_fix(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        check_sampling(**settings)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)  # RequestValidationError is a ValueError


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"temperature": 0, "top_p": 1, "top_k": 0, "max_tokens": 1},
        {"temperature": 1.0, "max_tokens": 64_000},
        {"max_tokens": 0, "allow_zero_max_tokens": True},
    ],
)
def test_good_sampling_settings_pass(settings: dict[str, Any]) -> None:
    check_sampling(**settings)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_temperature_passes_exactly_inside_zero_to_one(value: float) -> None:
    inside = 0.0 <= value <= 1.0
    if inside:
        check_sampling(temperature=value)
    else:
        with pytest.raises(RequestValidationError):
            check_sampling(temperature=value)


KEY_FIX = (
    'pass your relay API key, api_key="sk-...", or set CLAUDE_RELAY_API_KEY (or OPENAI_API_KEY).'
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, f"no relay API key: {KEY_FIX}"),
        ("", f"api_key is empty: {KEY_FIX}"),
        (SecretStr(""), f"api_key is empty: {KEY_FIX}"),
        ("   ", f"api_key is blank (only whitespace): {KEY_FIX}"),
        (
            "sk-secret-123\n",
            "api_key has leading or trailing whitespace (often a newline read from a file), "
            "which cannot be sent in an HTTP header: strip it, e.g. api_key=key.strip().",
        ),
        (
            SecretStr("sk-secr\u00e9t-123"),
            "api_key contains characters that cannot be sent in an HTTP header (control or "
            "non-ASCII characters, e.g. a smart quote from a copy-paste): copy the relay API "
            "key again as plain text.",
        ),
    ],
)
def test_bad_api_keys_are_refused_with_the_fix(value: Any, message: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        check_api_key(value)
    assert str(caught.value) == message
    assert "secret" not in str(caught.value)


def test_the_key_message_names_its_source_and_owner() -> None:
    with pytest.raises(RequestValidationError) as caught:
        check_api_key(
            "", source="$ANTHROPIC_API_KEY", env_names=("ANTHROPIC_API_KEY",), owner="Anthropic"
        )
    assert str(caught.value) == (
        '$ANTHROPIC_API_KEY is empty: pass your Anthropic API key, api_key="sk-...", '
        "or set ANTHROPIC_API_KEY."
    )


def test_a_good_key_passes() -> None:
    check_api_key(SecretStr("sk-relay-abc123"))
    check_api_key("test")
