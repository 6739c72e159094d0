"""Checks of a user's settings, before anything is sent: what is wrong and how to fix it.

Pure functions (no I/O, no environment reads): each raises ``RequestValidationError`` with a
message that names the setting, says what Claude accepts and how to fix it, and never repeats
a secret. The ranges are data (``SAMPLING_RANGES``), shared with the emulator, which refuses the
same values with Claude's own 400 (``emulator.engine.check_sampling_payload``).

>>> check_sampling(temperature=0.2, max_tokens=1024)
>>> check_sampling(temperature=5)
Traceback (most recent call last):
...
langchain_claude_relay.errors.RequestValidationError: temperature=5 is out of range: Claude accepts 0 to 1 (0: the most predictable answers, 1: the most varied). Pass a value from 0 to 1, or leave temperature unset.
"""  # noqa: E501

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.request import claude_tool_choice

__all__ = [
    "SAMPLING_RANGES",
    "MIN_TOP_K",
    "check_sampling",
    "check_api_key",
    "check_between_tools_effort",
    "refused_between_tools_effort",
    "PEER_ARGUMENTS",
    "PEER_CLIENT_SETTINGS",
    "PEER_REQUEST_PARAMETERS",
    "route_arguments",
    "check_sendable",
    "THINKING_ANSWER_TOKENS",
    "thinking_on",
    "forces_tool",
    "check_model_sampling",
    "refused_sampling",
    "check_forced_tool",
    "check_prefill",
    "check_thinking_sampling",
    "check_thinking_type",
    "check_thinking_with_tool_choice",
    "fit_thinking_budget",
    "zero_output_refusal",
]

SAMPLING_RANGES: dict[str, tuple[float, float]] = {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0)}
"""Inclusive ranges Claude accepts (Messages API reference, read 2026-12: temperature and
top_p from 0.0 to 1.0; values outside are a 400 ``invalid_request_error``)."""
MIN_TOP_K = 0
"""``top_k`` is a whole number >= 0."""

_SAMPLING_MEANING = {
    "temperature": "0: the most predictable answers, 1: the most varied",
    "top_p": "the share of probability mass sampled from",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any, limit: int = 80) -> str:
    """A value as an error message shows it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_sampling(
    *,
    temperature: Any = None,
    max_tokens: Any = None,
    top_p: Any = None,
    top_k: Any = None,
    allow_zero_max_tokens: bool = False,
) -> None:
    """Refuse sampling settings Claude would refuse; ``None`` means unset and is fine.

    Args:
        temperature: 0 to 1.
        max_tokens: a whole number >= 1 (>= 0 with ``allow_zero_max_tokens``).
        top_p: 0 to 1.
        top_k: a whole number >= 0.
        allow_zero_max_tokens: accept ``max_tokens=0`` (the native APIs' cache warm-up,
            which writes no output; relays refuse it).

    Raises:
        RequestValidationError: naming the first bad setting, what Claude accepts and the fix.

    >>> check_sampling(max_tokens=0, allow_zero_max_tokens=True)
    >>> check_sampling(max_tokens=-5)
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: max_tokens=-5 is invalid: it caps the tokens Claude writes, a whole number of at least 1. Pass e.g. max_tokens=1024, or leave it unset for the default.
    """  # noqa: E501
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is None:
            continue
        low, high = SAMPLING_RANGES[name]
        if not _is_number(value):
            msg = (
                f"{name}={value!r} is not a number: Claude accepts {low:g} to {high:g} "
                f"({_SAMPLING_MEANING[name]}). Pass a number, e.g. {name}=0.5."
            )
            raise RequestValidationError(msg)
        if not (math.isfinite(value) and low <= value <= high):
            msg = (
                f"{name}={value!r} is out of range: Claude accepts {low:g} to {high:g} "
                f"({_SAMPLING_MEANING[name]}). Pass a value from {low:g} to {high:g}, or leave "
                f"{name} unset."
            )
            raise RequestValidationError(msg)
    if max_tokens is not None:
        least = 0 if allow_zero_max_tokens else 1
        if not _is_whole(max_tokens) or max_tokens < least:
            msg = (
                f"max_tokens={max_tokens!r} is invalid: it caps the tokens Claude writes, a "
                f"whole number of at least {least}. Pass e.g. max_tokens=1024, or leave it "
                "unset for the default."
            )
            raise RequestValidationError(msg)
    if top_k is not None and (not _is_whole(top_k) or top_k < MIN_TOP_K):
        msg = (
            f"top_k={top_k!r} is invalid: it samples from the K most likely tokens, a whole "
            f"number of at least {MIN_TOP_K}. Pass e.g. top_k=40, or leave it unset."
        )
        raise RequestValidationError(msg)


def check_api_key(
    value: SecretStr | str | None,
    *,
    source: str = "api_key",
    env_names: Sequence[str] = ("CLAUDE_RELAY_API_KEY", "OPENAI_API_KEY"),
    owner: str = "relay",
) -> None:
    """Refuse a missing, empty, blank or unsendable API key; the message never shows the key.

    A key must be sendable as an HTTP header: no leading or trailing whitespace (a newline
    read from a file is the usual culprit), only printable ASCII.

    Args:
        value: the key as configured (``None``: none found).
        source: where it came from, for the message (``"api_key"`` or an environment variable).
        env_names: the environment variables read for a key, in order.
        owner: whose key it is (``"relay"``, ``"Anthropic"``).

    Raises:
        RequestValidationError: what is wrong with the key and how to fix it.

    >>> check_api_key("sk-relay-123")
    >>> check_api_key("   ")
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: api_key is blank (only whitespace): pass your relay API key, api_key="sk-...", or set CLAUDE_RELAY_API_KEY (or OPENAI_API_KEY).
    """  # noqa: E501
    where = " (or ".join(env_names) + ")" * (len(env_names) - 1) if env_names else ""
    fix = f'pass your {owner} API key, api_key="sk-..."' + (f", or set {where}" if where else "")
    if value is None:
        msg = f"no {owner} API key: {fix}."
        raise RequestValidationError(msg)
    key = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(key, str):
        msg = f"{source} must be a string, not {type(key).__name__}: {fix}."
        raise RequestValidationError(msg)
    if not key:
        msg = f"{source} is empty: {fix}."
        raise RequestValidationError(msg)
    if not key.strip():
        msg = f"{source} is blank (only whitespace): {fix}."
        raise RequestValidationError(msg)
    if key != key.strip():
        msg = (
            f"{source} has leading or trailing whitespace (often a newline read from a file), "
            "which cannot be sent in an HTTP header: strip it, e.g. api_key=key.strip()."
        )
        raise RequestValidationError(msg)
    if not all(" " <= ch <= "~" for ch in key):
        msg = (
            f"{source} contains characters that cannot be sent in an HTTP header (control or "
            f"non-ASCII characters, e.g. a smart quote from a copy-paste): copy the {owner} "
            "API key again as plain text."
        )
        raise RequestValidationError(msg)


PEER_ARGUMENTS: dict[str, str] = {
    "openai_api_key": "api_key",
    "openai_api_base": "base_url",
    "request_timeout": "timeout",
    "max_completion_tokens": "max_tokens",
    "anthropic_api_key": "api_key",
    "anthropic_api_url": "base_url",
    "max_tokens_to_sample": "max_tokens",
}
"""Constructor arguments of ``ChatOpenAI`` and ``ChatAnthropic`` and the setting each means
here: a one-line swap keeps working."""

PEER_CLIENT_SETTINGS = frozenset(
    {
        "openai_organization",
        "organization",
        "openai_proxy",
        "tiktoken_model_name",
        "include_response_headers",
        "disabled_params",
        "default_query",
        "http_socket_options",
        "stream_chunk_timeout",
        "use_responses_api",
        "use_previous_response_id",
        "include",
        "truncation",
        "context_management",
        "client",
        "async_client",
        "root_client",
        "root_async_client",
        "anthropic_proxy",
    }
)
"""``ChatOpenAI``'s and ``ChatAnthropic``'s settings of their own clients (and of OpenAI's
Responses API), with no meaning for a relay's chat request: dropped with a warning (sent in the
body, a relay would refuse them)."""

PEER_REQUEST_PARAMETERS = frozenset(
    {
        "seed",
        "user",
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "service_tier",
        "reasoning_effort",
        "prompt_cache_key",
        "safety_identifier",
        "store",
        "verbosity",
        "parallel_tool_calls",
    }
)
"""OpenAI request parameters: never taken for a misspelled setting (``prompt_cache_key`` is
close to ``prompt_cache``); like any other argument that is not a setting, sent in the body."""


def _close_setting(name: str, settings: Collection[str]) -> str | None:
    """The setting ``name`` most likely misspells, if any: a near spelling or a word of one."""
    close = difflib.get_close_matches(name, sorted(settings), n=1, cutoff=0.8)
    if close:
        return close[0]
    if len(name) >= 3:
        for setting in sorted(settings):
            if name in setting.split("_"):
                return setting
    return None


def route_arguments(
    values: Mapping[str, Any], settings: Collection[str], *, owner: str = "ChatClaudeRelay"
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Sort a constructor's arguments: settings, peers' names for them, and request parameters.

    - A setting (by name or alias) stays as given.
    - A peer's name for a setting (``PEER_ARGUMENTS``, e.g. ``openai_api_key``) becomes it.
    - A peer's setting of its own client (``PEER_CLIENT_SETTINGS``, e.g. ``openai_proxy``) is
      dropped; the caller warns with the names returned.
    - A near miss of a setting (``keepwarm``, ``ttl``) is refused with the setting it likely
      means: it would otherwise be sent to the relay and the setting silently not applied.
    - Anything else is a request parameter (``seed=1``): it moves into ``model_kwargs``, which
      is sent in every request body, as ``ChatOpenAI`` does; the caller warns with the names
      returned.

    Returns:
        The arguments to validate, the names moved into ``model_kwargs``, and those dropped.

    Raises:
        RequestValidationError: a near miss, or one setting or parameter given twice.

    >>> settings = {"api_key", "keep_warm", "model_kwargs", "max_tokens"}
    >>> route_arguments({"openai_api_key": "k", "seed": 1, "openai_proxy": "p"}, settings)
    ({'api_key': 'k', 'model_kwargs': {'seed': 1}}, ['seed'], ['openai_proxy'])
    >>> route_arguments({"keepwarm": "auto"}, settings)
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: ChatClaudeRelay has no setting 'keepwarm': did you mean keep_warm=...?
    """  # noqa: E501
    routed: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in values.items():
        target = name if name in settings else PEER_ARGUMENTS.get(name)
        if target is not None:
            if target in routed or (target != name and target in values):
                msg = f"{name}= and {target}= mean the same setting: pass {target}= only"
                raise RequestValidationError(msg)
            routed[target] = value
        elif name in PEER_CLIENT_SETTINGS:
            dropped.append(name)
        elif name not in PEER_REQUEST_PARAMETERS and (near := _close_setting(name, settings)):
            msg = f"{owner} has no setting {name!r}: did you mean {near}=...?"
            raise RequestValidationError(msg)
        else:
            moved[name] = value
    given = routed.get("model_kwargs")
    if isinstance(given, Mapping):
        clash = sorted(set(moved) & set(given))
        if clash:
            msg = f"{', '.join(clash)} given both as arguments and in model_kwargs: pass one"
            raise RequestValidationError(msg)
    if moved:
        routed["model_kwargs"] = {**(given if isinstance(given, Mapping) else {}), **moved}
    return routed, sorted(moved), dropped


def check_sendable(params: Mapping[str, Any]) -> None:
    """Refuse request parameters that cannot be sent as JSON, naming the first such parameter.

    Raises:
        RequestValidationError: e.g. an object, a set, or ``NaN`` given as a parameter.

    >>> check_sendable({"seed": 1, "metadata": {"user_id": "u1"}})
    >>> check_sendable({"seed": float("nan")})
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: seed=nan cannot be sent: request parameters are JSON (numbers, strings, booleans, null, lists, dicts with string keys; no NaN or infinity). Pass a JSON value.
    """  # noqa: E501
    for name, value in params.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            msg = (
                f"{name}={_shown(value)} cannot be sent: request parameters are JSON (numbers, "
                "strings, booleans, null, lists, dicts with string keys; no NaN or infinity). "
                "Pass a JSON value."
            )
            raise RequestValidationError(msg) from None


THINKING_ANSWER_TOKENS = 4096
"""Output tokens left for the answer when a thinking budget is given and ``max_tokens`` is not:
``max_tokens`` becomes the budget plus this (the Messages API's default ``max_tokens`` is 4,096
in this package, below many budgets)."""


def thinking_on(thinking: Any) -> bool:
    """Whether extended thinking is on (``adaptive`` or ``enabled``; ``disabled`` is off)."""
    return isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled")


def forces_tool(tool_choice: Any) -> bool:
    """Whether ``tool_choice`` forces a tool call (any tool, or a named one), in any spelling.

    >>> [forces_tool(c) for c in (None, "auto", "none", "any", "required", True, "search")]
    [False, False, False, True, True, True, True]
    >>> forces_tool({"type": "auto"}), forces_tool({"type": "tool", "name": "search"})
    (False, True)
    """
    if tool_choice is None or tool_choice is False or tool_choice in ("auto", "none"):
        return False
    if isinstance(tool_choice, Mapping):
        return tool_choice.get("type") not in ("auto", "none")
    return True


def check_thinking_with_tool_choice(thinking: Any, tool_choice: Any) -> None:
    """Refuse extended thinking with a forced tool choice: Claude answers 400 to it.

    Tool use with thinking takes only ``tool_choice`` "auto" (the default) or "none"
    (Anthropic, extended thinking: "Tool use with thinking", read 2026-12).

    Raises:
        RequestValidationError: if thinking is on and ``tool_choice`` forces a tool.
    """
    if thinking_on(thinking) and forces_tool(tool_choice):
        msg = (
            f"tool_choice={_shown(tool_choice)} forces a tool call, which Claude refuses while "
            "extended thinking is on. Use tool_choice='auto' (or leave it unset), or turn "
            "thinking off for this call (thinking={'type': 'disabled'}); with_structured_output "
            "on a thinking model binds its schema without forcing it."
        )
        raise RequestValidationError(msg)


THINKING_TOP_P_FLOOR = 0.95
"""The lowest ``top_p`` Claude takes while thinking (Anthropic, extended thinking: "Feature
compatibility", read 2026-12)."""


def check_thinking_sampling(params: Mapping[str, Any]) -> None:
    """Refuse sampling settings Claude refuses while thinking (a 400 after sending otherwise).

    With thinking on (``enabled`` or ``adaptive``) Claude takes ``temperature`` 1 only ("may
    only be set to 1 when thinking is enabled or in adaptive mode"), no ``top_k``, and
    ``top_p`` from 0.95 to 1 (Anthropic, extended thinking: "Feature compatibility", read
    2026-12).

    Raises:
        RequestValidationError: naming the setting and the two ways out.

    >>> check_thinking_sampling({"thinking": {"type": "adaptive"}, "temperature": 1})
    >>> check_thinking_sampling({"thinking": {"type": "adaptive"}, "temperature": 0.2})
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: temperature=0.2 cannot be sent with extended thinking on: Claude takes temperature 1 only while thinking. Leave temperature unset (or 1), or turn thinking off for this call (thinking={'type': 'disabled'}).
    """  # noqa: E501
    if not thinking_on(params.get("thinking")):
        return
    temperature, top_p = params.get("temperature"), params.get("top_p")
    problem = None
    if temperature is not None and temperature != 1:
        problem = f"temperature={_shown(temperature)}", "temperature 1 only", "temperature"
    elif params.get("top_k") is not None:
        problem = f"top_k={_shown(params['top_k'])}", "no top_k", "top_k"
    elif top_p is not None and _is_number(top_p) and top_p < THINKING_TOP_P_FLOOR:
        floor = f"{THINKING_TOP_P_FLOOR:g}"
        problem = f"top_p={_shown(top_p)}", f"top_p from {floor} to 1 only", "top_p"
    if problem is not None:
        setting, takes, name = problem
        unset = f"{name} unset (or 1)" if name == "temperature" else f"{name} unset"
        msg = (
            f"{setting} cannot be sent with extended thinking on: Claude takes {takes} while "
            f"thinking. Leave {unset}, or turn thinking off for this call "
            "(thinking={'type': 'disabled'})."
        )
        raise RequestValidationError(msg)


def check_thinking_type(thinking: Any, model: str, types: Collection[str]) -> None:
    """Refuse a ``thinking.type`` the model does not take (``types``; empty: not known).

    Claude 4.7 and later answer 400 to ``enabled`` (a ``budget_tokens``); 4.5 and earlier
    know no ``adaptive``; Fable 5 and Mythos 5 always think (the model table's
    ``thinking_types``, with its sources).

    Raises:
        RequestValidationError: naming the model, what it takes, and what to send instead.

    >>> check_thinking_type({"type": "adaptive"}, "claude-sonnet-5-5", ("adaptive", "disabled"))
    >>> check_thinking_type({"type": "enabled", "budget_tokens": 2048}, "claude-sonnet-5-5",
    ...                     ("adaptive", "disabled"))
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: thinking type 'enabled' is refused by claude-sonnet-5-5 (a 400), which takes 'adaptive' or 'disabled': send thinking={'type': 'adaptive'} (Claude chooses how much to think; output_config={'effort': ...} steers it).
    """  # noqa: E501
    if not types or not isinstance(thinking, Mapping):
        return
    kind = thinking.get("type")
    if kind is None or kind in types:
        return
    taken = " or ".join(repr(t) for t in types)
    if "adaptive" in types:
        fix = (
            "send thinking={'type': 'adaptive'} (Claude chooses how much to think; "
            "output_config={'effort': ...} steers it)"
        )
        if kind == "disabled":
            fix = "leave thinking unset (this model always thinks)"
            if "between_tools" in types:
                fix = (
                    "send thinking={'type': 'between_tools'} to skip thinking before the "
                    "answer (at effort high or below), or leave thinking unset"
                )
    else:
        fix = "send thinking={'type': 'enabled', 'budget_tokens': N} (N >= 1024)"
    msg = f"thinking type {kind!r} is refused by {model} (a 400), which takes {taken}: {fix}."
    raise RequestValidationError(msg)


BETWEEN_TOOLS_EFFORTS = ("low", "medium", "high")
"""The efforts ``thinking={"type": "between_tools"}`` takes: "At ``xhigh`` or ``max`` effort, a
request with ``between_tools`` returns a 400 error" (Anthropic's "What's new in Claude Sonnet
5.5", the model table's source ``whats-new-5-5-2026-12``)."""


def refused_between_tools_effort(params: Mapping[str, Any]) -> Any:
    """The effort ``between_tools`` thinking is refused at in these settings, else ``None``.

    The effort is ``output_config.effort`` (the Messages API) or ``reasoning_effort`` (what
    relays and the package's Messages wire read as it). The client's rule and the emulator's.

    >>> refused_between_tools_effort({"thinking": {"type": "between_tools"},
    ...                               "reasoning_effort": "max"})
    'max'
    """
    thinking = params.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") != "between_tools":
        return None
    config = params.get("output_config")
    effort = config.get("effort") if isinstance(config, Mapping) else None
    effort = effort if effort is not None else params.get("reasoning_effort")
    return effort if effort is not None and effort not in BETWEEN_TOOLS_EFFORTS else None


def check_between_tools_effort(params: Mapping[str, Any]) -> None:
    """Refuse ``between_tools`` thinking at an effort above ``high`` (a 400).

    Raises:
        RequestValidationError: naming the effort and what to do instead.
    """
    effort = refused_between_tools_effort(params)
    if effort is not None:
        msg = (
            f"thinking={{'type': 'between_tools'}} is refused at effort {_shown(effort)} (a 400): "
            f"it takes {', '.join(BETWEEN_TOOLS_EFFORTS)}. Lower the effort, or use "
            "thinking={'type': 'adaptive'}."
        )
        raise RequestValidationError(msg)


_SAMPLING_NAMES = ("temperature", "top_p", "top_k")


SAMPLING_DEFAULTS = {"temperature": 1, "top_p": 1}
"""Claude's own values: sending one changes nothing (Anthropic's migration guide refuses "any
non-default value" on Claude 4.7 and later; ``top_k`` has none)."""


def refused_sampling(params: Mapping[str, Any], rule: str) -> tuple[str, ...]:
    """The sampling settings in ``params`` a model with this ``sampling`` rule refuses.

    ``"none"`` (Claude 4.7 and later): each of ``temperature``, ``top_p``, ``top_k`` set to
    anything but Claude's default; ``"temperature_or_top_p"`` (Opus 4.1 to the 4.6 models):
    ``temperature`` and ``top_p`` together. The emulator refuses by the same rule.

    >>> refused_sampling({"temperature": 0, "top_p": 1, "top_k": 5}, "none")
    ('temperature', 'top_k')
    >>> refused_sampling({"temperature": 0.2, "top_p": 0.9}, "temperature_or_top_p")
    ('temperature', 'top_p')
    """
    given = [name for name in _SAMPLING_NAMES if params.get(name) is not None]
    if rule == "none":
        return tuple(name for name in given if params[name] != SAMPLING_DEFAULTS.get(name))
    if rule == "temperature_or_top_p" and {"temperature", "top_p"} <= set(given):
        return ("temperature", "top_p")
    return ()


def check_model_sampling(params: Mapping[str, Any], model: str, rule: str) -> None:
    """Refuse sampling settings the model refuses (``refused_sampling``).

    ``"none"``: Claude 4.7 and later answer 400 to a ``temperature``, ``top_p`` or ``top_k``
    ("`temperature` is deprecated for this model"); ``"temperature_or_top_p"``: Opus 4.1 to
    the 4.6 models refuse the two together ("cannot both be specified for this model").

    Raises:
        RequestValidationError: naming the settings, the model and the fix.

    >>> check_model_sampling({"temperature": 0}, "claude-sonnet-4-6", "temperature_or_top_p")
    >>> check_model_sampling({"temperature": 0}, "claude-sonnet-5-5", "none")
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: temperature=0 cannot be sent to claude-sonnet-5-5: Claude 4.7 and later take no temperature, top_p or top_k but Claude's own (a 400, 'deprecated for this model'). Leave it unset (steer the answer with the prompt, or with output_config={'effort': ...}), or choose a model that takes it.
    """  # noqa: E501
    given = refused_sampling(params, rule)
    if rule == "none" and given:
        settings = ", ".join(f"{name}={_shown(params[name])}" for name in given)
        msg = (
            f"{settings} cannot be sent to {model}: Claude 4.7 and later take no temperature, "
            "top_p or top_k but Claude's own (a 400, 'deprecated for this model'). Leave "
            f"{'it' if len(given) == 1 else 'them'} unset (steer the answer with the prompt, or "
            "with output_config={'effort': ...}), or choose a model that takes "
            f"{'it' if len(given) == 1 else 'them'}."
        )
        raise RequestValidationError(msg)
    if rule == "temperature_or_top_p" and given:
        msg = (
            f"temperature={_shown(params['temperature'])} and top_p={_shown(params['top_p'])} "
            f"cannot both be sent to {model} (a 400: 'cannot both be specified for this "
            "model'). Keep one of them."
        )
        raise RequestValidationError(msg)


def check_prefill(ends_with_assistant: bool, model: str, takes_prefill: bool | None) -> None:
    """Refuse a request ending with an assistant turn (a prefill) where Claude refuses it.

    Claude 4.6 and later answer 400 to a prefilled assistant turn (Anthropic's migration
    guide; the model table's ``prefill``).

    Raises:
        RequestValidationError: naming the model and what to do instead.
    """
    if ends_with_assistant and takes_prefill is False:
        msg = (
            f"the last message is an assistant turn (a prefill), which {model} refuses (a 400 "
            "on Claude 4.6 and later). End with a user turn; to shape the answer, say so in the "
            "system prompt or use with_structured_output."
        )
        raise RequestValidationError(msg)


FORCED_TOOL_FIX = (
    "Use tool_choice='auto' (or leave it unset) and say in the prompt when the tool applies; "
    "for schema-valid JSON, use with_structured_output(schema, method='json_schema')"
)
"""What to do instead of forcing a tool where Claude refuses it (Anthropic's migration guides
for Opus 5.5 and Sonnet 5.5: auto tool choice with strict tools, or structured outputs)."""


def check_forced_tool(tool_choice: Any, model: str, takes_forced_tool: bool | None) -> None:
    """Refuse a ``tool_choice`` that forces a tool where the model refuses it (a 400).

    Claude Opus 5.5, Sonnet 5.5 and Fable 5.1 take only ``auto`` and ``none``: ``any``
    (OpenAI's ``required``) and a named tool are a 400 (the model table's
    ``forced_tool_choice``, with its source).

    Raises:
        RequestValidationError: naming the model and what to do instead.

    >>> check_forced_tool("auto", "claude-sonnet-5-5", False)
    >>> check_forced_tool("required", "claude-sonnet-5-5", False)
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.RequestValidationError: tool_choice='required' forces a tool call, which claude-sonnet-5-5 refuses (a 400: "tool_choice: type "tool" and "any" are not supported for this model."). Use tool_choice='auto' (or leave it unset) and say in the prompt when the tool applies; for schema-valid JSON, use with_structured_output(schema, method='json_schema').
    """  # noqa: E501
    if takes_forced_tool is not False:
        return
    try:
        choice = claude_tool_choice(tool_choice)  # the one reading of a tool choice
    except ValueError:
        return  # not understood: the tool-choice check says so, with the spellings it takes
    if choice is not None and choice["type"] in ("any", "tool"):
        msg = (
            f"tool_choice={_shown(tool_choice)} forces a tool call, which {model} refuses (a 400: "
            '"tool_choice: type "tool" and "any" are not supported for this model."). '
            f"{FORCED_TOOL_FIX}."
        )
        raise RequestValidationError(msg)


def fit_thinking_budget(params: dict[str, Any], *, interleaved: bool = False) -> None:
    """Make room for a thinking budget: Claude needs ``max_tokens`` above ``budget_tokens``.

    Without ``max_tokens`` (or ``max_completion_tokens``), sets ``max_tokens`` to the budget
    plus ``THINKING_ANSWER_TOKENS``; a given one at or below the budget is refused, except with
    ``interleaved`` thinking (the ``interleaved-thinking-2025-05-14`` beta), whose budget spans
    every thinking block of the turn and may exceed ``max_tokens`` (Anthropic, extended
    thinking: "Interleaved thinking", read 2026-12).

    Raises:
        RequestValidationError: if the given ``max_tokens`` is not above the budget.

    >>> params = {"thinking": {"type": "enabled", "budget_tokens": 8000}}
    >>> fit_thinking_budget(params); params["max_tokens"]
    12096
    """
    thinking = params.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        return  # ``check_thinking`` refuses it
    name = "max_completion_tokens" if params.get("max_tokens") is None else "max_tokens"
    limit = params.get(name)
    if limit is None:
        params["max_tokens"] = budget + THINKING_ANSWER_TOKENS
    elif _is_whole(limit) and limit <= budget and not interleaved:
        msg = (
            f"{name}={limit} leaves no room for the answer: with thinking budget_tokens={budget} "
            f"Claude needs {name} above the budget. Raise {name} (e.g. to "
            f"{budget + THINKING_ANSWER_TOKENS}), lower budget_tokens, or leave {name} unset."
        )
        raise RequestValidationError(msg)


def zero_output_refusal(
    *, thinking: Any, tool_choice: Any, params: Mapping[str, Any], marked: bool
) -> str | None:
    """Why Claude would refuse ``max_tokens: 0`` (the native cache warm-up) here, or ``None``.

    It needs a ``cache_control`` breakpoint and is refused with extended thinking, structured
    outputs or a forced tool choice (see the project's platform notes).

    Args:
        thinking: the request's thinking settings.
        tool_choice: the request's tool choice.
        params: the request parameters (``response_format`` or ``output_config.format``).
        marked: whether the request carries a breakpoint (a block marker or a top-level one).
    """
    output_config = params.get("output_config")
    if thinking_on(thinking):
        return "extended thinking is on"
    if params.get("response_format") is not None or (
        isinstance(output_config, Mapping) and output_config.get("format") is not None
    ):
        return "structured output is requested"
    if forces_tool(tool_choice):
        return "tool_choice forces a tool call"
    if not marked:
        return "the request carries no cache_control breakpoint"
    return None
