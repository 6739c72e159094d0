"""A ledger entry: one chat call's token counts, cost and cache facts, as numbers and hashes.

An entry never holds prompt text, keys or URLs: prefix hashes and the relay URL's hash are hex
digests, checked on construction (``LedgerEntry.from_usage`` sanitizes instead of refusing).

An entry carries what its cost was computed from: the token counts by kind, the model, and the
price multiplier applied to every token kind (data residency: ``inference_geo == "us"`` is 1.1x on
Opus 4.6, Sonnet 4.6 and later), with the geo the API reported. An entry written before these
fields existed reads as ``inference_geo=None`` and ``price_multiplier=1.0``: what it was priced at.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from langchain_claude_relay.cost import call_cost_usd, price_multiplier, uncached_cost_usd
from langchain_claude_relay.ledger.checks import (
    _HEX,
    _LABEL,
    REASON,
    check_count,
    check_geo,
    check_multiplier,
    check_number,
    is_reason,
    safe_count,
    safe_hash,
    safe_label,
    type_name,
)
from langchain_claude_relay.models import ModelSpec, model_family
from langchain_claude_relay.usage import InputTotals, NormalizedUsage

_COUNT_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "predicted_read_tokens",
)


@dataclass(frozen=True)
class LedgerEntry(InputTotals):
    """One chat call as the ledger keeps it: numbers and hashes, never prompt text or keys.

    Attributes:
        call_id: an id for the call (the relay's response id or a random one).
        timestamp: when the call started, in seconds (from the injected clock).
        model: the model id as the relay spells it.
        input_tokens: plain (uncached) input tokens.
        cache_read_tokens: input tokens read from the cache.
        cache_write_5m_tokens: input tokens written with the 5-minute TTL.
        cache_write_1h_tokens: input tokens written with the 1-hour TTL.
        output_tokens: output tokens.
        cost_usd: the call's cost with cache prices, ``None`` if the model is unpriced.
        uncached_cost_usd: the same tokens without caching, ``None`` if unpriced.
        predicted_read_tokens: the tokens the planner expected to read (``None``: no prediction).
        written_prefixes: prefix hashes (hex) the call wrote at: its markers beyond the read.
        read_prefix: the prefix hash the read is attributed to, if known.
        miss_reason: a short code for why an expected read did not happen, if known.
        base_url_hash: ``hash_base_url(relay URL)``; never the URL itself.
        keep_alive: whether this was a keep-alive request (``keep_warm="auto"``): spend of
            its own, not a call of the user's (see ``ledger.summarize``).
        estimated: whether the counts are the planner's estimate rather than the relay's
            usage: a stream stopped before its usage came (the consumer broke off, or the
            relay cut it) is billed all the same, and is recorded from its plan.
        inference_geo: where inference ran, as the usage reported it (``"us"``,
            ``"global"``); ``None`` when not reported (and in entries from before the field).
        price_multiplier: the factor ``cost_usd`` and ``uncached_cost_usd`` applied to every
            token kind's price (1.1 for a US-only call on the models it applies to; 1.0 for
            every other call and for entries from before the field): with the counts and the
            model's prices it recomputes the cost (``ledger.waste.write_premium`` does).

    Raises:
        ValueError: (on construction) for a negative or non-integer count, a negative or
            non-finite cost or timestamp, or a hash that is not hex (text is refused, so prompt
            text cannot end up in the ledger by mistake). ``from_usage`` sanitizes instead.

    """

    call_id: str
    timestamp: float
    model: str
    input_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int
    cost_usd: float | None
    uncached_cost_usd: float | None
    predicted_read_tokens: int | None = None
    written_prefixes: tuple[str, ...] = ()
    read_prefix: str | None = None
    miss_reason: str | None = None
    base_url_hash: str | None = None
    keep_alive: bool = False
    estimated: bool = False
    inference_geo: str | None = None
    price_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if type(self.written_prefixes) is not tuple:
            object.__setattr__(self, "written_prefixes", tuple(self.written_prefixes))
        for name in ("call_id", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _LABEL.fullmatch(value):
                msg = (
                    f"LedgerEntry.{name} must be 1-200 printable ASCII characters, "
                    f"got {type_name(value)}"
                )
                raise ValueError(msg)
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if value is not None or name != "predicted_read_tokens":
                check_count(name, value)
        for name in ("timestamp", "cost_usd", "uncached_cost_usd"):
            value = getattr(self, name)
            if value is not None or name == "timestamp":
                check_number(name, value)
        for value in (*self.written_prefixes, self.read_prefix, self.base_url_hash):
            if value is not None and not (isinstance(value, str) and _HEX.fullmatch(value)):
                msg = (
                    "LedgerEntry prefix and URL hashes must be 8-128 lowercase hex digits "
                    f"(the ledger never stores text), got {type_name(value)}"
                )
                raise ValueError(msg)
        for name in ("keep_alive", "estimated"):
            if not isinstance(getattr(self, name), bool):
                msg = f"LedgerEntry.{name} must be a bool, got {type_name(getattr(self, name))}"
                raise ValueError(msg)
        check_geo("inference_geo", self.inference_geo)
        check_multiplier("price_multiplier", self.price_multiplier)
        if self.miss_reason is not None and not is_reason(self.miss_reason):
            msg = (
                "LedgerEntry.miss_reason must be a short code (1-80 printable ASCII characters), "
                f"got {type_name(self.miss_reason)}"
            )
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-able dict (``written_prefixes`` as a list)."""
        out = asdict(self)
        out["written_prefixes"] = list(self.written_prefixes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        """Rebuild an entry from ``to_dict()`` output.

        Args:
            data: the dict (unknown keys are ignored).

        Returns:
            The entry.

        Raises:
            ValueError: if a field is missing or invalid.

        """
        names = cls.__dataclass_fields__
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            msg = f"not a ledger entry: {exc}"
            raise ValueError(msg) from exc

    @classmethod
    def from_usage(
        cls,
        usage: NormalizedUsage,
        *,
        model: str,
        timestamp: float,
        call_id: str | None = None,
        base_url: str | None = None,
        predicted_read_tokens: int | None = None,
        written_prefixes: Iterable[str] = (),
        read_prefix: str | None = None,
        miss_reason: str | None = None,
        pricing: ModelSpec | None = None,
        keep_alive: bool = False,
        estimated: bool = False,
    ) -> LedgerEntry:
        """Build an entry from a call's normalized usage, pricing it; never raises on labels.

        Costs come from ``cost.call_cost_usd`` / ``uncached_cost_usd`` (``None`` for a model
        that is not a priced Claude model), at the usage's ``inference_geo`` multiplier, which
        is kept with the geo (1.0 for a model that is not a Claude model). Labels are made
        safe rather than refused: an id or model with characters outside printable ASCII has
        them replaced and is cut to 200 characters, a miss reason to 80; a prefix that is not a
        hex hash is replaced by its SHA-256 (so equal prefixes still match and no text is
        stored); a negative or non-integer prediction becomes ``None``.

        Args:
            usage: the call's normalized usage.
            model: the model id as the relay spells it.
            timestamp: when the call started (seconds, from the injected clock).
            call_id: the call's id; a random one when ``None``.
            base_url: the relay URL; only ``hash_base_url(base_url)`` is kept.
            predicted_read_tokens: what the planner expected to read.
            written_prefixes: prefix hashes the call wrote at.
            read_prefix: the prefix hash the read is attributed to.
            miss_reason: why an expected read did not happen.
            pricing: the spec to price with (a relay's published prices), instead of the
                model table's for ``model``.
            keep_alive: whether it was a keep-alive request.
            estimated: whether ``usage`` is the planner's estimate (a stream stopped early).

        Returns:
            The entry.

        Raises:
            ValueError: if ``timestamp`` is negative or not finite.

        """
        priced_at: str | ModelSpec = pricing if pricing is not None else model
        priced = pricing is not None or family_of(model) is not None
        return cls(
            call_id=safe_label(call_id or uuid.uuid4().hex, _LABEL, 200),
            timestamp=float(timestamp),
            model=safe_label(model, _LABEL, 200),
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=call_cost_usd(usage, priced_at) if priced else None,
            uncached_cost_usd=uncached_cost_usd(usage, priced_at) if priced else None,
            predicted_read_tokens=safe_count(predicted_read_tokens),
            written_prefixes=tuple(safe_hash(p) for p in written_prefixes),
            read_prefix=None if read_prefix is None else safe_hash(read_prefix),
            miss_reason=None if miss_reason is None else safe_label(miss_reason, REASON, 80),
            base_url_hash=None if base_url is None else _cached_url_hash(base_url),
            keep_alive=keep_alive,
            estimated=estimated,
            inference_geo=usage.inference_geo,
            price_multiplier=price_multiplier(usage, priced_at) if priced else 1.0,
        )


def hash_base_url(base_url: str) -> str:
    """Hash a relay URL without its credentials: 16 hex digits.

    User info (``user:password@``), the query string and the fragment are dropped before
    hashing, and scheme and host are lower-cased, so the same relay always hashes the same and a
    key in the URL never reaches the ledger.

    >>> hash_base_url("https://u:sk-secret@Relay.example.com/v1/?key=x") == hash_base_url(
    ...     "https://relay.example.com/v1")
    True

    Args:
        base_url: the relay's base URL.

    Returns:
        The hash.

    """
    parts = urlsplit(base_url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    canonical = f"{parts.scheme.lower()}://{host}{'' if port is None else f':{port}'}"
    canonical += parts.path.rstrip("/")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


family_of = functools.lru_cache(maxsize=1024)(model_family)
_cached_url_hash = functools.lru_cache(maxsize=64)(hash_base_url)


def require_entry(entry: object) -> None:
    """Refuse anything but a ``LedgerEntry`` (what a ledger's ``record`` accepts).

    Raises:
        TypeError: if ``entry`` is not a ``LedgerEntry``.

    """
    if not isinstance(entry, LedgerEntry):
        msg = f"a ledger records LedgerEntry objects, got {type(entry).__name__}"
        raise TypeError(msg)
