"""What a user swapping in from ChatOpenAI passes: its argument names, strict schemas, one stop
string, a class as ``response_format``, and misspelled settings (refused, never dropped)."""

from __future__ import annotations

import warnings
from typing import Any

import httpx2
import pytest
from fake_relay import completion
from pydantic import BaseModel, ValidationError

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.errors import AuthenticationError, RequestValidationError
from langchain_claude_relay.store import MemoryStore

BASE = {"base_url": "https://relay.example.com/v1", "api_key": "sk-test-peer-0123456789"}


@pytest.mark.parametrize(
    ("given", "setting", "value"),
    [
        ({"openai_api_key": "sk-test-peer-0123456789"}, "api_key", "sk-test-peer-0123456789"),
        ({"openai_api_base": "https://other.example.com/v1"}, "base_url", None),
        ({"request_timeout": 7}, "timeout", 7.0),
        ({"max_completion_tokens": 9}, "max_tokens", 9),
        ({"max_tokens_to_sample": 9}, "max_tokens", 9),
    ],
)
def test_peers_names_for_settings_set_them(given: dict[str, Any], setting: str, value: Any) -> None:
    args = {**BASE, **given}
    if setting in args and setting not in given:
        args.pop(setting)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        llm = ChatClaudeRelay(**args)
    got = getattr(llm, setting)
    if setting == "api_key":
        got = got.get_secret_value()
    assert got == (value if value is not None else given[next(iter(given))])
    assert llm.model_kwargs == {}


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ({"keepwarm": "auto"}, "keep_warm"),
        ({"keep_warm_budget": 5}, "keep_warm_budget_usd"),
        ({"ttl": "1h"}, "cache_ttl"),
        ({"stream": True}, "streaming"),
        ({"temprature": 0.2}, "temperature"),
    ],
)
def test_a_misspelled_setting_is_refused_with_the_one_it_means(
    given: dict[str, Any], meant: str
) -> None:
    with pytest.raises(ValidationError, match=f"no setting '{next(iter(given))}'.*{meant}="):
        ChatClaudeRelay(**BASE, **given)


def test_other_arguments_are_request_parameters_sent_with_a_warning(make_llm, relay) -> None:
    with pytest.warns(UserWarning, match="frequency_penalty, seed are not settings"):
        llm = make_llm(seed=1, frequency_penalty=0.1)
    assert llm.model_kwargs == {"seed": 1, "frequency_penalty": 0.1}
    llm.invoke("hi")
    assert relay.last["seed"] == 1
    assert relay.last["frequency_penalty"] == 0.1


def test_a_calls_extra_body_sends_its_fields_as_chat_openai_does(make_llm, relay) -> None:
    # ChatOpenAI code passes per-call body fields as invoke(..., extra_body={...}) or
    # bind(extra_body=...): the OpenAI SDK spreads them into the body. They were sent as one
    # field named "extra_body", which a relay ignores (or refuses).
    llm = make_llm(extra_body={"provider": {"order": ["a"]}, "seed": 1})
    llm.invoke("hi", extra_body={"seed": 2, "user": "u1"})
    assert "extra_body" not in relay.last
    assert relay.last["provider"] == {"order": ["a"]}
    assert (relay.last["seed"], relay.last["user"]) == (2, "u1")
    llm.bind(extra_body={"user": "u2"}).invoke("hi")
    assert "extra_body" not in relay.last
    assert relay.last["user"] == "u2"
    with pytest.raises(RequestValidationError, match="extra_body must be a dict"):
        llm.invoke("hi", extra_body=["user"])


def test_an_extra_body_in_model_kwargs_sends_its_fields_as_chat_openai_does(
    make_llm, relay
) -> None:
    # ChatOpenAI(model_kwargs={"extra_body": {...}}) hands it to the OpenAI SDK, which spreads
    # it into the body; it was sent as one field named "extra_body"
    llm = make_llm(model_kwargs={"extra_body": {"provider": {"order": ["a"]}}, "seed": 1})
    llm.invoke("hi")
    assert "extra_body" not in relay.last
    assert (relay.last["provider"], relay.last["seed"]) == ({"order": ["a"]}, 1)
    with pytest.raises(RequestValidationError, match=r"model_kwargs\['extra_body'\] must be"):
        make_llm(model_kwargs={"extra_body": "provider=a"}).invoke("hi")


@pytest.mark.parametrize(
    ("field", "fix"), [("stream", r"\.stream\(\)"), ("messages", "the call's input")]
)
def test_an_extra_body_cannot_set_what_the_request_is_built_from(
    make_llm, relay, field: str, fix: str
) -> None:
    # {"stream": True} made the relay answer with SSE, read as JSON ("an HTML error page?");
    # {"messages": [...]} was silently replaced by the call's own messages
    sent = len(relay.requests)
    with pytest.raises(RequestValidationError, match=f"cannot set '{field}': .*{fix}"):
        make_llm().invoke("hi", extra_body={field: True})
    assert len(relay.requests) == sent  # refused before anything is sent


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({"model_kwargs": {"seed": 1}, "seed": 2}, "seed given both"),
        ({"max_tokens": 3, "max_completion_tokens": 4}, "pass max_tokens= only"),
    ],
)
def test_a_setting_given_twice_is_refused(given: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ChatClaudeRelay(**BASE, **given)


def test_one_stop_string_is_one_stop_sequence(make_llm, relay) -> None:
    make_llm().invoke("hi", stop="ly:")
    assert relay.last["stop"] == ["ly:"]
    make_llm(stop_sequences="END").invoke("hi")
    assert relay.last["stop"] == ["END"]


class Address(BaseModel):
    city: str


class Person(BaseModel):
    """A person."""

    name: str
    address: Address


def _objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema inside ``schema``."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found.extend(_objects(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_objects(value))
    return found


def test_bind_tools_strict_is_set_on_each_tool_and_closes_its_objects(make_llm, relay) -> None:
    make_llm().bind_tools([Person], strict=True).invoke("hi")
    (tool,) = relay.last["tools"]
    assert "strict" not in relay.last
    assert tool["function"]["strict"] is True
    objects = _objects(tool["function"]["parameters"])
    assert len(objects) == 2
    assert all(o["additionalProperties"] is False for o in objects)
    make_llm().bind_tools([Person], strict=False).invoke("hi")
    (tool,) = relay.last["tools"]
    assert tool["function"]["strict"] is False
    assert all("additionalProperties" not in o for o in _objects(tool["function"]["parameters"]))


def test_strict_json_schema_closes_every_object(make_llm, relay) -> None:
    relay.queue(completion('{"name": "Ada", "address": {"city": "London"}}'))
    llm = make_llm().with_structured_output(Person, method="json_schema", strict=True)
    assert llm.invoke("who?") == Person(name="Ada", address=Address(city="London"))
    spec = relay.last["response_format"]["json_schema"]
    assert spec["strict"] is True
    objects = _objects(spec["schema"])
    assert len(objects) == 2
    assert all(o["additionalProperties"] is False for o in objects)


def test_a_class_as_response_format_is_sent_as_its_json_schema(make_llm, relay) -> None:
    relay.queue(completion('{"name": "Ada", "address": {"city": "London"}}'))
    make_llm().invoke("who?", response_format=Person)
    assert relay.last["response_format"]["type"] == "json_schema"
    assert relay.last["response_format"]["json_schema"]["name"] == "Person"


def test_an_unsendable_parameter_is_refused_before_planning_or_sending(
    make_llm, relay, monkeypatch
) -> None:
    planner = CachePlanner(store=MemoryStore())
    plans: list[Any] = []
    real_plan = planner.plan
    monkeypatch.setattr(planner, "plan", lambda *a, **k: plans.append(a) or real_plan(*a, **k))
    llm = make_llm(cache=planner)
    with pytest.raises(RequestValidationError, match="seed=nan cannot be sent"):
        llm.invoke([("system", "x " * 3000), ("human", "hi")], seed=float("nan"))
    with pytest.raises(RequestValidationError, match=r"tags_seen=.*cannot be sent"):
        llm.invoke("hi", tags_seen={1, 2})
    assert relay.requests == []
    assert plans == []
    llm.invoke("hi", seed=1)
    assert len(plans) == 1


@pytest.mark.parametrize(
    ("api", "model", "warned"),
    [
        ("anthropic", "anthropic/claude-sonnet-5-5", True),
        ("anthropic", "us.anthropic.claude-sonnet-5-5-v1:0", True),
        ("anthropic", "claude-sonnet-5-5", False),
        ("bedrock", "claude-sonnet-5-5", True),
        ("bedrock", "us.anthropic.claude-sonnet-5-5-v1:0", False),
        ("bedrock", "arn:aws:bedrock:us-east-1:1:inference-profile/x", False),
        ("bedrock", "bedrock/us.anthropic.claude-sonnet-5-5-v1:0", True),  # LiteLLM's route
        ("anthropic", "bedrock/anthropic.claude-sonnet-5-5-v1:0", True),
        ("vertex", "anthropic/claude-sonnet-5-5", True),
        ("vertex", "claude-sonnet-5-5@20260922", False),
    ],
)
def test_a_model_id_spelled_for_another_way_in_is_warned(
    api: str, model: str, warned: bool
) -> None:
    settings = {
        "api": api,
        "model": model,
        "api_key": "sk-test-peer-0123456789",
        "aws_region": "us-east-1",
        "vertex_project": "p",
        "vertex_region": "us-east5",
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ChatClaudeRelay(**settings)
    assert any(f"is not how api={api!r} names models" in str(w.message) for w in caught) is warned


def test_a_planner_store_that_is_not_a_store_is_refused() -> None:
    with pytest.raises(TypeError, match=r"store must be a state store .* got str"):
        CachePlanner("disk")  # type: ignore[arg-type]


def test_a_test_key_too_short_to_be_real_leaves_error_messages_readable(make_llm, relay) -> None:
    relay.queue(httpx2.Response(401, json={"error": {"message": "Unknown key"}}))
    with pytest.raises(AuthenticationError) as info:
        make_llm(api_key="k", max_retries=0).invoke("hi")
    assert "Unknown key" in str(info.value)
    assert "***" not in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [{"X-Api-Key": "supersecret\nvalue"}, {"X-Team": "caf\u00e9"}],
    ids=["newline in a credential", "non-ASCII"],
)
def test_a_header_value_http_cannot_carry_is_refused_without_showing_it(
    headers: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError, match="has a value HTTP headers cannot carry") as info:
        ChatClaudeRelay(**BASE, default_headers=headers)
    assert "supersecret" not in str(info.value)


def test_a_peers_client_setting_is_ignored_with_a_warning(make_llm, relay) -> None:
    with pytest.warns(UserWarning, match="openai_proxy, use_responses_api: settings of"):
        llm = make_llm(openai_proxy="http://proxy:3128", use_responses_api=False)
    llm.invoke("hi")
    assert "openai_proxy" not in relay.last
    assert "use_responses_api" not in relay.last


def test_an_openai_request_parameter_is_never_taken_for_a_misspelled_setting(
    make_llm, relay
) -> None:
    with pytest.warns(UserWarning, match="prompt_cache_key is not a setting"):
        llm = make_llm(prompt_cache_key="tenant-7")  # close to prompt_cache, but OpenAI's
    llm.invoke("hi")
    assert relay.last["prompt_cache_key"] == "tenant-7"


def test_token_usage_and_finish_reason_are_where_chat_openai_code_reads_them(
    make_llm, relay
) -> None:
    # Code swapped in from ChatOpenAI reads response_metadata["token_usage"], llm_output's
    # token_usage (callbacks' on_llm_end, generate()) and generation_info["finish_reason"]:
    # each was missing (a KeyError, or None).
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import HumanMessage

    class Ends(BaseCallbackHandler):
        def __init__(self) -> None:
            self.results: list[Any] = []

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            self.results.append(response)

    ends = Ends()
    llm = make_llm()
    message = llm.invoke("hi", config={"callbacks": [ends]})
    assert message.response_metadata["token_usage"]["completion_tokens"] == 1
    (result,) = ends.results
    assert result.llm_output["token_usage"]["prompt_tokens"] == 10
    assert result.generations[0][0].generation_info["finish_reason"] == "stop"
    both = llm.generate([[HumanMessage("a")], [HumanMessage("b")]])
    assert both.llm_output["token_usage"]["prompt_tokens"] == 20
    assert both.llm_output["token_usage"]["completion_tokens"] == 2


def test_chat_openais_base_url_variable_is_read_too(monkeypatch) -> None:
    # ChatOpenAI reads OPENAI_API_BASE (its openai_api_base); a setup that exports only that
    # was refused with "no relay base URL".
    monkeypatch.setenv("OPENAI_API_BASE", "https://legacy.example.com/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-peer-0123456789")
    assert ChatClaudeRelay().base_url == "https://legacy.example.com/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "https://relay.example.com/v1")
    assert ChatClaudeRelay().base_url == "https://relay.example.com/v1"


def test_generate_sums_usage_whatever_shape_each_call_reported(make_llm) -> None:
    # a relay that once gave a bare number where a details object belongs: the details stay
    llm = make_llm()
    combined = llm._combine_llm_outputs(
        [
            {"token_usage": {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 3}}},
            None,
            {"token_usage": {"prompt_tokens": 7, "prompt_tokens_details": 5}},
            {"token_usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}}},
        ]
    )
    usage = combined["token_usage"]
    assert usage["prompt_tokens"] == 13
    assert usage["prompt_tokens_details"] == {"cached_tokens": 4}
