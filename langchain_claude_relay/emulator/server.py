"""The emulator's HTTP face: a Starlette app, served by uvicorn in a thread or from the CLI.

Endpoints (all share one cache engine, clock, limiter, fault injector and billing log):

==========================  =================================================================
``POST /v1/chat/completions``  OpenAI chat completions, plain or SSE (with ``include_usage``)
``POST /v1/messages``          Anthropic Messages, plain or SSE (Anthropic's events)
``POST /v1/messages/count_tokens``  ``{"input_tokens": N}``: the input the request would bill
``POST /model/{m}/invoke``     Bedrock: Messages JSON (``.../invoke-with-response-stream``:
                               Anthropic's events in AWS event-stream frames)
``POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict``
                               Vertex AI: Messages JSON or SSE (also ``:streamRawPredict``;
                               ``models/count-tokens:rawPredict`` counts tokens)
``GET  /v1/models``            the model table's families as model ids
``GET|POST /admin/clock``      read, ``{"set": t}`` or ``{"advance": s}`` the virtual clock
``GET  /admin/billing``        the billing log
``GET  /admin/requests``       every API request with its outcome
``POST /admin/reset``          forget entries, logs, rate windows; clock back to 0
``GET|POST /admin/config``     read or change settings (``EmulatorSettings`` fields)
``POST /admin/faults``         ``{"kind": "529", "count": 2}``: the next requests fail so
==========================  =================================================================

Guarded (``_Guard``, the outermost layer): every response names the emulator
(``x-relay-emulator: langchain-claude-relay``), so nobody mistakes it for a relay; the admin
routes refuse a request that carries a foreign ``Origin`` (or ``Sec-Fetch-Site: cross-site``)
and a ``POST`` whose body is not ``application/json`` -- a web page could otherwise post
``text/plain`` to ``/admin/config`` and set ``fault_rate=1``; with ``require_key`` (the CLI's
``--require-key``), every route wants that key (``Authorization: Bearer``, ``x-api-key`` or
``api-key``). ``serve`` warns when bound to an interface other than loopback.

Billing rule, as Claude bills: the billing log holds every request whose response began (its
cache writes committed), whether or not its usage reached the client. The request log tells
which did: ``billed`` for a complete JSON body, the usage chunk of an OpenAI stream (only sent
when ``stream_options.include_usage`` is set) or the ``message_delta`` of an Anthropic stream;
``fault:cut`` for a ``cut`` fault (a cut stream ends cleanly after its second content event: no
finish chunk, no usage, no ``[DONE]`` / ``message_stop``; a cut plain request gets the first half
of its JSON body); ``no_usage`` for a stream without ``stream_options.include_usage``;
``stopped`` for a stream its client stopped reading before the usage. Those are billed in full,
the whole reply's output included (the emulator generates a reply at once). A fault before the
engine (5xx, reset, malformed or HTML body) has no cache effect and is not billed. Token
counting is neither billed nor rate limited: logged as ``counted``.

Limits: a body over ``MAX_BODY_BYTES`` (32 MB, Claude's) is a 413 ``request_too_large``, by its
Content-Length or counted as it comes in (logged as ``error:413``); a body over
``INLINE_BODY_BYTES`` is decoded, parsed and tokenized in a worker thread, so the event loop
serves other clients meanwhile; the cache lookup and the commit stay on the loop, under the lock,
in the same order as before. A body nested deeper than the JSON decoder goes is a 400.

On the Messages paths (Anthropic, Bedrock, Vertex), ``max_tokens: 0`` is a valid request that
reads and writes the cache and is billed as usual, but answers no content (``content: []``,
``stop_reason: "max_tokens"``), provided it is a pre-warm Claude accepts: a ``cache_control``
breakpoint, no thinking, no structured outputs, no forced tool choice (else a 400, as for
thinking with a forced tool choice or a thinking budget not below ``max_tokens``, on every path
that generates: ``check_generation_payload``); ``output_config.format`` makes the reply a JSON
instance of the schema; ``diagnostics.previous_message_id`` adds a ``cache_miss_reason`` (see
``diagnostics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import logging
import math
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from langchain_claude_relay.emulator.diagnostics import (
    FingerprintStore,
    cache_miss_reason,
    fingerprint,
    requested_diagnostics,
)
from langchain_claude_relay.emulator.dialects import (
    DIALECTS,
    StreamEvent,
    anthropic_body,
    anthropic_events,
    anthropic_stream,
    message_id,
    openai_body,
    openai_stream,
    render_usage,
)
from langchain_claude_relay.emulator.engine import (
    BAD_RELAY_MODES,
    BillingEntry,
    CacheBill,
    CacheEngine,
    InvalidRequest,
    PrefixRequest,
    TokenSplit,
    apply_bad_relay,
    check_generation_payload,
    cost_usd,
    parse_anthropic,
    parse_openai,
    validate_markers,
)
from langchain_claude_relay.emulator.eventstream import bedrock_chunk
from langchain_claude_relay.emulator.faults import (
    FAULT_KINDS,
    FAULTS,
    TIERS,
    Fault,
    FaultInjector,
    RateLimiter,
    RateLimits,
    parse_fault_kinds,
    ttft_seconds,
)
from langchain_claude_relay.emulator.platforms import bedrock_error, error_message, native_payload
from langchain_claude_relay.emulator.replies import Reply, make_reply, reply_spec
from langchain_claude_relay.emulator.tokens import EmulatorTokenizer, TokenCosts
from langchain_claude_relay.models import MODEL_TABLE, ModelPrices, lookup_model
from langchain_claude_relay.transport.checks import is_loopback_host

__all__ = [
    "EmulatorSettings",
    "RequestRecord",
    "EmulatorCore",
    "RelayEmulator",
    "KEEP_ALIVE_SECONDS",
    "build_app",
    "server_config",
    "ADMIN_ROUTES",
    "EmulatorBindError",
    "bind",
    "banner",
    "serve",
]

CLOCKS = ("virtual", "wall")
_NUMBER_RULES: dict[str, tuple[bool, bool, bool]] = {
    "token_ratio": (False, True, False),
    "tool_token_ratio": (False, True, False),
    "block_overhead_tokens": (True, False, False),
    "tool_overhead_tokens": (True, False, False),
    "image_tokens": (True, False, False),
    "min_cache_tokens": (True, False, True),
    "latency_scale": (False, False, False),
    "first_byte_delay": (False, False, False),
    "rpm": (True, True, True),
    "itpm": (True, True, True),
    "otpm": (True, True, True),
    "fault_rate": (False, False, False),
    "fault_seed": (True, False, False),
}
"""``EmulatorSettings`` numbers: (whole number, above 0 rather than 0 or more, may be null)."""
KEEP_ALIVE_SECONDS = 3600
"""How long the server keeps an idle keep-alive connection open: far longer than any HTTP
client's own idle expiry (httpx and the ``openai`` SDK: 5 s; aiohttp: 15 s; Go: 90 s; OkHttp:
5 min), so the client always closes first. uvicorn's default, 5 s, equals httpx's: a client
that reused a connection idle for just under 5 s raced the server closing it, and lost
(``ReadError``, "cannot reach the relay") at concurrency 64, in a thread or a child process."""
LISTEN_BACKLOG = 2048
"""Pending connections the kernel queues (capped by ``net.core.somaxconn``)."""
CREATED_EPOCH = 1_767_225_600
"""``created`` in responses is this (2026-01-01) plus the virtual time, so replies are stable."""
_SCOPE_ID, _SCOPE_FAULT = "emulator.request_id", "emulator.fault"
MAX_BODY_BYTES = 32 * 1024 * 1024
"""The largest request body served (Claude's Messages limit, 32 MB): a larger one is refused
with a 413 ``request_too_large`` before it is parsed. Unbounded, one 20 MB body held every other
client for half a minute and 1.2 GB of memory."""
_DRAIN_BYTES = 4 * MAX_BODY_BYTES
"""How much of a refused body is read and discarded so the client sees the 413 (a client that
is still sending when the server closes gets a reset instead); past this the connection is cut."""
INLINE_BODY_BYTES = 256 * 1024
"""Bodies up to this size are parsed and tokenized on the event loop (a thread hop costs more
than the work); larger ones in a worker thread, so a big request never stalls other clients."""


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything the emulator can be told (simple types, so CLI flags map onto fields).

    Attributes:
        dialect: usage dialect of ``/v1/chat/completions`` (one of ``DIALECTS``).
        prompt_excludes_cached: force ``prompt_tokens`` to exclude (True) or include (False)
            cached tokens; ``None`` keeps the dialect's habit.
        bad_relay: ``"drop_cache_control"``, ``"drop_ttl"``, ``"inject_marker"`` or ``None``.
        token_ratio: emulator tokens per ``cl100k_base`` token (prose, messages).
        tool_token_ratio: the same for tool schemas.
        block_overhead_tokens: tokens added per content block.
        tool_overhead_tokens: tokens added per tool.
        image_tokens: flat cost of an image.
        min_cache_tokens: override the per-model minimum cacheable prefix.
        latency_scale: time-to-first-token model scale (0: off; 1: Anthropic's real figures).
        first_byte_delay: fixed wall seconds before every response begins.
        tier: ``"tier1"`` ... ``"tier4"`` rate-limit preset, or ``None`` (no limits).
        rpm: requests per minute (overrides the tier).
        itpm: input tokens per minute (overrides the tier).
        otpm: output tokens per minute.
        fault_rate: probability that a request fails, in [0, 1].
        fault_seed: seed of the fault draws.
        fault_kinds: comma-separated kinds drawn at ``fault_rate``.
        fault_script: comma-separated kinds the next requests fail with, in order.
        clock: ``"virtual"`` (moves only when told) or ``"wall"``.
        published_price_multiplier: publish OpenRouter-style ``pricing`` on ``/v1/models`` at
            this multiple of the model table (a relay's markup); ``None``: no prices, as most
            relays.
        drop_response_format: drop ``response_format`` from chat requests, as relays that do
            not forward it to Claude's structured outputs (the answer is then free text).

    """

    dialect: str = "superset"
    prompt_excludes_cached: bool | None = None
    bad_relay: str | None = None
    token_ratio: float = 1.2
    tool_token_ratio: float = 1.6
    block_overhead_tokens: int = 3
    tool_overhead_tokens: int = 12
    image_tokens: int = 1600
    min_cache_tokens: int | None = None
    latency_scale: float = 0.0
    first_byte_delay: float = 0.0
    tier: str | None = None
    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    fault_rate: float = 0.0
    fault_seed: int = 0
    fault_kinds: str = ",".join(FAULT_KINDS)
    fault_script: str = ""
    clock: str = "virtual"
    published_price_multiplier: float | None = None
    drop_response_format: bool = False

    def __post_init__(self) -> None:
        choices: dict[str, tuple[Any, ...]] = {
            "dialect": DIALECTS,
            "bad_relay": (None, *BAD_RELAY_MODES),
            "tier": (None, *TIERS),
            "clock": CLOCKS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                msg = f"{name}={getattr(self, name)!r} is not one of {allowed}"
                raise ValueError(msg)
        self._check_numbers()
        if not 0.0 <= self.fault_rate <= 1.0:
            msg = f"fault_rate={self.fault_rate} must be in [0, 1]"
            raise ValueError(msg)
        for name in ("fault_kinds", "fault_script"):
            if not isinstance(getattr(self, name), str):
                msg = f"{name}={getattr(self, name)!r} must be a comma-separated string of kinds"
                raise ValueError(msg)
        if not isinstance(self.drop_response_format, bool):
            msg = f"drop_response_format={self.drop_response_format!r} must be true or false"
            raise ValueError(msg)
        excludes = self.prompt_excludes_cached
        if excludes is not None and not isinstance(excludes, bool):
            msg = f"prompt_excludes_cached={excludes!r} must be true, false or null"
            raise ValueError(msg)
        parse_fault_kinds(self.fault_kinds)
        parse_fault_kinds(self.fault_script)
        markup = self.published_price_multiplier
        number = isinstance(markup, int | float) and not isinstance(markup, bool)
        if markup is not None and not (number and math.isfinite(markup) and 0 < markup <= 100):
            msg = f"published_price_multiplier={markup} must be a positive factor (e.g. 1.05)"
            raise ValueError(msg)

    def _check_numbers(self) -> None:
        """Refuse numbers no emulator can run with (before they break every request).

        Ratios must be finite and positive (a negative one bills negative tokens); scales,
        delays, overheads and the fault rate finite and not negative (``latency_scale=inf``
        hung every request); counts whole numbers; a JSON string is never a number.
        """
        for name, (whole, positive, optional) in _NUMBER_RULES.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            kinds = (int,) if whole else (int, float)
            ok = not isinstance(value, bool) and isinstance(value, kinds)
            ok = ok and math.isfinite(value) and (value > 0 if positive else value >= 0)
            if not ok:
                wanted = "a whole number" if whole else "a finite number"
                sign = "above 0" if positive else "of 0 or more"
                maybe = " (or null)" if optional else ""
                msg = f"{name}={value!r} must be {wanted} {sign}{maybe}"
                raise ValueError(msg)

    @property
    def rate_limits(self) -> RateLimits:
        """The tier preset, with ``rpm``/``itpm``/``otpm`` overriding it."""
        base = TIERS[self.tier] if self.tier else RateLimits()
        return RateLimits(
            rpm=self.rpm if self.rpm is not None else base.rpm,
            itpm=self.itpm if self.itpm is not None else base.itpm,
            otpm=self.otpm if self.otpm is not None else base.otpm,
        )

    @property
    def token_costs(self) -> TokenCosts:
        """The tokenizer's settings."""
        return TokenCosts(
            self.token_ratio,
            self.tool_token_ratio,
            self.block_overhead_tokens,
            self.tool_overhead_tokens,
            self.image_tokens,
        )


@dataclass(frozen=True)
class RequestRecord:
    """One API request and what became of it.

    ``outcome`` is ``billed`` (the usage reached the client), ``counted`` (token counting),
    ``fault:KIND``, ``error:STATUS``, ``no_usage`` or ``stopped`` (billed, the usage not
    sent: see the billing rule); ``status`` is ``None`` when the connection was reset.
    ``endpoint`` names the path: ``chat.completions``, ``messages``, ``messages.count_tokens``,
    ``bedrock.invoke``, ``bedrock.invoke-with-response-stream``, ``vertex.rawPredict``,
    ``vertex.streamRawPredict`` or ``vertex.count_tokens``.
    """

    request_id: str
    endpoint: str
    time: float
    status: int | None
    outcome: str


def _finite_seconds(what: str, value: Any) -> float:
    """``value`` as float seconds, refused unless a finite number (before anything changes).

    Raises:
        ValueError: for NaN, an infinity, a bool or a value that is not a number.

    """
    if isinstance(value, bool):
        value = None  # a bool is not a time
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds):
        msg = f"clock {what}={value!r}: give a finite number of seconds"
        raise ValueError(msg)
    return seconds


class _Clock:
    """Virtual seconds starting at 0.0; in ``wall`` mode it also runs with the wall clock."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._base = 0.0
        self._anchor = time.monotonic()

    def now(self) -> float:
        running = time.monotonic() - self._anchor if self.mode == "wall" else 0.0
        return self._base + running

    def set(self, t: float) -> None:
        self._base, self._anchor = float(t), time.monotonic()

    def switch(self, mode: str) -> None:
        now = self.now()
        self.mode = mode
        self.set(now)


@dataclass(frozen=True)
class _Wire:
    """One API endpoint: its request-log name, its parser and where it came in.

    Attributes:
        endpoint: the name in the request and billing logs.
        parse: reads the payload's prefix.
        platform: ``"openai"``, ``"anthropic"``, ``"bedrock"`` or ``"vertex"`` (``PLATFORMS``).
        path_stream: whether the path asks for a stream (Bedrock), ``None``: the body says.
        counts: a token-counting endpoint.

    """

    endpoint: str
    parse: Callable[[Mapping[str, Any]], PrefixRequest]
    platform: str
    path_stream: bool | None = None
    counts: bool = False

    @property
    def anthropic(self) -> bool:
        """Whether the body is Anthropic's Messages format."""
        return self.platform != "openai"

    @property
    def stream_media_type(self) -> str:
        """The content type of this endpoint's streams."""
        return (
            "application/vnd.amazon.eventstream"
            if self.platform == "bedrock"
            else "text/event-stream"
        )


_VERTEX = "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/"
_PARSE_BEDROCK = partial(parse_anthropic, platform="bedrock")
_PARSE_VERTEX = partial(parse_anthropic, platform="vertex")
WIRES: dict[str, _Wire] = {
    "/v1/chat/completions": _Wire("chat.completions", parse_openai, "openai"),
    "/v1/messages": _Wire("messages", parse_anthropic, "anthropic"),
    "/v1/messages/count_tokens": _Wire(
        "messages.count_tokens", parse_anthropic, "anthropic", counts=True
    ),
    "/model/{model}/invoke": _Wire("bedrock.invoke", _PARSE_BEDROCK, "bedrock", False),
    "/model/{model}/invoke-with-response-stream": _Wire(
        "bedrock.invoke-with-response-stream", _PARSE_BEDROCK, "bedrock", True
    ),
    # before "{model}:rawPredict", which would also match it
    _VERTEX + "count-tokens:rawPredict": _Wire(
        "vertex.count_tokens", _PARSE_VERTEX, "vertex", counts=True
    ),
    _VERTEX + "{model}:rawPredict": _Wire("vertex.rawPredict", _PARSE_VERTEX, "vertex"),
    _VERTEX + "{model}:streamRawPredict": _Wire("vertex.streamRawPredict", _PARSE_VERTEX, "vertex"),
}
"""API endpoints by Starlette path template, in matching order."""
_WIRE_PATTERNS = [(compile_path(path)[0], wire) for path, wire in WIRES.items()]


def match_wire(path: str) -> _Wire | None:
    """The API endpoint serving a (decoded) URL path, or ``None``."""
    return next((wire for regex, wire in _WIRE_PATTERNS if regex.match(path)), None)


def _error(
    status: int,
    kind: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    platform: str = "anthropic",
) -> Response:
    if platform == "bedrock":
        body, aws_headers = bedrock_error(status, message)
        return JSONResponse(body, status_code=status, headers={**(headers or {}), **aws_headers})
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _fault_response(fault: Fault, platform: str, headers: Mapping[str, str]) -> Response:
    status = fault.status or 500
    if platform == "bedrock" and status >= 400 and fault.content_type == "application/json":
        return _error(status, "", error_message(fault.body), headers, platform)
    return Response(fault.body, status, dict(headers), fault.content_type)


class EmulatorCore:
    """The emulator's state and request pipeline, shared by the HTTP app and ``RelayEmulator``.

    Thread-safe: the public methods may be called from any thread while the server runs.
    """

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self._lock = threading.RLock()
        self._settings = settings or EmulatorSettings()
        self._clock = _Clock(self._settings.clock)
        self._tokenizer = EmulatorTokenizer(self._settings.token_costs)
        self._engine = CacheEngine(self._tokenizer, minimum=self._minimum)
        self._limiter = RateLimiter(self._settings.rate_limits)
        self._faults = self._new_faults()
        self._billing: list[BillingEntry] = []
        self._requests: list[RequestRecord] = []
        self._prints = FingerprintStore()
        self._counter = 0
        self.require_key: str | None = None  # a key every request must present (the guard)
        self.stopping = False  # set by RelayEmulator.stop: delayed answers end at once

    # -- state ---------------------------------------------------------------------------

    @property
    def settings(self) -> EmulatorSettings:
        """The settings in force."""
        return self._settings

    @property
    def now(self) -> float:
        """The emulator's clock, in seconds."""
        return self._clock.now()

    def advance(self, seconds: float) -> float:
        """Move the clock forward; returns the new time.

        Raises:
            ValueError: if ``seconds`` is negative (use ``set_time`` to go back).

        """
        seconds = _finite_seconds("advance", seconds)
        if seconds < 0:
            msg = f"cannot advance the clock by {seconds} s: use set_time() to move it back"
            raise ValueError(msg)
        with self._lock:
            self._clock.set(self._clock.now() + seconds)
            return self._clock.now()

    def set_time(self, t: float) -> float:
        """Set the clock to ``t`` seconds; returns it.

        Raises:
            ValueError: if ``t`` is not a finite number (a NaN clock poisons every cache entry).

        """
        t = _finite_seconds("set", t)
        with self._lock:
            self._clock.set(t)
            return self._clock.now()

    @property
    def billing_log(self) -> list[BillingEntry]:
        """A copy of the billing log: one entry per request whose response began, as Claude bills.

        Whether its usage reached the client is in ``request_log`` (outcome ``billed``).
        """
        with self._lock:
            return list(self._billing)

    @property
    def request_log(self) -> list[RequestRecord]:
        """A copy of the request log (every API request and its outcome)."""
        with self._lock:
            return list(self._requests)

    def cache_entries(self) -> int:
        """How many cache entries are alive now."""
        with self._lock:
            return self._engine.entry_count(self._clock.now())

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Make the next ``count`` API requests fail with ``kind`` (one of ``FAULT_KINDS``)."""
        with self._lock:
            self._faults.push(kind, count)

    def reset(self) -> None:
        """Forget cache entries, logs, diagnostics, rate windows and scripted faults; clock to 0."""
        with self._lock:
            self._engine.clear()
            self._prints.clear()
            self._billing.clear()
            self._requests.clear()
            self._limiter = RateLimiter(self._settings.rate_limits)
            self._faults = self._new_faults()
            self._clock.set(0.0)
            self._counter = 0

    def configure(self, **changes: Any) -> EmulatorSettings:
        """Change settings while running (cache entries, logs and the clock are kept).

        Args:
            **changes: ``EmulatorSettings`` fields.

        Returns:
            The settings now in force.

        Raises:
            ValueError: for an unknown field or an invalid value.

        """
        unknown = set(changes) - {f.name for f in fields(EmulatorSettings)}
        if unknown:
            msg = f"unknown emulator setting(s) {sorted(unknown)}"
            raise ValueError(msg)
        with self._lock:
            old, new = self._settings, replace(self._settings, **changes)
            self._settings = new
            if new.token_costs != old.token_costs:
                self._tokenizer = EmulatorTokenizer(new.token_costs)
                self._engine.counter = self._tokenizer
            self._limiter.limits = new.rate_limits
            fault_fields = ("fault_rate", "fault_seed", "fault_kinds", "fault_script")
            if any(getattr(new, f) != getattr(old, f) for f in fault_fields):
                self._faults = self._new_faults()
            if new.clock != old.clock:
                self._clock.switch(new.clock)
            return new

    def _new_faults(self) -> FaultInjector:
        s = self._settings
        faults = FaultInjector(s.fault_rate, s.fault_seed, parse_fault_kinds(s.fault_kinds))
        for kind in parse_fault_kinds(s.fault_script):
            faults.push(kind)
        return faults

    def _minimum(self, model: str) -> int:
        override = self._settings.min_cache_tokens
        return override if override is not None else lookup_model(model).min_cache_tokens

    def next_request(self) -> tuple[str, str | None]:
        """Assign a new request id and draw its fault (``None``: no fault)."""
        with self._lock:
            self._counter += 1
            return f"req_emu_{self._counter:06d}", self._faults.draw()

    def record(
        self, request_id: str, endpoint: str, at: float, status: int | None, outcome: str
    ) -> None:
        """Append to the request log."""
        with self._lock:
            self._requests.append(RequestRecord(request_id, endpoint, at, status, outcome))

    def _bill(self, entry: BillingEntry) -> None:
        """Bill a request whose response began (the request log tells what reached the client)."""
        with self._lock:
            self._billing.append(entry)

    def _delivered(self, entry: BillingEntry, outcome: str = "billed") -> None:
        """Log what became of a billed request's response (``billed``: its usage was sent)."""
        self.record(entry.request_id, entry.endpoint, entry.time, 200, outcome)

    # -- pipeline ------------------------------------------------------------------------

    async def handle(self, request: Request, wire: _Wire) -> Response:
        """Serve one API request: faults, validation, cache, limits, latency, reply, billing."""
        rid, fault = request.scope.get(_SCOPE_ID), request.scope.get(_SCOPE_FAULT)
        if rid is None:
            rid, fault = self.next_request()
        start = self.now
        headers = {"request-id": rid, "x-request-id": rid}
        if wire.platform == "bedrock":
            headers["x-amzn-requestid"] = rid
        if fault is not None and FAULTS[fault].before_engine:
            self.record(rid, wire.endpoint, start, FAULTS[fault].status, f"fault:{fault}")
            return _fault_response(FAULTS[fault], wire.platform, headers)
        try:
            body = await _read_body(request)
        except _BodyTooLarge as exc:
            self.record(rid, wire.endpoint, start, 413, "error:413")
            return _error(413, "request_too_large", str(exc), headers, wire.platform)
        try:
            if len(body) > INLINE_BODY_BYTES:  # parse and tokenize off the event loop
                payload, prefix = await asyncio.to_thread(self._prepare, body, request, wire)
            else:
                payload, prefix = self._prepare(body, request, wire)
            if wire.counts:
                validate_markers(prefix)
                with self._lock:
                    counted = {"input_tokens": self._engine.input_total(prefix)}
                return self._counted(rid, wire, start, counted, headers, fault == "cut")
            beta = request.headers.get("anthropic-beta", "")
            check_generation_payload(
                payload,
                prefix,
                native=wire.anthropic,
                interleaved="interleaved-thinking" in beta.lower(),
            )
            _check_stream_options(payload)
            asked, previous = requested_diagnostics(payload) if wire.anthropic else (False, None)
            with self._lock:
                bill = self._engine.plan(prefix, start)
                reason = (
                    cache_miss_reason(self._prints.get(previous), prefix, bill.split.cache_read)
                    if previous is not None
                    else None
                )
        except RecursionError:
            self.record(rid, wire.endpoint, start, 400, "error:400")
            text = "the request body is nested too deeply: flatten it"
            return _error(400, "invalid_request_error", text, headers, wire.platform)
        except (ValueError, TypeError, AttributeError) as exc:
            self.record(rid, wire.endpoint, start, 400, "error:400")
            return _error(400, "invalid_request_error", str(exc), headers, wire.platform)
        extra: dict[str, Any] | None = None
        if asked:
            extra = {"diagnostics": None if reason is None else {"cache_miss_reason": reason}}
        return await self._answer(
            rid, wire, payload, prefix, bill, extra, headers, fault, request.is_disconnected
        )

    def _prepare(
        self, body: bytes, request: Request, wire: _Wire
    ) -> tuple[dict[str, Any], PrefixRequest]:
        """Decode and parse a body, and count its blocks' tokens into the tokenizer's memo.

        Touches no cache state (so it may run in a worker thread): the plan made afterwards,
        under the lock, finds every block already counted and only looks the prefix up.

        Raises:
            InvalidRequest: for a body the platform or Claude would refuse.
            ValueError: for a body that is not JSON.
            RecursionError: for a body nested deeper than the decoder goes.

        """
        payload = _decode_payload(body, request, wire)
        if self._settings.drop_response_format and "response_format" in payload:
            payload = {k: v for k, v in payload.items() if k != "response_format"}
        prefix = apply_bad_relay(wire.parse(payload), self._settings.bad_relay)
        tokenizer = self._tokenizer
        for block in prefix.blocks:
            tokenizer.count_block(block.hash, block.kind, block.text)
        return payload, prefix

    async def _answer(
        self,
        rid: str,
        wire: _Wire,
        payload: Mapping[str, Any],
        prefix: PrefixRequest,
        bill: CacheBill,
        extra: Mapping[str, Any] | None,
        headers: dict[str, str],
        fault: str | None,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> Response:
        """Limits, latency, commit, bill, then the body or stream (``gone``: the client left)."""
        start, settings = bill.start, self._settings
        reply = self._reply(wire, payload, prefix)
        split = replace(bill.split, output_tokens=reply.output_tokens)
        uncached = split.input_tokens + split.cache_write
        counted = uncached
        if lookup_model(prefix.model).reads_count_toward_itpm:
            counted += split.cache_read
        with self._lock:
            refusal = self._limiter.admit(start, counted, reply.output_tokens)
        if refusal is not None:
            self.record(rid, wire.endpoint, start, 429, f"error:429:{refusal.limit}")
            retry = {**headers, "retry-after": str(max(1, math.ceil(refusal.retry_after)))}
            return _error(429, "rate_limit_error", refusal.message, retry, wire.platform)
        delay = settings.first_byte_delay + ttft_seconds(
            uncached, split.cache_read, settings.latency_scale
        )
        if delay > 0 and not await self._pause(delay):
            self.record(rid, wire.endpoint, start, 503, "error:503")
            return _error(503, "api_error", "the emulator is stopping", headers, wire.platform)
        with self._lock:  # the response begins: its writes become readable
            self._engine.commit(bill)
            if wire.anthropic:
                cached = split.cache_read + split.cache_write
                self._prints.remember(message_id(rid), fingerprint(prefix, cached))
        # data residency: the Claude API's field, checked (a geo of the model) when parsed
        geo = payload.get("inference_geo") if wire.anthropic else None
        entry = _billing_entry(rid, wire, bill, split, bool(payload.get("stream")), geo)
        self._bill(entry)  # as Claude bills it: whatever reaches the client from here
        model = str(payload["model"])
        if payload.get("stream"):
            events = self._stream_events(rid, wire, payload, reply, split, start, extra, geo)
            body = self._stream(events, entry, fault == "cut", gone)
            return StreamingResponse(body, headers=headers, media_type=wire.stream_media_type)
        if wire.anthropic:
            document = anthropic_body(rid, model, reply, split, extra, geo)
        else:
            created = CREATED_EPOCH + int(start)
            document = openai_body(rid, model, created, reply, self._usage(split))
        if fault == "cut":
            self._delivered(entry, "fault:cut")
            text = json.dumps(document)
            return Response(text[: len(text) // 2], 200, headers, "application/json")
        self._delivered(entry)
        return JSONResponse(document, headers=headers)

    def _counted(
        self,
        rid: str,
        wire: _Wire,
        start: float,
        document: dict[str, Any],
        headers: dict[str, str],
        cut: bool,
    ) -> Response:
        """A token count: logged, never billed; a ``cut`` fault sends half the body."""
        if cut:
            self.record(rid, wire.endpoint, start, 200, "fault:cut")
            text = json.dumps(document)
            return Response(text[: len(text) // 2], 200, headers, "application/json")
        self.record(rid, wire.endpoint, start, 200, "counted")
        return JSONResponse(document, headers=headers)

    def _reply(self, wire: _Wire, payload: Mapping[str, Any], prefix: PrefixRequest) -> Reply:
        if wire.anthropic and payload.get("max_tokens") == 0:  # a cache warm-up: no content
            return Reply("", (), "max_tokens", None, 0)
        return make_reply(reply_spec(payload, prefix), self._tokenizer.count_text)

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` wall seconds; ``False`` at once if the emulator is stopping.

        A plain sleep outlived ``stop()`` (a client that timed out leaves it running): uvicorn
        then cancelled it after its graceful-shutdown timeout and logged an ERROR traceback.
        """
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            if self.stopping:
                return False
            await asyncio.sleep(min(left, 0.05))
        return not self.stopping

    def _usage(self, split: TokenSplit) -> dict[str, Any]:
        s = self._settings
        return render_usage(split, s.dialect, s.prompt_excludes_cached)

    def _stream_events(
        self,
        rid: str,
        wire: _Wire,
        payload: Mapping[str, Any],
        reply: Reply,
        split: TokenSplit,
        start: float,
        extra: Mapping[str, Any] | None,
        geo: str | None = None,
    ) -> list[StreamEvent]:
        model = str(payload["model"])
        if wire.platform == "bedrock":
            return [
                StreamEvent(e.tag, bedrock_chunk(e.event))
                for e in anthropic_events(rid, model, reply, split, extra)
            ]
        if wire.anthropic:
            return anthropic_stream(rid, model, reply, split, extra, geo)
        options = payload.get("stream_options") or {}
        usage = self._usage(split) if options.get("include_usage") else None
        return openai_stream(rid, model, CREATED_EPOCH + int(start), reply, usage)

    async def _stream(
        self,
        events: list[StreamEvent],
        entry: BillingEntry,
        cut: bool,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[str | bytes]:
        """The stream's events, its outcome logged before its last byte.

        ``stopped`` once the client has gone (``gone``): a server may accept writes to a closed
        connection without a word, so the generator would run on to ``billed``.
        """
        if cut:  # end cleanly after some content: no finish, no usage, no [DONE]/message_stop
            content = [i for i, e in enumerate(events) if e.tag == "content"]
            stop = content[min(1, len(content) - 1)] + 1 if content else 1
            events = events[:stop]
        outcome = "fault:cut" if cut else None
        if outcome is None and not any(e.tag == "usage" for e in events):
            outcome = "no_usage"
        logged = False
        try:
            for i, event in enumerate(events):
                if gone is not None and await gone():
                    return  # logged ``stopped`` below
                if event.tag == "usage":
                    self._delivered(entry)
                    logged = True
                if outcome is not None and i == len(events) - 1:  # logged before the last byte
                    self._delivered(entry, outcome)
                    logged = True
                yield event.data  # (a client that has read it all finds the outcome logged)
        finally:
            if not logged:  # the client went away before its usage: billed all the same
                self._delivered(entry, "stopped")


class _BodyTooLarge(Exception):
    """A request body over ``MAX_BODY_BYTES`` (answered with a 413 ``request_too_large``)."""


async def _read_body(request: Request) -> bytes:
    """The request body, refused past ``MAX_BODY_BYTES`` by its Content-Length or as it comes.

    A chunked body (no Content-Length) is counted while it is read. A refused body is read on
    and discarded (up to ``_DRAIN_BYTES``, never kept) so the client, still sending, gets the 413.

    Raises:
        _BodyTooLarge: if the body is larger than ``MAX_BODY_BYTES``.

    """
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > MAX_BODY_BYTES
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if too_large or size > MAX_BODY_BYTES:
            too_large = True
            chunks.clear()
            if size > _DRAIN_BYTES:
                break
            continue
        chunks.append(chunk)
    if too_large:
        msg = (
            f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB, Claude's limit: "
            "send less (fewer or smaller documents; images by URL)"
        )
        raise _BodyTooLarge(msg)
    return b"".join(chunks)


def _check_stream_options(payload: Mapping[str, Any]) -> None:
    """Refuse a ``stream_options`` that is not an object (OpenAI answers a 400).

    Raises:
        InvalidRequest: if ``stream_options`` is present, not null and not an object.

    """
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        kind = type(options).__name__
        msg = f'stream_options: expected an object such as {{"include_usage": true}}, got {kind}'
        raise InvalidRequest(msg)


def _decode_payload(body: bytes, request: Request, wire: _Wire) -> dict[str, Any]:
    """The request's payload as Anthropic's or OpenAI's API would see it.

    Raises:
        InvalidRequest: for a body that is not an object, breaks the platform's rules, or
            (Messages paths) lacks an integer ``max_tokens`` >= 0.
        ValueError: for a body that is not JSON.
        RecursionError: for a body nested deeper than the decoder goes.

    """
    document = json.loads(body)
    payload = native_payload(
        wire.platform, document, request.path_params.get("model"), wire.path_stream
    )
    if wire.anthropic and not wire.counts:
        max_tokens = payload.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            msg = "max_tokens: Field required (an integer >= 0; 0 warms the cache, no content)"
            raise InvalidRequest(msg)
    return payload


def _billing_entry(
    rid: str,
    wire: _Wire,
    bill: CacheBill,
    split: TokenSplit,
    streamed: bool,
    inference_geo: str | None = None,
) -> BillingEntry:
    return BillingEntry(
        request_id=rid,
        model=bill.model,
        time=bill.start,
        endpoint=wire.endpoint,
        streamed=streamed,
        input_tokens=split.input_tokens,
        cache_read=split.cache_read,
        cache_write_5m=split.cache_write_5m,
        cache_write_1h=split.cache_write_1h,
        output_tokens=split.output_tokens,
        cost_usd=cost_usd(bill.model, split, inference_geo),
        hit_index=bill.hit_index,
        marker_indices=bill.marker_indices,
        write_indices=tuple(i for i, _, _ in bill.writes),
        block_count=len(bill.block_tokens),
    )


# ---------------------------------------------------------------------------------- ASGI app


class _FaultGate:
    """Outermost ASGI layer: numbers API requests, draws their fault, resets connections.

    A reset must happen before any byte is sent, below Starlette's error handling, so it lives
    here: it takes uvicorn's transport from the raw ``send`` and aborts it with ``SO_LINGER`` 0
    (a TCP RST).
    """

    def __init__(self, app: ASGIApp, core: EmulatorCore) -> None:
        self.app, self.core = app, core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wire = match_wire(scope["path"]) if scope["type"] == "http" else None
        if wire is not None and scope["method"] == "POST":
            rid, fault = self.core.next_request()
            scope[_SCOPE_ID], scope[_SCOPE_FAULT] = rid, fault
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if fault == "reset" and transport is not None:  # else: handled as a bodiless 500
                self.core.record(rid, wire.endpoint, self.core.now, None, "fault:reset")
                await _abort(transport)
                return
        await self.app(scope, receive, send)


async def _abort(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    for _ in range(3):  # let uvicorn see the connection is gone
        await asyncio.sleep(0)


EMULATOR_HEADER = (b"x-relay-emulator", b"langchain-claude-relay")
"""The header on every emulator response."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _presented_key(scope: Scope) -> str | None:
    authorization = _header(scope, b"authorization") or ""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return _header(scope, b"x-api-key") or _header(scope, b"api-key")


def _refusal(scope: Scope, require_key: str | None) -> tuple[int, str, str] | None:
    """Why a request is refused (status, error type, message), or ``None``."""
    if require_key is not None:
        presented = _presented_key(scope) or ""
        if not hmac.compare_digest(presented.encode(), require_key.encode()):
            return 401, "authentication_error", "this emulator requires its key (--require-key)"
    if not str(scope.get("path", "")).startswith("/admin"):
        return None
    origin = _header(scope, b"origin")
    host = _header(scope, b"host")
    if _header(scope, b"sec-fetch-site") == "cross-site" or (
        origin is not None and origin.rstrip("/") not in (f"http://{host}", f"https://{host}")
    ):
        return 403, "permission_error", "admin routes refuse requests from other origins"
    content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if scope.get("method") not in ("GET", "HEAD") and content_type != "application/json":
        return 415, "invalid_request_error", "admin routes take Content-Type: application/json"
    return None


class _Guard:
    """Outermost ASGI layer: names the emulator in every response, guards the admin routes.

    Args:
        app: the app behind it.
        require_key: a key every request must present (``None``: any key is accepted).
    """

    def __init__(self, app: ASGIApp, require_key: str | None) -> None:
        self.app, self.require_key = app, require_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        named = _NamedSend(send).send
        refusal = _refusal(scope, self.require_key)
        if refusal is not None:
            status, kind, text = refusal
            await _error(status, kind, text)(scope, receive, named)
            return
        await self.app(scope, receive, named)


class _NamedSend:
    """A ``send`` that adds the emulator's header.

    It keeps uvicorn's ``transport`` reachable where the fault gate looks for it
    (``send.__self__.transport``).
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self.transport = getattr(getattr(send, "__self__", None), "transport", None)

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), EMULATOR_HEADER]}
        await self._send(message)


def exposed_warning(host: str, has_key: bool) -> str:
    """The warning for an emulator bound to ``host``, an interface other than loopback."""
    guard = (
        "it requires the key given with --require-key"
        if has_key
        else "it accepts any key: pass --require-key KEY"
    )
    return (
        f"the relay emulator listens on {host}, not only on loopback: other machines can reach "
        f"its API and its /admin routes (clock, faults, settings); {guard}, or bind 127.0.0.1"
    )


def build_app(core: EmulatorCore) -> ASGIApp:
    """Build the emulator's ASGI app: Starlette routes behind the fault gate and the guard.

    The guard uses ``core.require_key`` (``None``: any key).
    """

    def api(wire: _Wire) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await core.handle(request, wire)

        return endpoint

    async def models(_: Request) -> Response:
        markup = core.settings.published_price_multiplier
        data = [
            {
                "id": f"claude-{family}",
                "object": "model",
                "created": CREATED_EPOCH,
                "owned_by": "anthropic",
                **({} if markup is None else _published_pricing(spec.prices, markup)),
            }
            for family, spec in MODEL_TABLE.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            if not isinstance(body, dict):
                msg = 'the clock takes {"set": seconds} or {"advance": seconds}'
                raise ValueError(msg)
            for key in ("set", "advance"):  # both checked before either moves the clock
                if key in body:
                    _finite_seconds(key, body[key])
            if "set" in body:
                core.set_time(body["set"])
            if "advance" in body:
                core.advance(body["advance"])
        return JSONResponse({"now": core.now})

    async def billing(_: Request) -> Response:
        return JSONResponse({"entries": [asdict(e) for e in core.billing_log]})

    async def requests(_: Request) -> Response:
        return JSONResponse({"requests": [asdict(r) for r in core.request_log]})

    async def reset(_: Request) -> Response:
        core.reset()
        return JSONResponse({"ok": True, "now": core.now})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            core.configure(**(await request.json()))
        return JSONResponse(asdict(core.settings))

    async def faults(request: Request) -> Response:
        body = await request.json()
        core.fail_next(str(body["kind"]), int(body.get("count", 1)))
        return JSONResponse({"ok": True})

    async def bad_admin_input(_: Request, exc: Exception) -> Response:
        return _error(400, "invalid_request_error", str(exc))

    async def http_error(_: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return _error(status, kind, str(getattr(exc, "detail", exc)))

    routes = [Route(path, api(wire), methods=["POST"]) for path, wire in WIRES.items()]
    routes += [
        Route("/v1/models", models, methods=["GET"]),
        Route("/admin/clock", clock, methods=["GET", "POST"]),
        Route("/admin/billing", billing, methods=["GET"]),
        Route("/admin/requests", requests, methods=["GET"]),
        Route("/admin/reset", reset, methods=["POST"]),
        Route("/admin/config", config, methods=["GET", "POST"]),
        Route("/admin/faults", faults, methods=["POST"]),
    ]
    handlers: dict[Any, Any] = {
        HTTPException: http_error,
        ValueError: bad_admin_input,
        KeyError: bad_admin_input,
        TypeError: bad_admin_input,
    }
    app = _FaultGate(Starlette(routes=routes, exception_handlers=handlers), core)
    return _Guard(app, core.require_key)


# ---------------------------------------------------------------------------------- running


class RelayEmulator:
    """The emulator on a free loopback port, in a background thread.

    >>> with RelayEmulator(dialect="openrouter") as emu:    # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=emu.base_url, api_key="test")
    ...     emu.advance(301)   # five minutes later: 5m entries have expired

    Args:
        settings: initial settings (defaults: ``EmulatorSettings()``).
        require_key: a key every request must present (``None``: any key is accepted).
        **overrides: ``EmulatorSettings`` fields overriding ``settings``.

    """

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        require_key: str | None = None,
        **overrides: Any,
    ) -> None:
        self.core = EmulatorCore(settings)
        self.core.require_key = require_key
        if overrides:
            self.core.configure(**overrides)
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (for ``openai.OpenAI(base_url=...)``)."""
        self._require_running()
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL of ``anthropic.Anthropic`` and Bedrock clients.

        (``anthropic.AnthropicVertex`` takes ``base_url``: ``.../v1``.)
        """
        self._require_running()
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:PORT/admin``."""
        self._require_running()
        return f"http://{self.host}:{self.port}/admin"

    def _require_running(self) -> None:
        if self._thread is None:
            msg = "the emulator is not running: use `with RelayEmulator() as emu:` or call start()"
            raise RuntimeError(msg)

    def start(self) -> RelayEmulator:
        """Start serving (idempotent); returns once the server accepts connections.

        Raises:
            RuntimeError: if the server did not start within 10 seconds.

        """
        if self._thread is not None:
            return self
        self.core.stopping = False
        # proto=IPPROTO_TCP and TCP_NODELAY: asyncio only sets NODELAY on accepted sockets whose
        # proto says TCP; without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = server_config(
            build_app(self.core),
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="relay-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                msg = "the relay emulator did not start (see the uvicorn log)"
                raise RuntimeError(msg)
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (at most a few seconds)."""
        self.core.stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server, self._thread = None, None

    def __enter__(self) -> RelayEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the same controls as the admin endpoints ---------------------------------------

    @property
    def settings(self) -> EmulatorSettings:
        """The settings in force."""
        return self.core.settings

    @property
    def now(self) -> float:
        """The emulator's clock (virtual seconds from 0.0)."""
        return self.core.now

    def advance(self, seconds: float) -> float:
        """Move the virtual clock forward by ``seconds``; returns the new time."""
        return self.core.advance(seconds)

    def set_time(self, t: float) -> float:
        """Set the virtual clock to ``t``; returns it."""
        return self.core.set_time(t)

    @property
    def billing_log(self) -> list[BillingEntry]:
        """A copy of the billing log."""
        return self.core.billing_log

    @property
    def request_log(self) -> list[RequestRecord]:
        """A copy of the request log."""
        return self.core.request_log

    def reset(self) -> None:
        """Forget cache entries, logs, rate windows and scripted faults; clock back to 0."""
        self.core.reset()

    def configure(self, **settings: Any) -> EmulatorSettings:
        """Change settings while running; returns the settings now in force."""
        return self.core.configure(**settings)

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Make the next ``count`` API requests fail with ``kind``."""
        self.core.fail_next(kind, count)

    def cache_entries(self) -> int:
        """How many cache entries are alive at the current time."""
        return self.core.cache_entries()


def _published_pricing(prices: ModelPrices | None, markup: float) -> dict[str, Any]:
    """OpenRouter-style ``pricing`` (USD per token, decimal strings) at ``markup`` x the table."""
    if prices is None:
        return {}
    per_token = {
        "prompt": prices.input,
        "completion": prices.output,
        "input_cache_read": prices.cache_read,
        "input_cache_write": prices.cache_write_5m,
    }
    return {"pricing": {k: f"{v * markup / 1e6:.12f}" for k, v in per_token.items()}}


def server_config(app: ASGIApp, **options: Any) -> uvicorn.Config:
    """The uvicorn settings of every emulator (thread or foreground), plus ``options``.

    h11 on the asyncio loop; idle connections kept ``KEEP_ALIVE_SECONDS`` (the client closes
    them first); a ``LISTEN_BACKLOG`` deep accept queue; no concurrency limit.
    """
    return uvicorn.Config(
        app,
        lifespan="off",
        http="h11",
        loop="asyncio",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=LISTEN_BACKLOG,
        **options,
    )


ADMIN_ROUTES = (
    "GET|POST /admin/clock",
    "GET /admin/billing",
    "GET /admin/requests",
    "POST /admin/reset",
    "GET|POST /admin/config",
    "POST /admin/faults",
)
"""The admin endpoints, as the banner lists them (a test checks each one exists)."""


class EmulatorBindError(OSError):
    """The emulator cannot listen where asked (the message says what to do)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, so a busy port fails before anything is announced.

    Raises:
        EmulatorBindError: the port is taken (``--port 0`` takes a free one) or the address is
            not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            msg = (
                f"port {port} on {host} is already in use (another emulator?): stop what holds "
                "it, or pick another port with --port N (--port 0 takes a free one)"
            )
        else:
            msg = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise EmulatorBindError(msg) from None
    sock.listen(LISTEN_BACKLOG)  # connections wait from now on, before the server runs
    return sock


def banner(host: str, port: int) -> str:
    """What a foreground emulator says once it listens: where, and the admin endpoints."""
    shown = f"[{host}]" if ":" in host else host
    root = f"http://{shown}:{port}"
    return "\n".join(
        (
            f"relay emulator on {root}/v1 (Ctrl-C to stop)",
            f"  OpenAI-compatible and Vertex: base_url={root}/v1; Anthropic, Bedrock: {root}",
            f"  admin: {', '.join(ADMIN_ROUTES)}",
        )
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 8787,
    settings: EmulatorSettings | None = None,
    *,
    access_log: bool = True,
    announce: Callable[[str], None] | None = None,
    require_key: str | None = None,
) -> None:
    """Serve the emulator in the foreground until interrupted (``claude-relay emulator``).

    Args:
        host: interface to bind (keep the loopback default unless you mean to expose it: any
            other draws a warning).
        port: TCP port (``0``: a free one).
        settings: emulator settings.
        access_log: log every request (uvicorn's access log).
        announce: called with ``banner(...)`` once the socket listens (``None``: logged).
        require_key: a key every request must present (``None``: any key is accepted).

    Raises:
        EmulatorBindError: if it cannot listen there.
    """
    sock = bind(host, port)
    port = sock.getsockname()[1]
    core = EmulatorCore(settings)
    core.require_key = require_key
    config = server_config(build_app(core), host=host, port=port, access_log=access_log)
    (announce or logging.getLogger("uvicorn.error").info)(banner(host, port))
    if not is_loopback_host(host):
        warning = exposed_warning(host, has_key=require_key is not None)
        logging.getLogger("uvicorn.error").warning("%s", warning)
    _ForegroundServer(config, core).run(sockets=[sock])


class _ForegroundServer(uvicorn.Server):
    """uvicorn's server whose Ctrl-C / SIGTERM also ends delayed answers (``core.stopping``)."""

    def __init__(self, config: uvicorn.Config, core: EmulatorCore) -> None:
        super().__init__(config)
        self._core = core

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._core.stopping = True
        super().handle_exit(sig, frame)
