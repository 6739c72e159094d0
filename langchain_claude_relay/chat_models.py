"""``ChatClaudeRelay``: a LangChain chat model for Claude over any OpenAI-compatible relay.

The class is a thin LangChain surface. The work happens in plain modules:
``convert`` (LangChain -> ``ClaudeRequest``), the planner (where the cache markers go and with
which TTL), ``wire.openai_chat`` (the one renderer and parser of the wire format), ``transport``
(the ``openai`` SDK, retries, typed errors), ``usage`` and ``cost`` (normalized usage, dollars).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    LangSmithParams,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.base import OutputParserLike
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
    make_invalid_tool_call,
    parse_tool_call,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from langchain_claude_relay.convert import convert_tool, to_claude_request
from langchain_claude_relay.cost import call_cost_usd
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.ledger import LedgerEntry, cache_facts, default_ledger
from langchain_claude_relay.models import DEFAULT_MODEL
from langchain_claude_relay.request import ClaudeRequest, marker_problems
from langchain_claude_relay.retry import RetryPolicy
from langchain_claude_relay.transport import RelayTransport, check_base_url
from langchain_claude_relay.usage import NormalizedUsage, normalize_usage
from langchain_claude_relay.wire.openai_chat import (
    ParsedChunk,
    parse_chat_chunk,
    parse_chat_completion,
    render_chat_payload,
)

__all__ = ["ChatClaudeRelay"]

logger = logging.getLogger(__name__)

CacheMode = Literal["auto", "off"]
TTLPolicy = Literal["auto", "5m", "1h"]


@dataclass
class _Prepared:
    """A request ready to send, with what is needed to account for its answer."""

    payload: dict[str, Any]
    model: str
    request: ClaudeRequest
    plan: Any  # CachePlan | None
    planner: Any  # CachePlanner | None
    started: float  # when the call started, on the planner's clock (wall time without one)


class ChatClaudeRelay(BaseChatModel):
    """Claude through an OpenAI-compatible relay, with prompt caching planned for you.

    Example:
        .. code-block:: python

            from langchain_claude_relay import ChatClaudeRelay

            llm = ChatClaudeRelay(model="claude-sonnet-4-6")  # CLAUDE_RELAY_BASE_URL / _API_KEY
            msg = llm.invoke([("system", big_document), ("human", "Summarize section 2")])
            msg.usage_metadata["input_token_details"]  # cache_read, cache_creation, ...
            msg.response_metadata["cost_usd"]
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Model id as the relay spells it (``claude-sonnet-4-6``, ``anthropic/claude-sonnet-4.5``...)."""

    base_url: str | None = Field(
        alias="base_url",
        default_factory=from_env(["CLAUDE_RELAY_BASE_URL", "OPENAI_BASE_URL"], default=None),
    )
    """Relay base URL; else env ``CLAUDE_RELAY_BASE_URL``, else ``OPENAI_BASE_URL``."""

    api_key: SecretStr | None = Field(
        alias="api_key",
        default_factory=secret_from_env(["CLAUDE_RELAY_API_KEY", "OPENAI_API_KEY"], default=None),
    )
    """Relay key; else env ``CLAUDE_RELAY_API_KEY``, else ``OPENAI_API_KEY``. Never printed."""

    temperature: float | None = None
    """Sampling temperature (0 to 1 for Claude)."""

    max_tokens: int | None = Field(default=None, alias="max_tokens")
    """Maximum output tokens (the relay's default when unset)."""

    top_p: float | None = None
    """Nucleus sampling."""

    top_k: int | None = None
    """Top-k sampling (sent in the body; most Claude relays pass it through)."""

    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop sequences."""

    timeout: float | None = Field(default=None, alias="default_request_timeout")
    """Seconds per attempt."""

    max_retries: int = 2
    """Retries on 408/409/429/5xx/529 and connection errors (capped exponential backoff)."""

    streaming: bool = False
    """Stream by default in ``invoke``."""

    stream_usage: bool = True
    """Ask for usage in streams (``stream_options.include_usage``); on for relays too."""

    default_headers: dict[str, str] | None = None
    """Extra headers on every request."""

    extra_body: dict[str, Any] | None = None
    """Extra fields merged into every request body (relay-specific options)."""

    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other request parameters, sent as given."""

    thinking: dict[str, Any] | None = None
    """Extended thinking: ``{"type": "adaptive"}`` or ``{"type": "enabled", "budget_tokens": N}``."""

    prompt_cache: Any = "auto"
    """Prompt caching: ``"auto"`` (plan markers), ``"off"`` (send exactly what was given), or a
    ``CachePlanner``. Pass it as ``cache=...``: ``"auto"``, ``"off"`` and planners set this field,
    while ``cache=True/False/None`` or a ``BaseCache`` keep their LangChain meaning (the response
    cache)."""

    cache_ttl: TTLPolicy = "auto"
    """TTL policy for planned markers: chosen by expected cost, or always ``"5m"`` / ``"1h"``."""

    ledger: Any = Field(default=None, exclude=True)
    """Where each call's usage and cost are recorded: ``None`` for the process-wide ledger
    (under ``CLAUDE_RELAY_STATE_DIR``, read by ``claude-relay stats``), ``False`` for none, or
    a ``Ledger`` instance."""

    allow_insecure_http: bool = False
    """Allow plain ``http://`` to a non-loopback host (the key would travel unencrypted)."""

    http_client: Any = Field(default=None, exclude=True)
    """An ``httpx``-compatible client for the sync SDK client (proxies, tests)."""

    http_async_client: Any = Field(default=None, exclude=True)
    """An ``httpx``-compatible client for the async SDK client."""

    # -- validation --------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _route_cache_argument(cls, values: Any) -> Any:
        """``cache="auto"|"off"|planner`` means prompt caching; other values are LangChain's."""
        if isinstance(values, dict) and "cache" in values:
            value = values["cache"]
            if isinstance(value, str) or (hasattr(value, "plan") and hasattr(value, "observe")):
                values = dict(values)
                values["prompt_cache"] = values.pop("cache")
        return values

    @field_validator("prompt_cache")
    @classmethod
    def _check_cache(cls, value: Any) -> Any:
        if value in ("auto", "off"):
            return value
        if hasattr(value, "plan") and hasattr(value, "observe"):
            return value
        msg = f"cache={value!r} is not understood: use 'auto', 'off' or a CachePlanner instance"
        raise ValueError(msg)

    @field_validator("thinking")
    @classmethod
    def _check_thinking(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        kind = value.get("type")
        if kind == "enabled" and not isinstance(value.get("budget_tokens"), int):
            msg = "thinking={'type': 'enabled'} needs an integer 'budget_tokens' (or use {'type': 'adaptive'})"
            raise ValueError(msg)
        if kind not in ("enabled", "adaptive", "disabled"):
            msg = f"thinking type {kind!r} is not understood: use 'adaptive' or 'enabled' with budget_tokens"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_base_url(self) -> ChatClaudeRelay:
        if self.base_url:
            check_base_url(self.base_url, allow_insecure_http=self.allow_insecure_http)
        return self

    # -- LangChain metadata ------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "claude-relay"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "CLAUDE_RELAY_API_KEY"}

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """The model can be serialized with ``dumpd`` (secrets as references)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """``["langchain_claude_relay", "chat_models"]``."""
        return ["langchain_claude_relay", "chat_models"]

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "prompt_cache": self.prompt_cache if isinstance(self.prompt_cache, str) else type(self.prompt_cache).__name__,
            "cache_ttl": self.cache_ttl,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "claude-relay"
        params["ls_model_name"] = kwargs.get("model", self.model_name)
        params["ls_model_type"] = "chat"
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if ls_stop := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = ls_stop
        return params

    # -- clients and planner (lazy) ------------------------------------------------------------

    @cached_property
    def _transport(self) -> RelayTransport:
        base_url = check_base_url(self.base_url, allow_insecure_http=self.allow_insecure_http)
        if self.api_key is None:
            msg = "no relay API key: pass api_key=... or set CLAUDE_RELAY_API_KEY (or OPENAI_API_KEY)"
            raise RequestValidationError(msg)
        return RelayTransport(
            base_url=base_url,
            api_key=self.api_key,
            timeout=self.timeout,
            retry_policy=RetryPolicy(max_retries=self.max_retries),
            default_headers=self.default_headers,
            http_client=self.http_client,
            http_async_client=self.http_async_client,
        )

    def _planner_for(self, cache: Any) -> Any:
        if cache == "off":
            return None
        if cache == "auto":
            from langchain_claude_relay.planner import default_planner

            return default_planner()
        return cache

    # -- request building -----------------------------------------------------------------------

    def _prepare(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, *, stream: bool, **kwargs: Any
    ) -> _Prepared:
        """Convert, validate, plan and render; raises on bad input before any network call."""
        _ = self._transport  # settings problems (no base URL, no key) surface first
        kwargs = dict(kwargs)
        model = kwargs.pop("model", None) or self.model_name
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        cache = kwargs.pop("prompt_cache", self.prompt_cache)
        ttl = kwargs.pop("cache_ttl", self.cache_ttl)
        thinking = kwargs.pop("thinking", self.thinking)
        kwargs.pop("ls_structured_output_format", None)
        request = to_claude_request(messages, model=model, tools=tools, tool_choice=tool_choice, thinking=thinking)
        problems = marker_problems(request)
        if problems:
            raise RequestValidationError("; ".join(problems))
        planner = self._planner_for(cache)
        started = planner.clock() if planner is not None and hasattr(planner, "clock") else time.time()
        plan = None
        if planner is not None:
            try:
                plan = planner.plan(request, ttl=ttl)
                request = plan.apply(request)
            except RequestValidationError:
                raise
            except Exception as exc:  # the planner must never fail a user's call
                warnings.warn(
                    f"cache planning failed ({type(exc).__name__}: {exc}); sending without planned markers",
                    RuntimeWarning,
                    stacklevel=4,
                )
                plan = None
        payload = render_chat_payload(request, canonical=planner is not None)
        payload.update(self._sampling_params(stop, stream=stream, thinking=thinking, extra=kwargs))
        return _Prepared(payload, model, request, plan, planner if plan is not None else None, started)

    def _sampling_params(
        self, stop: list[str] | None, *, stream: bool, thinking: Mapping[str, Any] | None, extra: dict[str, Any]
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in (
            ("temperature", self.temperature),
            ("max_tokens", self.max_tokens),
            ("top_p", self.top_p),
            ("top_k", self.top_k),
        ):
            if value is not None:
                params[key] = value
        stop_sequences = stop if stop is not None else self.stop
        if stop_sequences:
            params["stop"] = list(stop_sequences)
        if thinking:
            params["thinking"] = dict(thinking)
        if stream:
            params["stream"] = True
            if extra.pop("stream_usage", self.stream_usage):
                params["stream_options"] = {"include_usage": True}
        else:
            extra.pop("stream_usage", None)
        params.update(self.model_kwargs)
        params.update(self.extra_body or {})
        params.update(extra)
        return params

    # -- response handling ------------------------------------------------------------------------

    def _account(
        self, prepared: _Prepared, raw_usage: Mapping[str, Any] | None, call_id: str | None = None
    ) -> tuple[NormalizedUsage | None, dict[str, Any]]:
        """Normalize usage, price it, feed the planner; returns usage and response metadata."""
        meta: dict[str, Any] = {"cache_plan": prepared.plan.to_dict() if prepared.plan is not None else None}
        if raw_usage is None:
            meta["cost_usd"] = None
            return None, meta
        hint = _write_ttl_hint(prepared.request)
        usage = normalize_usage(raw_usage, write_ttl_hint=hint)
        meta["cost_usd"] = call_cost_usd(usage, prepared.model)
        if prepared.planner is not None and prepared.plan is not None:
            try:
                observation = prepared.planner.observe(prepared.plan, usage)
                if observation is not None and hasattr(observation, "to_dict"):
                    meta["cache_observation"] = observation.to_dict()
            except Exception as exc:  # feedback must never fail a user's call
                logger.warning("cache planner feedback failed: %s", type(exc).__name__)
        self._record(prepared, usage, meta, call_id)
        return usage, meta

    def _record(self, prepared: _Prepared, usage: NormalizedUsage, meta: dict[str, Any], call_id: str | None) -> None:
        """Add the call to the ledger; the ledger degrades on its own, and never fails a call."""
        if self.ledger is False:
            return
        try:
            ledger = self.ledger if self.ledger is not None else default_ledger()
            facts = cache_facts(
                meta.get("cache_plan"),
                meta.get("cache_observation"),
                read_tokens=usage.cache_read_tokens,
                write_tokens=usage.cache_write_tokens,
            )
            ledger.record(
                LedgerEntry.from_usage(
                    usage,
                    model=prepared.model,
                    timestamp=prepared.started,
                    call_id=call_id,
                    base_url=self.base_url,
                    predicted_read_tokens=facts.predicted_read_tokens,
                    written_prefixes=facts.written_prefixes,
                    read_prefix=facts.read_prefix,
                    miss_reason=facts.miss_reason,
                )
            )
        except Exception as exc:
            logger.warning("could not record the call in the ledger: %s", type(exc).__name__)

    def _message_from(self, body: Any, prepared: _Prepared) -> AIMessage:
        parsed = parse_chat_completion(body)
        tool_calls = []
        invalid_tool_calls = []
        for raw in parsed.tool_calls:
            try:
                call = parse_tool_call(dict(raw), return_id=True)
                if call is not None:
                    tool_calls.append(call)
            except Exception as exc:
                invalid_tool_calls.append(make_invalid_tool_call(dict(raw), str(exc)))
        usage, meta = self._account(prepared, parsed.usage, parsed.id)
        additional: dict[str, Any] = {}
        if parsed.reasoning:
            additional["reasoning_content"] = parsed.reasoning
        return AIMessage(
            content=parsed.content,
            additional_kwargs=additional,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid_tool_calls,
            usage_metadata=usage.to_usage_metadata() if usage is not None else None,
            response_metadata={
                "model_name": parsed.model or prepared.model,
                "model_provider": "claude-relay",
                "finish_reason": parsed.finish_reason,
                "id": parsed.id,
                "usage": dict(parsed.usage) if parsed.usage is not None else None,
                **meta,
            },
            id=parsed.id,
        )

    def _chunk_from(self, parsed: ParsedChunk) -> AIMessageChunk:
        additional: dict[str, Any] = {}
        if parsed.reasoning:
            additional["reasoning_content"] = parsed.reasoning
        chunks = [
            tool_call_chunk(
                name=(d.get("function") or {}).get("name"),
                args=(d.get("function") or {}).get("arguments"),
                id=d.get("id"),
                index=d.get("index"),
            )
            for d in parsed.tool_call_deltas
        ]
        response_metadata: dict[str, Any] = {}
        if parsed.finish_reason:
            response_metadata["finish_reason"] = parsed.finish_reason
        return AIMessageChunk(
            content=parsed.content,
            additional_kwargs=additional,
            tool_call_chunks=chunks,
            response_metadata=response_metadata,
            id=parsed.id,
        )

    def _final_chunk(
        self,
        prepared: _Prepared,
        raw_usage: Mapping[str, Any] | None,
        model_name: str | None,
        call_id: str | None = None,
    ) -> AIMessageChunk:
        """The closing chunk: usage, cost and plan, once (LangChain sums usage across chunks)."""
        usage, meta = self._account(prepared, raw_usage, call_id)
        return AIMessageChunk(
            content="",
            usage_metadata=usage.to_usage_metadata() if usage is not None else None,
            response_metadata={
                "model_name": model_name or prepared.model,
                "model_provider": "claude-relay",
                "usage": dict(raw_usage) if raw_usage is not None else None,
                **meta,
            },
            chunk_position="last",
        )

    # -- LangChain entry points -----------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))
        prepared = self._prepare(messages, stop, stream=False, **kwargs)
        raw = self._transport.create(prepared.payload)
        message = self._message_from(raw.body, prepared)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": prepared.model})

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop=stop, run_manager=run_manager, **kwargs))
        prepared = self._prepare(messages, stop, stream=False, **kwargs)
        raw = await self._transport.acreate(prepared.payload)
        message = self._message_from(raw.body, prepared)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": prepared.model})

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prepared = self._prepare(messages, stop, stream=True, **kwargs)
        usage: Mapping[str, Any] | None = None
        model_name: str | None = None
        call_id: str | None = None
        for event in self._transport.stream(prepared.payload):
            parsed = parse_chat_chunk(event)
            usage = parsed.usage if parsed.usage is not None else usage
            model_name = parsed.model or model_name
            call_id = parsed.id or call_id
            message = self._chunk_from(parsed)
            if not _is_empty(message):
                chunk = ChatGenerationChunk(message=message)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        final = ChatGenerationChunk(message=self._final_chunk(prepared, usage, model_name, call_id))
        if run_manager:
            run_manager.on_llm_new_token("", chunk=final)
        yield final

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        prepared = self._prepare(messages, stop, stream=True, **kwargs)
        usage: Mapping[str, Any] | None = None
        model_name: str | None = None
        call_id: str | None = None
        async for event in self._transport.astream(prepared.payload):
            parsed = parse_chat_chunk(event)
            usage = parsed.usage if parsed.usage is not None else usage
            model_name = parsed.model or model_name
            call_id = parsed.id or call_id
            message = self._chunk_from(parsed)
            if not _is_empty(message):
                chunk = ChatGenerationChunk(message=message)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        final = ChatGenerationChunk(message=self._final_chunk(prepared, usage, model_name, call_id))
        if run_manager:
            await run_manager.on_llm_new_token("", chunk=final)
        yield final

    # -- tools and structured output ------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, pydantic models, functions, OpenAI or Claude tool dicts).

        A ``cache_control`` key on a tool dict is kept and sent. ``tool_choice`` may be
        ``"auto"``, ``"any"``/``"required"``/``True`` (some tool), ``"none"``, or a tool name.

        Raises:
            RequestValidationError: if a tool cannot be read or ``tool_choice`` names no bound tool.
        """
        formatted: list[dict[str, Any]] = []
        names: list[str] = []
        for i, tool in enumerate(tools):
            converted = convert_tool(tool, f"tools[{i}]")
            names.append(converted.name)
            entry: dict[str, Any] = {
                "type": "function",
                "function": {
                    "name": converted.name,
                    "description": converted.description,
                    "parameters": dict(converted.parameters),
                    **converted.extra,
                },
            }
            if converted.cache_control is not None:
                entry["cache_control"] = converted.cache_control.to_wire()
            formatted.append(entry)
        if isinstance(tool_choice, str) and tool_choice not in ("auto", "any", "required", "none") and tool_choice not in names:
            msg = f"tool_choice {tool_choice!r} names no bound tool; bound tools are {names}"
            raise RequestValidationError(msg)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable that returns output shaped by ``schema``.

        Args:
            schema: a pydantic class, a TypedDict, or a JSON schema / OpenAI tool dict.
            method: ``"function_calling"`` (a forced tool call; the default and the most
                portable across relays), ``"json_schema"`` (``response_format``), or
                ``"json_mode"`` (JSON object output; describe the shape in the prompt).
            include_raw: return ``{"raw", "parsed", "parsing_error"}`` instead.
            strict: passed to the tool or schema definition when given.
            **kwargs: not supported; named so that mistakes are reported.

        Returns:
            The runnable.

        Raises:
            ValueError: for an unknown method, extra kwargs, or a missing schema.
        """
        if kwargs:
            msg = f"unexpected arguments to with_structured_output: {sorted(kwargs)}"
            raise ValueError(msg)
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        parser: OutputParserLike[Any]
        if method == "function_calling":
            if schema is None:
                msg = "with_structured_output(method='function_calling') needs a schema"
                raise ValueError(msg)
            tool = convert_to_openai_tool(schema, strict=strict)
            name = tool["function"]["name"]
            llm = self.bind_tools(
                [tool], tool_choice=name, ls_structured_output_format={"kwargs": {"method": method}, "schema": tool}
            )
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        elif method == "json_schema":
            if schema is None:
                msg = "with_structured_output(method='json_schema') needs a schema"
                raise ValueError(msg)
            json_schema = convert_to_json_schema(schema)
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": json_schema.get("title", "output"), "schema": json_schema},
            }
            if strict is not None:
                response_format["json_schema"]["strict"] = strict
            llm = self.bind(
                response_format=response_format,
                ls_structured_output_format={"kwargs": {"method": method}, "schema": json_schema},
            )
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        elif method == "json_mode":
            llm = self.bind(
                response_format={"type": "json_object"},
                ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
            )
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        else:
            msg = f"method {method!r} is not supported: use 'function_calling', 'json_schema' or 'json_mode'"
            raise ValueError(msg)
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        parser_with_fallback = parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")
        return RunnableMap(raw=llm) | parser_with_fallback


def _is_empty(message: AIMessageChunk) -> bool:
    return not message.content and not message.tool_call_chunks and not message.additional_kwargs and not message.response_metadata.get("finish_reason")


def _write_ttl_hint(request: ClaudeRequest) -> Literal["5m", "1h"] | None:
    """When a relay reports writes without the 5m/1h split, the markers tell which it was."""
    ttls = {marker.ttl for marker in request.markers().values()}
    if len(ttls) == 1:
        return next(iter(ttls))  # type: ignore[return-value]
    return None
