"""Tests for the LangChain model profile kept in models.json (``models.model_profile``)."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from importlib import resources
from typing import Any, get_type_hints

import pytest
from langchain_core.language_models import ModelProfile
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

from langchain_claude_relay import models
from langchain_claude_relay.models import (
    LISTED_UNPRICED,
    MODEL_TABLE,
    PROFILE_DEFAULTS,
    PROFILE_KEYS,
    SOURCES,
    FamilyProfile,
    load_profile_defaults,
    load_table,
    lookup_model,
    model_profile,
    register_model,
)

M, K = 1_000_000, 200_000


pytestmark = pytest.mark.usefixtures("packaged_model_table")


def _table() -> dict[str, Any]:
    text = resources.files("langchain_claude_relay").joinpath("models.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _fake(profile: dict[str, Any] | None) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(()), profile=profile)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ the data


def test_every_key_the_table_may_set_is_a_langchain_model_profile_key() -> None:
    assert set(get_type_hints(ModelProfile)) >= PROFILE_KEYS


@pytest.mark.parametrize("family", [*MODEL_TABLE, *LISTED_UNPRICED])
def test_every_family_has_a_profile_with_sources_and_a_date(family: str) -> None:
    spec = MODEL_TABLE.get(family) or LISTED_UNPRICED[family]
    assert spec.profile is not None, family
    assert spec.profile.sources
    assert all(key in SOURCES for key in spec.profile.sources)
    assert isinstance(spec.profile.read_on, dt.date)
    assert set(spec.profile.as_dict()) <= PROFILE_KEYS


def test_the_defaults_are_sourced_flags() -> None:
    assert PROFILE_DEFAULTS.sources
    assert all(key in SOURCES for key in PROFILE_DEFAULTS.sources)
    assert isinstance(PROFILE_DEFAULTS.read_on, dt.date)
    values = PROFILE_DEFAULTS.as_dict()
    assert all(isinstance(v, bool) for v in values.values())  # no token counts by default
    for flag in ("tool_calling", "image_inputs", "pdf_inputs", "reasoning_output"):
        assert values[flag] is True


@pytest.mark.parametrize(
    ("model", "max_input", "max_output"),
    [
        ("claude-fable-5-1", M, 128_000),
        ("claude-opus-5-5", M, 128_000),
        ("claude-sonnet-5-5", M, 128_000),
        ("claude-haiku-5-5", M, 128_000),
        ("claude-opus-5", M, 128_000),
        ("claude-sonnet-5", M, 128_000),
        ("claude-fable-5", M, 128_000),
        ("claude-mythos-5", M, 128_000),
        ("claude-opus-4-8", M, 128_000),
        ("claude-opus-4-7", M, 128_000),
        ("claude-opus-4-6", M, 128_000),
        ("claude-sonnet-4-6", M, 128_000),
        ("claude-opus-4-5-20251101", K, 64_000),
        ("claude-sonnet-4-5-20250929", K, 64_000),
        ("claude-haiku-4-5-20251001", K, 64_000),
        ("claude-opus-4-1-20250805", K, 32_000),
        ("claude-opus-4-20250514", K, 32_000),
        ("claude-sonnet-4-20250514", K, 64_000),
        ("claude-3-7-sonnet-20250219", K, 64_000),
        ("claude-3-5-sonnet-20241022", K, 8_192),
        ("claude-3-5-haiku-20241022", K, 8_192),
        ("claude-3-haiku-20240307", K, 4_096),
        ("claude-3-opus-20240229", K, 4_096),
    ],
)
def test_context_window_and_max_output_per_family(
    model: str, max_input: int, max_output: int
) -> None:
    profile = model_profile(model)
    assert profile is not None
    assert (profile["max_input_tokens"], profile["max_output_tokens"]) == (max_input, max_output)


def test_a_figure_no_source_gave_is_left_out_not_guessed() -> None:
    mythos_5_1 = model_profile("claude-mythos-5-1")
    assert mythos_5_1 is not None
    assert mythos_5_1["max_input_tokens"] == M
    assert "max_output_tokens" not in mythos_5_1
    preview = model_profile("claude-mythos-preview")
    assert preview is not None
    assert "max_input_tokens" not in preview
    assert "max_output_tokens" not in preview
    assert preview["tool_calling"] is True  # the defaults still apply


def test_a_null_in_a_family_withdraws_a_default() -> None:
    """Haiku 3: Anthropic's pages disagree on its PDF input, so the profile says nothing."""
    profile = model_profile("claude-3-haiku-20240307")
    assert profile is not None
    assert "pdf_inputs" not in profile
    assert None not in profile.values()


# ------------------------------------------------------------------------------ the flags


@pytest.mark.parametrize(
    ("model", "structured"),
    [
        ("claude-sonnet-5-5", True),
        ("claude-haiku-4-5", True),
        ("claude-sonnet-4-5", True),
        ("claude-mythos-preview", True),
        ("claude-opus-4-1", False),
        ("claude-sonnet-4-0", False),
        ("claude-3-7-sonnet-latest", False),
        ("claude-3-5-haiku-latest", False),
    ],
)
def test_structured_output_from_claude_4_5_on(model: str, structured: bool) -> None:
    profile = model_profile(model)
    assert profile is not None
    assert profile["structured_output"] is structured


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("claude-3-7-sonnet-20250219", True),
        ("claude-opus-4-20250514", True),
        ("claude-3-5-haiku-20241022", False),
        ("claude-3-5-sonnet-20241022", False),
        ("claude-3-opus-20240229", False),
    ],
)
def test_reasoning_output_follows_extended_thinking(model: str, reasoning: bool) -> None:
    profile = model_profile(model)
    assert profile is not None
    assert profile["reasoning_output"] is reasoning


def test_forced_tool_choice_is_flagged_where_it_is_a_400() -> None:
    for model in ("claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5-1"):
        profile = model_profile(model)
        assert profile is not None
        assert profile["tool_choice"] is False, model
    for model in ("claude-haiku-5-5", "claude-opus-4-8"):
        profile = model_profile(model)
        assert profile is not None
        assert "tool_choice" not in profile, model  # no source either way


def test_temperature_follows_the_sampling_rule() -> None:
    expected = {
        "claude-opus-4-7": False,  # a 400 on Claude 4.7 and later
        "claude-sonnet-4-6": True,  # temperature or top_p, not both
        "claude-3-5-haiku-20241022": None,  # no rule in our sources
    }
    for model, temperature in expected.items():
        profile = model_profile(model)
        assert profile is not None
        assert profile.get("temperature") is temperature, model


# ------------------------------------------------------------------------------ the contract


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-thinking", "claude-sonnet-4-5"),
        ("claude-opus-4-6@20260205", "claude-opus-4-6"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"),
    ],
)
def test_relay_spellings_get_their_familys_profile(model: str, family: str) -> None:
    assert model_profile(model) == model_profile(family)


@pytest.mark.parametrize("model", ["gpt-4o", "", "claude-opus-9", "claude-mythos-7-3"])
def test_an_unknown_model_has_no_profile(model: str) -> None:
    assert model_profile(model) is None


def test_listed_but_unpriced_ids_get_what_their_sources_say() -> None:
    profile = model_profile("claude-fable-5-2")
    assert profile is not None
    assert (profile["max_input_tokens"], profile["max_output_tokens"]) == (M, 128_000)
    with pytest.warns(UserWarning, match="listed by Anthropic"):
        assert lookup_model("claude-fable-5-2").prices is None  # still unpriced


def test_the_function_is_pure_no_warning_and_a_fresh_dict() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_profile("claude-sonet-4-6")  # a near miss: lookup_model would warn
        model_profile("claude-3-haiku-20240307")  # retired: lookup_model would warn
        first = model_profile("claude-sonnet-5-5")
    assert first is not None
    first["max_input_tokens"] = 1
    first["tool_calling"] = False
    again = model_profile("claude-sonnet-5-5")
    assert again is not None
    assert again["max_input_tokens"] == M
    assert again["tool_calling"] is True


def test_register_model_can_give_a_new_model_its_profile() -> None:
    assert model_profile("claude-opus-9") is None
    register_model(
        "claude-opus-9",
        min_cache_tokens=1024,
        profile=FamilyProfile.from_mapping({"max_input_tokens": 2_000_000}),
    )
    profile = model_profile("anthropic/claude-opus-9")
    assert profile is not None
    assert profile["max_input_tokens"] == 2_000_000
    assert profile["tool_calling"] is True  # the defaults apply


def test_a_registered_model_without_facts_gets_the_defaults_only() -> None:
    register_model("claude-opus-9", min_cache_tokens=1024)
    assert model_profile("claude-opus-9") == PROFILE_DEFAULTS.as_dict()


def test_registering_a_table_family_keeps_its_profile() -> None:
    before = model_profile("claude-sonnet-5-5")
    register_model("claude-sonnet-5-5", min_cache_tokens=2048)
    assert model_profile("claude-sonnet-5-5") == before


def test_register_model_refuses_a_plain_profile_dict() -> None:
    with pytest.raises(TypeError, match="FamilyProfile"):
        register_model("claude-opus-9", profile={"max_input_tokens": 1})
    assert "opus-9" not in models._overrides


@pytest.mark.parametrize(
    "values",
    [
        {"context_window": 1000},  # not a ModelProfile key the table carries
        {"max_input_tokens": "1M"},
        {"max_input_tokens": True},
        {"max_output_tokens": 0},
        {"tool_calling": "yes"},
    ],
)
def test_from_mapping_checks_keys_and_types(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="profile"):
        FamilyProfile.from_mapping(values)


# ------------------------------------------------------------------------------ the file


def _with_family_profile(profile: object) -> str:
    data = _table()
    data["families"][0]["profile"] = profile
    return json.dumps(data)


@pytest.mark.parametrize(
    "profile",
    [
        {"values": {"max_input_tokens": 1}, "sources": ["nowhere"], "read_on": "2026-12-03"},
        {"values": {"max_input_tokens": 1}, "sources": [], "read_on": "2026-12-03"},
        {"values": {"max_input_tokens": 1}, "sources": ["model-pages-2026-12"]},
        {"values": {"window": 1}, "sources": ["model-pages-2026-12"], "read_on": "2026-12-03"},
        {"values": {"max_input_tokens": -5}, "sources": ["model-pages-2026-12"], "read_on": "2026"},
        {"max_input_tokens": 1000},  # values not wrapped
    ],
)
def test_a_bad_profile_row_is_refused(profile: object) -> None:
    with pytest.raises(ValueError, match=r"models\.json"):
        load_table(_with_family_profile(profile))


def test_a_bad_defaults_block_is_refused() -> None:
    data = _table()
    data["profile_defaults"]["values"]["tool_calling"] = "always"
    with pytest.raises(ValueError, match="profile_defaults"):
        load_table(json.dumps(data))
    with pytest.raises(ValueError, match="profile_defaults"):
        load_profile_defaults(json.dumps(data))


# ------------------------------------------------------------------------------ LangChain


def test_langchain_reads_it_without_warning_about_unknown_keys() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = _fake(model_profile("claude-sonnet-5-5"))
    assert model.profile is not None
    assert model.profile.get("max_input_tokens") == M


def test_fractional_summarization_works_with_the_profile() -> None:
    from langchain.agents.middleware import SummarizationMiddleware

    with pytest.raises(ValueError, match="profile information is required"):
        SummarizationMiddleware(model=_fake(None), trigger=("fraction", 0.8))
    middleware = SummarizationMiddleware(
        model=_fake(model_profile("claude-sonnet-5-5")), trigger=("fraction", 0.8)
    )
    assert middleware._get_profile_limits() == M


def test_create_agent_would_pick_the_provider_strategy() -> None:
    from langchain.agents.factory import _supports_provider_strategy

    assert _supports_provider_strategy(_fake(model_profile("claude-opus-5-5")))
    assert not _supports_provider_strategy(_fake(model_profile("claude-3-5-haiku-20241022")))
