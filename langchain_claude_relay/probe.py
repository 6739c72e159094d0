"""The relay capability probe: what a relay keeps of Claude's cache markers, and what to do.

Relays differ in what they pass on: some drop ``cache_control``, some drop its ``ttl`` (a 1h
write silently becomes a 5m one), some add markers of their own (pushing a request over Claude's
4). ``probe_relay`` tells, with a few small requests, as ``capabilities.RelayCapabilities``
(``capabilities`` also keeps them per relay and turns them into what the planner should do).

The probe's requests (``max_tokens=1`` but step 7's, caching ``"off"`` so exactly these markers
are sent). Each long text starts with a fresh random nonce, so nothing is cached before; "long"
is 1.5x the model's minimum cacheable prefix, in plain words (each at least one token):

1. **injected markers**: a long unmarked system block, sent twice. A cache write or read means
   the relay marks requests by itself.
2. **block markers**: a long system block marked ``{"type": "ephemeral"}`` with one question,
   then the same block with another question. A read on the second call means the marker was
   kept (the system entry is the only one the second call can reach: a marker a relay adds on
   the last user turn caches that turn, which the second call does not share). A write on the
   first call also counts when step 1 saw no injected marker (relays that report writes but not
   reads).
3. **TTL**: a new long system block marked ``{"type": "ephemeral", "ttl": "1h"}``. With the
   5m/1h split reported: a 1h write means the ``ttl`` was kept, a 5m write only that it was
   dropped. No split (or no write): unknown. A 400 about the 1h marker coming after a 5m one
   means the relay put a 5m marker of its own in front.
4. **tool markers**: a tool whose description is long, marked, nothing else marked; then the
   same tool with another question. Read as in step 2.
5. **four markers**: three short marked system blocks and a long marked fourth (markers on
   short prefixes are legal). A 400 about too many markers means the relay added one.
6. **automatic caching**: a new long unmarked system block with a top-level
   ``cache_control`` (Claude marks the last block itself), sent twice. A write on the first or
   a read on the second call means the field reached Claude; a 400 means the relay refuses it.
   Unknown when step 1 saw injected markers (they would cache the same request).
7. **structured outputs** (only with a model whose profile lists them: another would refuse
   it whatever the relay): a short question with a ``response_format`` JSON schema (a
   ``{"word": ...}`` object; up to 24 output tokens). A JSON object of that shape back means
   the relay forwards it to Claude's structured outputs; anything else (free text, fenced or
   cut-off JSON, a tool call) or a 400/422 naming the feature means it does not, and
   ``with_structured_output``'s default keeps its tool there.

Every answer also tells whether the relay reports cache *writes*: a write field of any dialect
(a 0 included) means it does; reads with no write field anywhere mean it hides them (OpenAI's own
usage shape: the writes look like plain input, so the chat model infers them from its markers).

Then the relay's ``GET /v1/models``: OpenRouter-style ``pricing`` for Claude models is kept
(``RelayCapabilities.prices``), and ``ChatClaudeRelay`` prices its calls with it.

Verdicts are ``None`` ("cannot tell") when the relay reports no cache usage at all. A call that
fails for any other reason (network, key, another 400) raises its typed error: the probe never
hides a broken setup.

"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_claude_relay import capabilities
from langchain_claude_relay._compat import moved_names
from langchain_claude_relay.capabilities import RelayCapabilities, RelayPrice, relay_prices
from langchain_claude_relay.chat_models import ChatClaudeRelay
from langchain_claude_relay.errors import (
    APIStatusError,
    BadRequestError,
    ClaudeRelayError,
    UnprocessableEntityError,
)
from langchain_claude_relay.models import lookup_model, model_profile, price_table
from langchain_claude_relay.request import MAX_CACHE_MARKERS
from langchain_claude_relay.usage import from_usage_metadata, normalize_usage, reports_cache_writes

__all__ = ["PROBE_LENGTH_FACTOR", "probe_relay", "aprobe_relay", "probe_text_tokens"]

logger = logging.getLogger(__name__)

PROBE_LENGTH_FACTOR = 1.5
"""A probe's long text is this many times the model's minimum cacheable prefix."""

_FILLER = ("river", "stone", "green", "table", "light", "north", "paper", "music", "water", "cloud")
_QUESTIONS = ("Reply with the single word: ok.", "Reply with the single word: yes.")
_MARKER_WORDS = re.compile(r"cache[_ ]control|cache marker|breakpoint", re.I)
_LIMIT_WORDS = re.compile(r"maximum|at most|more than|too many|exceed|limit", re.I)
_TTL_ORDER = re.compile(r"ttl.*(order|after|before)", re.I | re.S)
_FORMAT_WORDS = re.compile(
    r"response_format|json_schema|output_format|output_config|structured|not supported|"
    r"unsupported|unknown|unrecognized|not permitted|extra (inputs|fields)",
    re.I,
)
"""What a refusal of the structured-output step says when it is about that feature."""
_SHAPE = {
    "type": "json_schema",
    "json_schema": {
        "name": "probe_answer",
        "schema": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
            "additionalProperties": False,
        },
    },
}
"""Step 7's ``response_format``: a relay that forwards it gets a JSON object back."""
_SHAPE_MAX_TOKENS = 24
"""Room for ``{"word": "ok"}`` (the other steps ask for one token)."""


# ----------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class _Call:
    """One probe request: messages, tools, and whether a 400 about markers is a finding."""

    messages: tuple[BaseMessage, ...]
    tools: tuple[dict[str, Any], ...] = ()
    may_be_refused: bool = False
    automatic: bool = False  # send a top-level cache_control (automatic caching)
    response_format: Mapping[str, Any] | None = None  # ask for structured output


@dataclass(frozen=True)
class _Answer:
    """What one probe request told: cache tokens by kind, or the 400 that refused it."""

    raw_usage: Mapping[str, Any] | None = None
    read: int = 0
    write: int = 0
    write_1h: int = 0
    split_known: bool = False
    refused: APIStatusError | None = None  # a 400 (or on step 7 a 422)
    text: str = ""

    @property
    def cached(self) -> bool:
        """Whether the call read or wrote any cache."""
        return self.read > 0 or self.write > 0


@dataclass(frozen=True)
class _Findings:
    """The probe's verdicts, before the model id and the time are added."""

    keeps_block_markers: bool | None
    keeps_tool_markers: bool | None
    keeps_ttl: bool | None
    injects_markers: bool | None
    reports_cache_usage: bool
    usage_fields: tuple[str, ...]
    keeps_automatic_caching: bool | None
    reports_cache_writes: bool | None
    keeps_response_format: bool | None


def probe_text_tokens(model: str) -> int:
    """Words in a probe's long text: 1.5x the model's minimum cacheable prefix.

    For a model not in the table the largest known minimum is used, so the probe is conclusive.

    Args:
        model: the model id.

    Returns:
        The number of words (each at least one token).
    """
    spec = lookup_model(model)
    minimum = spec.min_cache_tokens
    if not spec.known:
        minimum = max(s.min_cache_tokens for s in price_table().values())
    return math.ceil(minimum * PROBE_LENGTH_FACTOR)


def _long_text(words: int) -> str:
    filler = " ".join(_FILLER[i % len(_FILLER)] for i in range(words))
    return f"Probe {secrets.token_hex(8)}. {filler}"


def _marker(ttl: str | None = None) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl} if ttl else {"type": "ephemeral"}


def _marked_system(*texts: str, ttl: str | None = None) -> SystemMessage:
    parts: list[str | dict[str, Any]] = [
        {"type": "text", "text": t, "cache_control": _marker(ttl)} for t in texts
    ]
    return SystemMessage(content=parts)


def _marked_tool(description: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "probe_reference",
            "description": description,
            "parameters": {"type": "object", "properties": {}},
        },
        "cache_control": _marker(),
    }


def _probe_steps(words: int, *, shapes: bool = True) -> Generator[_Call, _Answer, _Findings]:
    """The probe as a sans-I/O generator: yields requests, receives answers, returns verdicts."""
    answers: list[_Answer] = []

    def ask(call: _Call) -> Generator[_Call, _Answer, _Answer]:
        answer = yield call
        answers.append(answer)
        return answer

    first, second = (HumanMessage(q) for q in _QUESTIONS)

    unmarked = SystemMessage(_long_text(words))
    u1 = yield from ask(_Call((unmarked, first)))
    u2 = yield from ask(_Call((unmarked, first)))
    injected_seen = u1.cached or u2.cached

    marked = _marked_system(_long_text(words))
    b1 = yield from ask(_Call((marked, first)))
    b2 = yield from ask(_Call((marked, second)))
    block_kept = b2.read > 0 or (b1.write > 0 and not injected_seen)

    ttl_call = _Call((_marked_system(_long_text(words), ttl="1h"), first), may_be_refused=True)
    t = yield from ask(ttl_call)
    if t.refused is not None and not _TTL_ORDER.search(_error_text(t.refused)):
        raise t.refused
    ttl_order_refused = t.refused is not None  # the relay put a 5m marker before our 1h one
    ttl_kept = t.write_1h > 0 if t.split_known and t.write > 0 else None

    tool = _marked_tool(_long_text(words))
    d1 = yield from ask(_Call((first,), tools=(tool,)))
    d2 = yield from ask(_Call((second,), tools=(tool,)))
    tool_kept = d2.read > 0 or (d1.write > 0 and not injected_seen)

    shorts = [f"Probe note {i}." for i in range(1, MAX_CACHE_MARKERS)]
    four = _marked_system(*shorts, _long_text(words))
    f = yield from ask(_Call((four, first), may_be_refused=True))
    if f.refused is not None and not _is_marker_limit(f.refused):
        raise f.refused
    over_limit = f.refused is not None

    automatic = _Call(
        (SystemMessage(_long_text(words)), first), may_be_refused=True, automatic=True
    )
    a1 = yield from ask(automatic)
    a2 = yield from ask(automatic)

    keeps_format = None  # a model without structured outputs would refuse it whatever the relay
    if shapes:
        shaped = yield from ask(_Call((first,), may_be_refused=True, response_format=_SHAPE))
        keeps_format = _shape_verdict(shaped)

    usage_fields = sorted({p for a in answers if a.raw_usage for p in _leaf_paths(a.raw_usage)})
    reports = any("cache" in part for p in usage_fields for part in p.split("."))
    injects: bool | None = None
    if over_limit or ttl_order_refused or (reports and injected_seen):
        injects = True
    elif reports:
        injects = False
    return _Findings(
        keeps_block_markers=block_kept if reports else None,
        keeps_tool_markers=tool_kept if reports else None,
        keeps_ttl=ttl_kept if reports and block_kept else None,
        injects_markers=injects,
        reports_cache_usage=reports,
        usage_fields=tuple(usage_fields),
        keeps_automatic_caching=_automatic_verdict(a1, a2, injected=injected_seen, reports=reports),
        reports_cache_writes=_writes_verdict(answers),
        keeps_response_format=keeps_format,
    )


def _automatic_verdict(
    first: _Answer, second: _Answer, *, injected: bool, reports: bool
) -> bool | None:
    """Step 6: a 400 means refused; otherwise a write or a read means the field reached Claude.

    Unknown when the relay marks requests by itself (its markers would cache the same request)
    or reports no cache usage at all.
    """
    if injected:
        return None
    if first.refused is not None or second.refused is not None:
        return False
    return (second.read > 0 or first.write > 0) if reports else None


def _shape_verdict(answer: _Answer) -> bool:
    """Step 7: the answer is the JSON object ``_SHAPE`` asks for; free text or a 400: dropped."""
    if answer.refused is not None:
        return False
    try:
        value = json.loads(answer.text)
    except ValueError:
        return False
    return isinstance(value, dict) and isinstance(value.get("word"), str)


def _writes_verdict(answers: list[_Answer]) -> bool | None:
    """Whether the relay reports cache writes: a write field seen (a 0 included), or a write.

    ``False`` when calls read from the cache but none carried a write field (the marked first
    calls wrote what the second ones read, so the relay hides writes); ``None`` without a read.
    """
    if any(a.write > 0 or reports_cache_writes(a.raw_usage) for a in answers):
        return True
    return False if any(a.read > 0 for a in answers) else None


def _error_text(exc: APIStatusError) -> str:
    return f"{exc} {exc.body_excerpt}"


def _is_marker_limit(exc: APIStatusError) -> bool:
    text = _error_text(exc)
    return bool(_MARKER_WORDS.search(text) and _LIMIT_WORDS.search(text))


def _leaf_paths(value: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the non-null, non-object values in a usage dict."""
    out: list[str] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping):
            out.extend(_leaf_paths(item, path + "."))
        elif item is not None:
            out.append(path)
    return out


def _answer_from(message: BaseMessage) -> _Answer:
    usage = getattr(message, "usage_metadata", None) or {}
    details: Mapping[str, Any] = usage.get("input_token_details") or {}
    raw = message.response_metadata.get("usage")
    raw_usage = raw if isinstance(raw, Mapping) else None
    return _Answer(
        raw_usage=raw_usage,
        read=int(details.get("cache_read") or 0),
        write=from_usage_metadata(usage).cache_write_tokens,
        write_1h=int(details.get("ephemeral_1h_input_tokens") or 0),
        split_known=normalize_usage(raw_usage).write_split_known if raw_usage else False,
        text=message.text if isinstance(message.content, str | list) else "",
    )


def _probe_model(llm: ChatClaudeRelay) -> ChatClaudeRelay:
    """The same relay, key, headers and clients: no planning, no ledger, one output token."""
    return llm.model_copy(
        update={
            "prompt_cache": "off",
            "max_tokens": 1,
            "ledger": False,
            "cache": False,  # LangChain's response cache would answer the repeated calls
            "streaming": False,
            "thinking": None,  # a thinking budget needs more than one output token
        }
    )


def _kwargs(call: _Call) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"tools": list(call.tools)} if call.tools else {}
    if call.automatic:
        kwargs["cache_control"] = _marker()
    if call.response_format is not None:
        kwargs["response_format"] = call.response_format
        kwargs["max_tokens"] = _SHAPE_MAX_TOKENS
    return kwargs


def _capabilities(
    findings: _Findings, model: str, at: float, prices: tuple[RelayPrice, ...]
) -> RelayCapabilities:
    return RelayCapabilities(**asdict(findings), model=model, probed_at=at, prices=prices)


def _published_prices(llm: ChatClaudeRelay) -> tuple[RelayPrice, ...]:
    """What the relay publishes on ``/v1/models`` (nothing on native ways in or on failure)."""
    if llm._api.native:
        return ()
    try:
        return relay_prices(llm._transport.list_models().body)
    except (ClaudeRelayError, ValueError, ArithmeticError) as exc:
        # a relay without a catalogue, or with one that does not parse: no prices, not a failure
        logger.info("the relay's /models gave no prices: %s", type(exc).__name__)
        return ()


def probe_relay(
    llm: ChatClaudeRelay, *, clock: Callable[[], float] = time.time
) -> RelayCapabilities:
    """Probe what the relay behind ``llm`` keeps of cache markers and of ``response_format``.

    Up to 11 small requests (10 on a model without structured outputs) and a ``GET /v1/models``.

    Args:
        llm: a configured model (its base URL, key, headers, HTTP clients, rate limiter and
            model id are used; caching, the ledger and ``max_tokens`` are overridden).
        clock: epoch seconds, for ``probed_at``.

    Returns:
        The relay's capabilities.

    Raises:
        ClaudeRelayError: a typed error (connection, key, status) when a request fails for
            any reason but the rules the probe is testing (markers, response_format).
    """
    model = _probe_model(llm)
    try:
        return _probe_with(model, clock)
    finally:
        model.close()  # the copy's own clients: ``llm.close()`` never reaches them


def _steps_for(model: ChatClaudeRelay) -> Generator[_Call, _Answer, _Findings]:
    """The probe's steps for ``model`` (the structured-output step only where it has them)."""
    shapes = (model_profile(model.model_name) or {}).get("structured_output") is True
    return _probe_steps(probe_text_tokens(model.model_name), shapes=shapes)


def _probe_with(model: ChatClaudeRelay, clock: Callable[[], float]) -> RelayCapabilities:
    steps = _steps_for(model)
    try:
        call = next(steps)
        while True:
            try:
                answer = _answer_from(model.invoke(list(call.messages), **_kwargs(call)))
            except (BadRequestError, UnprocessableEntityError) as exc:
                answer = _refusal(call, exc)
            call = steps.send(answer)
    except StopIteration as done:
        return _capabilities(done.value, model.model_name, clock(), _published_prices(model))


def _refusal(call: _Call, exc: BadRequestError | UnprocessableEntityError) -> _Answer:
    """A refusal is a finding only on a call that tests a rule; elsewhere it is raised.

    The marker calls take a 400; the structured-output call a 400 or 422 (strict relays refuse
    an unknown field so) whose text names the feature: another one (credit, a model) is raised,
    so the probe never hides a broken setup.
    """
    if not call.may_be_refused:
        raise exc
    if call.response_format is not None:
        if not _FORMAT_WORDS.search(_error_text(exc)):
            raise exc
    elif isinstance(exc, UnprocessableEntityError):
        raise exc
    return _Answer(refused=exc)


async def aprobe_relay(
    llm: ChatClaudeRelay, *, clock: Callable[[], float] = time.time
) -> RelayCapabilities:
    """Async ``probe_relay`` (the same requests, sent with ``ainvoke``).

    Args:
        llm: a configured model (see ``probe_relay``).
        clock: epoch seconds, for ``probed_at``.

    Returns:
        The relay's capabilities.

    Raises:
        ClaudeRelayError: as ``probe_relay``.
    """
    model = _probe_model(llm)
    try:
        return await _aprobe_with(model, clock)
    finally:
        await model.aclose()  # the copy's own clients: ``llm.aclose()`` never reaches them


async def _aprobe_with(model: ChatClaudeRelay, clock: Callable[[], float]) -> RelayCapabilities:
    steps = _steps_for(model)
    try:
        call = next(steps)
        while True:
            try:
                message = await model.ainvoke(list(call.messages), **_kwargs(call))
                answer = _answer_from(message)
            except (BadRequestError, UnprocessableEntityError) as exc:
                answer = _refusal(call, exc)
            call = steps.send(answer)
    except StopIteration as done:
        prices = await asyncio.to_thread(_published_prices, model)
        return _capabilities(done.value, model.model_name, clock(), prices)


# Until the next release, the stored verdicts keep answering here too (see ``_compat``).
__getattr__ = moved_names(__name__, dict.fromkeys(capabilities.__all__, capabilities.__name__))
