"""What a relay keeps of Claude's cache markers (the probe's verdicts), stored per relay.

``RelayCapabilities`` are the verdicts ``probe.probe_relay`` reaches; ``save_capabilities`` /
``load_capabilities`` keep them per relay (hashed URL) in the state directory, trusted for a week
by default; ``adaptation_for`` turns them into what the planner should do differently on that
relay. ``ChatClaudeRelay`` reads them here; the probe that produces them lives in ``probe``.

>>> adaptation_for(None).max_markers
4
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langchain_claude_relay._env import state_dir
from langchain_claude_relay._plumbing import private_dir
from langchain_claude_relay.models import ModelPrices, ModelSpec, lookup_model, model_family
from langchain_claude_relay.request import MAX_CACHE_MARKERS

__all__ = [
    "CAPABILITIES_FILE",
    "DEFAULT_MAX_AGE_S",
    "MAX_RELAY_PRICES",
    "RelayCapabilities",
    "RelayPrice",
    "relay_prices",
    "Adaptation",
    "adaptation_for",
    "relay_key",
    "capabilities_path",
    "save_capabilities",
    "load_capabilities",
]

logger = logging.getLogger("langchain_claude_relay.probe")  # its name before the move

CAPABILITIES_FILE = "relay_capabilities.json"
"""The cache file in the state directory: ``{relay_key(url): RelayCapabilities.to_dict()}``."""
DEFAULT_MAX_AGE_S = 7 * 86400.0
"""How long saved verdicts are trusted (relays change their behaviour between versions)."""

_VERDICTS = ("keeps_block_markers", "keeps_tool_markers", "keeps_ttl", "injects_markers")
_FIELDS = (*_VERDICTS, "reports_cache_usage", "usage_fields", "model", "probed_at")
MAX_RELAY_PRICES = 500
"""Published prices kept per relay (Claude models only; no catalogue is trusted to be small)."""
_MAX_PRICE = 10_000.0  # USD per million tokens: anything above is not a real price


@dataclass(frozen=True)
class RelayPrice:
    """What a relay publishes on ``/v1/models`` for one model, in USD per million tokens.

    OpenRouter-style ``pricing`` objects give USD per token as decimal strings: ``prompt``,
    ``completion``, ``input_cache_read`` and ``input_cache_write`` (``cache_read`` /
    ``cache_write`` on newer endpoints). A missing cache price is ``None``.
    """

    model_id: str
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def prices(self, table: ModelPrices | None) -> ModelPrices:
        """Full prices: what the relay published, the rest at the model table's multiples.

        The relay's cache write is taken as the 5-minute write; the 1-hour write (which no relay
        publishes separately) and any missing cache price keep the table's ratio to input
        (Anthropic's 1.25x, 2x and 0.1x without a table row).
        """
        reference = table or ModelPrices.standard(1.0, 5.0)
        ratio = self.input / reference.input if reference.input > 0 else 0.0
        return ModelPrices(
            input=self.input,
            output=self.output,
            cache_read=self.cache_read
            if self.cache_read is not None
            else reference.cache_read * ratio,
            cache_write_5m=self.cache_write
            if self.cache_write is not None
            else reference.cache_write_5m * ratio,
            cache_write_1h=reference.cache_write_1h * ratio,
            long_context=None if table is None else table.long_context,
        )


def relay_prices(body: Any) -> tuple[RelayPrice, ...]:
    """The Claude models' prices in a relay's ``GET /v1/models`` answer (untrusted input).

    Entries that are not Claude models, have no ``pricing`` or have prices that are not finite,
    non-negative and plausible are skipped; at most ``MAX_RELAY_PRICES`` are kept.

    >>> relay_prices({"data": [{"id": "anthropic/claude-sonnet-4.5", "pricing": {
    ...     "prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003"}}]})
    ... # doctest: +NORMALIZE_WHITESPACE
    (RelayPrice(model_id='anthropic/claude-sonnet-4.5', input=3.0, output=15.0,
                cache_read=0.3, cache_write=None),)
    """
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        return ()
    found: list[RelayPrice] = []
    for entry in data[: MAX_RELAY_PRICES * 20]:
        if len(found) >= MAX_RELAY_PRICES:
            break
        model_id = entry.get("id") if isinstance(entry, Mapping) else None
        pricing = entry.get("pricing") if isinstance(entry, Mapping) else None
        if not isinstance(model_id, str) or len(model_id) > 200 or not isinstance(pricing, Mapping):
            continue
        if model_family(model_id) is None:
            continue
        prompt, completion = (
            _per_million(pricing.get("prompt")),
            _per_million(pricing.get("completion")),
        )
        if prompt is None or completion is None:
            continue
        read = pricing.get("input_cache_read", pricing.get("cache_read"))
        write = pricing.get("input_cache_write", pricing.get("cache_write"))
        found.append(
            RelayPrice(model_id, prompt, completion, _per_million(read), _per_million(write))
        )
    return tuple(found)


def _per_million(value: Any) -> float | None:
    """USD per token (a decimal string or a number) as USD per million tokens, if plausible.

    Anything else -- not a number, out of range, an integer of hundreds of digits (``float``
    overflows) -- is no price.

    >>> _per_million("0.000003"), _per_million(10**400), _per_million("1e400")
    (3.0, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        per_token = float(value)
    except (ValueError, OverflowError):
        return None
    per_million = round(per_token * 1e6, 9)
    return per_million if math.isfinite(per_million) and 0 <= per_million <= _MAX_PRICE else None


@dataclass(frozen=True)
class RelayCapabilities:
    """What a relay keeps of Claude's cache markers (``None``: the probe could not tell).

    Attributes:
        keeps_block_markers: ``cache_control`` on a content block reaches Claude.
        keeps_tool_markers: ``cache_control`` on a tool reaches Claude.
        keeps_ttl: ``"ttl": "1h"`` reaches Claude (``None``: no 5m/1h split reported, no
            write seen, or markers dropped).
        injects_markers: the relay adds cache markers of its own.
        reports_cache_usage: any cache read/write usage field was seen.
        usage_fields: dotted paths of the usage fields the relay returned (sorted).
        model: the model id probed.
        probed_at: when, in epoch seconds.
        keeps_automatic_caching: a top-level ``cache_control`` (automatic caching) reaches
            Claude.
        prices: what the relay publishes on ``/v1/models`` for Claude models (may be empty).
        reports_cache_writes: the relay's usage has a cache-write field (``False``: it reports
            reads but no writes, OpenAI's own shape, and the chat model infers the writes from
            the markers sent; ``None``: no cache read was seen to tell by, or probed before this
            verdict).
        keeps_response_format: a ``response_format`` JSON schema reaches Claude's structured
            outputs (``False``: the answer was not the JSON object asked for (free text, fenced
            or cut-off JSON, a tool call) or the relay refused the field;
            ``with_structured_output``'s default then keeps its tool; ``None``: probed with a
            model without structured outputs, or before this verdict).
    """

    keeps_block_markers: bool | None
    keeps_tool_markers: bool | None
    keeps_ttl: bool | None
    injects_markers: bool | None
    reports_cache_usage: bool
    usage_fields: tuple[str, ...]
    model: str
    probed_at: float
    keeps_automatic_caching: bool | None = None
    prices: tuple[RelayPrice, ...] = ()
    reports_cache_writes: bool | None = None
    keeps_response_format: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: booleans, field names, the model id, numbers."""
        out = asdict(self)
        out["usage_fields"] = list(self.usage_fields)
        out["prices"] = [asdict(p) for p in self.prices]
        return out

    @property
    def probed_on(self) -> str:
        """The probe's date (UTC), e.g. ``"2026-12-01"``."""
        return datetime.fromtimestamp(self.probed_at, tz=timezone.utc).strftime("%Y-%m-%d")

    def priced_spec(self, model_id: str) -> ModelSpec | None:
        """The model's spec with the prices this relay publishes for it, if it publishes any.

        The relay's entry is matched by model family (``anthropic/claude-sonnet-4.5`` prices
        ``claude-sonnet-4-5-20250929``).
        """
        family = model_family(model_id)
        if family is None:
            return None
        published = next((p for p in self.prices if model_family(p.model_id) == family), None)
        if published is None:
            return None
        spec = lookup_model(model_id)
        return replace(spec, prices=published.prices(spec.prices))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RelayCapabilities:
        """Read a dict written by ``to_dict`` (unknown keys are ignored).

        Args:
            data: the dict.

        Returns:
            The capabilities.

        Raises:
            ValueError: if a field is missing or has the wrong type.
        """
        if not isinstance(data, Mapping):
            msg = f"relay capabilities must be a JSON object, not {type(data).__name__}"
            raise ValueError(msg)
        missing = [f for f in _FIELDS if f not in data]
        if missing:
            msg = f"relay capabilities lack {', '.join(missing)}: probe the relay again"
            raise ValueError(msg)
        for name in _VERDICTS:
            if data[name] is not None and not isinstance(data[name], bool):
                msg = f"relay capabilities: {name} must be true, false or null"
                raise ValueError(msg)
        fields_ = data["usage_fields"]
        probed_at = data["probed_at"]
        if not isinstance(data["reports_cache_usage"], bool):
            msg = "relay capabilities: reports_cache_usage must be true or false"
            raise ValueError(msg)
        if not isinstance(fields_, list | tuple) or not all(isinstance(f, str) for f in fields_):
            msg = "relay capabilities: usage_fields must be a list of strings"
            raise ValueError(msg)
        if not isinstance(data["model"], str):
            msg = "relay capabilities: model must be a string"
            raise ValueError(msg)
        if (
            isinstance(probed_at, bool)
            or not isinstance(probed_at, int | float)
            or not math.isfinite(probed_at)
        ):
            msg = "relay capabilities: probed_at must be a number of epoch seconds"
            raise ValueError(msg)
        return cls(
            keeps_block_markers=data["keeps_block_markers"],
            keeps_tool_markers=data["keeps_tool_markers"],
            keeps_ttl=data["keeps_ttl"],
            injects_markers=data["injects_markers"],
            reports_cache_usage=data["reports_cache_usage"],
            usage_fields=tuple(fields_),
            model=data["model"],
            probed_at=float(probed_at),
            keeps_automatic_caching=_optional_verdict(data, "keeps_automatic_caching"),
            prices=_stored_prices(data.get("prices")),
            reports_cache_writes=_optional_verdict(data, "reports_cache_writes"),
            keeps_response_format=_optional_verdict(data, "keeps_response_format"),
        )

    def summary_lines(self) -> list[str]:
        """Human verdict lines (``keeps block markers: yes``, ``... no``, ``... unknown``)."""
        when = datetime.fromtimestamp(self.probed_at, tz=timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        return [
            f"model probed: {self.model} at {when}",
            f"keeps block markers: {_word(self.keeps_block_markers)}",
            f"keeps tool markers: {_word(self.keeps_tool_markers)}",
            f"keeps ttl (1h stays 1h): {_word(self.keeps_ttl)}",
            f"injects markers: {_word(self.injects_markers)}",
            f"keeps automatic caching (top-level cache_control): "
            f"{_word(self.keeps_automatic_caching)}",
            f"reports cache usage: {_word(self.reports_cache_usage)}",
            f"reports cache writes: {_word(self.reports_cache_writes)}",
            f"keeps response_format (structured outputs): {_word(self.keeps_response_format)}",
            f"usage fields: {', '.join(self.usage_fields) or '(none)'}",
            *_price_lines(self.prices),
        ]


def _optional_verdict(data: Mapping[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        msg = f"relay capabilities: {name} must be true, false or null"
        raise ValueError(msg)
    return value


def _stored_prices(raw: Any) -> tuple[RelayPrice, ...]:
    """Prices read back from the file (untrusted): the valid ones, at most ``MAX_RELAY_PRICES``."""
    if not isinstance(raw, list):
        return ()
    out: list[RelayPrice] = []
    for item in raw[:MAX_RELAY_PRICES]:
        if not isinstance(item, Mapping) or not isinstance(item.get("model_id"), str):
            continue
        numbers = [item.get(k) for k in ("input", "output", "cache_read", "cache_write")]
        checked = [_price_number(v) for v in numbers]
        if (
            checked[0] is None
            or checked[1] is None
            or any(v is not None and c is None for v, c in zip(numbers, checked, strict=True))
        ):
            continue
        out.append(RelayPrice(item["model_id"][:200], *checked))  # type: ignore[arg-type]
    return tuple(out)


def _price_number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and 0 <= value <= _MAX_PRICE else None


def _price_lines(prices: tuple[RelayPrice, ...]) -> list[str]:
    if not prices:
        return ["published prices (/v1/models): none"]
    shown = [
        f"  {p.model_id}: input ${p.input:g}, output ${p.output:g}, cache read "
        f"{'-' if p.cache_read is None else f'${p.cache_read:g}'}, cache write "
        f"{'-' if p.cache_write is None else f'${p.cache_write:g}'} per MTok"
        for p in prices[:10]
    ]
    more = [f"  ... {len(prices) - 10} more"] if len(prices) > 10 else []
    return [
        f"published prices (/v1/models), used for cost_usd: {len(prices)} model(s)",
        *shown,
        *more,
    ]


def _word(verdict: bool | None) -> str:
    return "unknown" if verdict is None else "yes" if verdict else "no"


@dataclass(frozen=True)
class Adaptation:
    """What the planner should do on a relay, given its probed capabilities.

    Attributes:
        caching: ``False`` when the relay drops markers (planning them is useless).
        ttl_policy: ``"5m"`` when the relay drops ``ttl`` (never plan a 1h write the relay turns
            into a 5m one); ``None`` for no constraint.
        max_markers: markers the planner may place: 4, less one if the relay adds its own.
        mark_tools: ``False`` when the relay drops markers on tools.
        warnings: one sentence per adaptation, naming the relay verdict behind it.
        automatic: the relay drops block markers but keeps a top-level ``cache_control``: send
            that instead (automatic caching: Claude marks the last block), the only caching
            that reaches Claude through it.
    """

    caching: bool
    ttl_policy: str | None
    max_markers: int
    mark_tools: bool
    warnings: tuple[str, ...] = field(default=())
    automatic: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out


def adaptation_for(caps: RelayCapabilities | None) -> Adaptation:
    """What to do differently on a relay with these capabilities (pure; ``None``: nothing).

    Only a ``False`` (or, for injection, ``True``) verdict changes anything: "unknown" keeps the
    defaults, since a marker that turns out useless costs nothing but its slot.

    Args:
        caps: the probed capabilities, or ``None`` when the relay was never probed.

    Returns:
        The adaptation.

    >>> caps = RelayCapabilities(True, False, False, True, True, (), "claude-sonnet-4-6", 0.0)
    >>> a = adaptation_for(caps)
    >>> (a.caching, a.ttl_policy, a.max_markers, a.mark_tools, len(a.warnings))
    (True, '5m', 3, False, 3)
    """
    if caps is None:
        return Adaptation(
            caching=True, ttl_policy=None, max_markers=MAX_CACHE_MARKERS, mark_tools=True
        )
    notes: list[str] = []
    caching = caps.keeps_block_markers is not False
    automatic = not caching and caps.keeps_automatic_caching is True
    if automatic:
        notes.append(
            "The relay drops cache_control on blocks but keeps a top-level cache_control (probe: "
            "keeps block markers = no, keeps automatic caching = yes), so automatic caching is "
            "sent instead of planned markers: Claude marks the last block of each request."
        )
    elif not caching:
        notes.append(
            "The relay drops cache_control markers (probe: keeps block markers = no), so prompt "
            "caching is off for it: planned markers would never reach Claude."
        )
    ttl_policy = "5m" if caps.keeps_ttl is False else None
    if ttl_policy is not None:
        notes.append(
            "The relay drops the cache_control ttl (probe: keeps ttl = no), so only 5-minute "
            "markers are planned: a 1h write would silently become a 5m one."
        )
    max_markers = MAX_CACHE_MARKERS - (1 if caps.injects_markers else 0)
    if caps.injects_markers:
        notes.append(
            f"The relay adds a cache marker of its own (probe: injects markers = yes), so at "
            f"most {max_markers} markers are planned to stay within Claude's "
            f"{MAX_CACHE_MARKERS}."
        )
    mark_tools = caps.keeps_tool_markers is not False
    if not mark_tools:
        notes.append(
            "The relay drops cache_control on tools (probe: keeps tool markers = no), so tool "
            "definitions are not marked: the first marker goes on the system prompt or later."
        )
    if caps.reports_cache_writes is False and (caching or automatic):
        notes.append(
            "The relay reports cache reads but no cache writes (probe: reports cache writes = "
            "no), so Claude's writes (1.25x input for 5m, 2x for 1h) are inferred from the "
            "markers sent: cost_usd, usage_metadata, track_costs and the ledger are estimates "
            "there (response_metadata cache_writes_estimated)."
        )
    return Adaptation(caching, ttl_policy, max_markers, mark_tools, tuple(notes), automatic)


def relay_key(base_url: str) -> str:
    """The cache key of a relay: SHA-256 of its base URL (trailing ``/`` ignored), 32 hex digits.

    >>> relay_key("http://127.0.0.1:8787/v1") == relay_key("http://127.0.0.1:8787/v1/")
    True
    """
    return hashlib.sha256(base_url.strip().rstrip("/").encode()).hexdigest()[:32]


def capabilities_path(directory: Path | None = None) -> Path:
    """``relay_capabilities.json`` in ``directory`` (default: the package's state directory)."""
    return Path(directory if directory is not None else state_dir()) / CAPABILITIES_FILE


def _read_table(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        msg = "not a JSON object"
        raise ValueError(msg)
    return data


def save_capabilities(
    base_url: str, caps: RelayCapabilities, directory: Path | None = None
) -> None:
    """Save a relay's capabilities (hashed URL -> verdicts), replacing the file atomically.

    The file is ``0600`` in a ``0700`` directory (like the rest of the saved state).

    Other relays' entries are kept; an unreadable file is replaced (with a warning).

    Args:
        base_url: the relay's base URL (only its hash is stored).
        caps: the capabilities.
        directory: where (default: ``$CLAUDE_RELAY_STATE_DIR`` or the user cache directory).

    Raises:
        OSError: if the directory or the file cannot be written.
    """
    path = capabilities_path(directory)
    private_dir(path.parent)  # 0700 whatever the umask; the file itself is mkstemp's 0600
    try:
        table = _read_table(path)
    except FileNotFoundError:
        table = {}
    except Exception as exc:  # a corrupt cache is replaced, never fatal
        logger.warning(
            "the relay capability cache %s was unreadable (%s) and is replaced",
            path,
            type(exc).__name__,
        )
        table = {}
    table[relay_key(base_url)] = caps.to_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{CAPABILITIES_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(table, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_capabilities(
    base_url: str,
    directory: Path | None = None,
    *,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    now: float | None = None,
) -> RelayCapabilities | None:
    """A relay's saved capabilities, if probed less than ``max_age_s`` ago. Never raises.

    Args:
        base_url: the relay's base URL.
        directory: where (default: ``$CLAUDE_RELAY_STATE_DIR`` or the user cache directory).
        max_age_s: older verdicts are ignored (the relay may have changed).
        now: the current epoch seconds (default: the wall clock).

    Returns:
        The capabilities, or ``None`` when there are none, they are too old, or the file is
        unreadable (one warning is logged then).
    """
    path = capabilities_path(directory)
    try:
        entry = _read_table(path).get(relay_key(base_url))
        if entry is None:
            return None
        caps = RelayCapabilities.from_dict(entry)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt cache only means probing again
        logger.warning(
            "the relay capability cache %s is unreadable (%s: %s); run `claude-relay probe` "
            "to probe the relay again",
            path,
            type(exc).__name__,
            exc,
        )
        return None
    current = time.time() if now is None else now
    if current - caps.probed_at > max_age_s:
        return None
    return caps
