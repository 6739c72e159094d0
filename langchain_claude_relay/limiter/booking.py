"""Rate limiting of whole calls: what a call books on a ``RateLimiter``, and how it settles.

The limiters hold the token buckets; this module holds what is about one chat call:

* which limits a setting means (:func:`resolve_limits`) and which account's limiter a model
  shares (:func:`relay_limiter_key`);
* what a call books (:func:`token_estimates`): its counted input -- the plan's estimate minus the
  cache reads it predicts, since reads do not count toward ITPM on most models -- and its output;
* how a booking is closed (:func:`release`): settled with the relay's usage, settled with the
  estimate after a 429, or cancelled when nothing was sent.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from langchain_claude_relay.errors import RateLimitError, RequestValidationError
from langchain_claude_relay.limiter.buckets import RateLimits, Reservation, preset_limits
from langchain_claude_relay.limiter.local import RateLimiter
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.request import Block, ClaudeRequest, Tool
from langchain_claude_relay.tokens import TokenEstimator, block_parts, tool_parts
from langchain_claude_relay.usage import NormalizedUsage

if TYPE_CHECKING:
    from langchain_claude_relay.planner.plan import CachePlan

__all__ = [
    "DEFAULT_OUTPUT_ESTIMATE",
    "LIMIT_FIELDS",
    "CallOutcome",
    "Booking",
    "resolve_limits",
    "relay_limiter_key",
    "rough_input_tokens",
    "token_estimates",
    "failure_outcome",
    "reserve",
    "areserve",
    "release",
]

logger = logging.getLogger("langchain_claude_relay.limiting")  # its name before the move

DEFAULT_OUTPUT_ESTIMATE = 1024
"""Output tokens a rate-limiter reservation books when ``max_tokens`` is not set.

About a long reply; ``settle`` replaces it with the real count after the call, so it only
decides how early a call may start when an output-tokens-per-minute limit is set. Set
``max_tokens`` to book a hard bound instead."""

LIMIT_FIELDS = ("rpm", "itpm", "otpm")
"""The limits a dict of ``rate_limits`` may name."""

CallOutcome = Literal["answered", "refused", "unsent"]
"""How a call ended, for its rate-limiter booking (see :func:`release`)."""


@dataclass(frozen=True)
class Booking:
    """A call's reservation on a limiter, to be closed with :func:`release`."""

    limiter: RateLimiter
    reservation: Reservation


def resolve_limits(limits: str | RateLimits | Mapping[str, Any]) -> RateLimits:
    """A preset name, a ``RateLimits`` or a dict of ``rpm``/``itpm``/``otpm`` as ``RateLimits``.

    Args:
        limits: the setting.

    Returns:
        The limits.

    Raises:
        RequestValidationError: for an unknown preset or limit name.

    >>> resolve_limits({"rpm": 50})
    RateLimits(rpm=50, itpm=None, otpm=None)
    """
    if isinstance(limits, str):
        return preset_limits(limits)
    if isinstance(limits, RateLimits):
        return limits
    unknown = sorted(set(limits) - set(LIMIT_FIELDS))
    if unknown:
        msg = f"unknown rate limit(s) {unknown}: use {list(LIMIT_FIELDS)}"
        raise RequestValidationError(msg)
    return RateLimits(**{name: limits.get(name) for name in LIMIT_FIELDS})


def relay_limiter_key(
    base_url: str | None,
    api_key: SecretStr | str | None,
    limits: str | RateLimits | Mapping[str, Any],
) -> str:
    """The ``shared_limiter`` key of one relay account and one set of limits.

    Limits belong to the account behind a key, so the key names the account by a hash of the
    base URL and the API key (never the key itself), followed by the limits as numbers:
    ``"tier1"`` and ``RateLimits(rpm=50, itpm=40_000)`` share a limiter.

    Args:
        base_url: the relay base URL (a trailing ``/`` is ignored).
        api_key: the relay key.
        limits: a preset name, a ``RateLimits`` or a dict of ``rpm``/``itpm``/``otpm``.

    Returns:
        ``"claude-relay:<16 hex>|rpm=50,itpm=40000"``.

    Raises:
        RequestValidationError: for an unknown preset or limit name.

    >>> relay_limiter_key("https://relay.example/v1/", "sk-x", "tier1").split("|")[1]
    'rpm=50,itpm=40000'
    """
    resolved = resolve_limits(limits)
    secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else (api_key or "")
    account = hashlib.sha256(f"{(base_url or '').rstrip('/')}\n{secret}".encode()).hexdigest()[:16]
    label = ",".join(
        f"{name}={value:g}" for name, value in asdict(resolved).items() if value is not None
    )
    return f"claude-relay:{account}|{label}"


_estimator: TokenEstimator | None = None


def rough_input_tokens(request: ClaudeRequest, token_ratio: float) -> int:
    """Input tokens of a request without a plan (``cache="off"``): tiktoken times the prior.

    Args:
        request: the request.
        token_ratio: Claude tokens per tiktoken token for the model (its prior).

    Returns:
        The estimate (media counted as they are, not scaled).
    """
    global _estimator
    if _estimator is None:
        _estimator = TokenEstimator()
    total = 0.0
    sources: list[Tool | Block] = [*request.tools, *request.system]
    sources += [block for message in request.messages for block in message.content]
    for source in sources:
        parts = tool_parts(source) if isinstance(source, Tool) else block_parts(source)
        prose, tool_text, media = _estimator.count_parts(parts)
        total += (prose + tool_text) * token_ratio + media
    return round(total)


def token_estimates(
    model: str,
    request: ClaudeRequest,
    plan: CachePlan | None,
    payload: Mapping[str, Any],
    warmed: frozenset[str] = frozenset(),
) -> tuple[int, int]:
    """What a call books on the limiter: counted input and output tokens.

    Counted input is the plan's calibrated total minus the tokens it predicts to read (cache
    reads do not count toward ITPM), or the whole total for models whose reads count. Prefixes a
    batch warm-up has just written (``warmed``) are read too, although the planner has not seen
    that response's usage yet. Output is ``max_tokens`` or ``DEFAULT_OUTPUT_ESTIMATE``.

    Args:
        model: the model id.
        request: the request as sent (markers applied).
        plan: its cache plan (``None``: caching off, the input is estimated roughly).
        payload: the wire payload (for ``max_tokens``/``max_completion_tokens``).
        warmed: prefix hashes already written by the batch's warm-ups.

    Returns:
        ``(counted input tokens, output tokens)``.
    """
    spec = lookup_model(model)
    if plan is None:
        total, read = rough_input_tokens(request, spec.token_ratio_prior), 0
    else:
        total, read = plan.total_estimated_tokens, plan.predicted_read_tokens
        warm = [bp.estimated_prefix_tokens for bp in plan.breakpoints if bp.prefix_hash in warmed]
        read = max([read, *warm])
    counted = total if spec.reads_count_toward_itpm else max(0, total - read)
    limit = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return counted, limit
    return counted, DEFAULT_OUTPUT_ESTIMATE


def failure_outcome(exc: BaseException) -> CallOutcome:
    """How a call that raised ``exc`` before any response ended: a 429 is ``"refused"``."""
    return "refused" if isinstance(exc, RateLimitError) else "unsent"


def _wait_bound(max_wait: float | None) -> dict[str, Any]:
    # Only when given: a RateLimiter subclass of the user's may predate ``max_wait``.
    return {} if max_wait is None else {"max_wait": max_wait}


def reserve(
    limiter: RateLimiter, estimates: tuple[int, int], *, max_wait: float | None = None
) -> Booking:
    """Book a call's counted input and output, waiting for the buckets if needed.

    LangChain has already counted the request toward RPM (its ``acquire(blocking=True)``
    before ``_generate``/``_stream``), so the booking has ``count_request=False``.

    Args:
        limiter: the limiter.
        estimates: ``(counted input tokens, output tokens)`` from :func:`token_estimates`.
        max_wait: the longest wait allowed (the call's deadline, ``call_timeout``); ``None``:
            as long as the buckets say.

    Returns:
        The booking.

    Raises:
        APITimeoutError: if the wait would be longer than ``max_wait`` (nothing is booked).
    """
    estimated_input, estimated_output = estimates
    reservation = limiter.acquire(
        estimated_input, estimated_output, count_request=False, **_wait_bound(max_wait)
    )
    return Booking(limiter, reservation)


async def areserve(
    limiter: RateLimiter, estimates: tuple[int, int], *, max_wait: float | None = None
) -> Booking:
    """Async :func:`reserve` (waits with ``asyncio.sleep``, never blocking the loop).

    Args:
        limiter: the limiter.
        estimates: ``(counted input tokens, output tokens)`` from :func:`token_estimates`.
        max_wait: as for :func:`reserve`.

    Returns:
        The booking.

    Raises:
        APITimeoutError: as for :func:`reserve`.
    """
    estimated_input, estimated_output = estimates
    reservation = await limiter.aacquire(
        estimated_input, estimated_output, count_request=False, **_wait_bound(max_wait)
    )
    return Booking(limiter, reservation)


def release(
    booking: Booking | None, outcome: CallOutcome, usage: NormalizedUsage | None, model: str
) -> None:
    """Close a booking: settle it with what the relay counted, or cancel it.

    ``"answered"``: settled with the response's usage, or with the estimate when none came
    back (a relay that reports none, a stream cut after it began: the relay counted the call
    by an amount we cannot know). ``"refused"`` (a 429): settled with the estimate although
    nothing was billed -- the relay had no room, so our buckets are ahead of its window (a
    sliding window, or another client on the same key); keeping the booking spaces out the
    calls queued behind it instead of sending them into the same wall. ``"unsent"`` (any
    other failure before a response): cancelled, request and tokens given back.

    Bookkeeping never fails a user's call: a limiter error is logged (its type only).

    Args:
        booking: the call's booking (``None``: no limiter, nothing to do).
        outcome: how the call ended.
        usage: the response's usage, if it was read.
        model: the model id (the limiter counts reads per model).
    """
    if booking is None:
        return
    limiter, reservation = booking.limiter, booking.reservation
    try:
        if outcome == "unsent":
            limiter.cancel(reservation)
            return
        settled = usage if outcome == "answered" else None
        if settled is None:
            settled = NormalizedUsage(
                input_tokens=reservation.input_tokens,
                cache_read_tokens=0,
                cache_write_5m_tokens=0,
                cache_write_1h_tokens=0,
                output_tokens=reservation.output_tokens,
            )
        limiter.settle(reservation, settled, model)
    except Exception as exc:  # bookkeeping must never fail a user's call
        logger.warning("rate limiter bookkeeping failed: %s", type(exc).__name__)
