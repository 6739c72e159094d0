"""The relay capability probe: what a relay keeps of Claude's cache markers, and what to do.

Relays differ in what they pass on: some drop ``cache_control``, some drop its ``ttl`` (a 1h
write silently becomes a 5m one), some add markers of their own (pushing a request over Claude's
4). ``probe_relay`` tells, with a few small requests; ``save_capabilities``/``load_capabilities``
keep the verdicts per relay (for a week by default); ``adaptation_for`` turns them into what the
planner should do differently.

The probe's requests (``max_tokens=1``, caching ``"off"`` so exactly these markers are sent). Each
long text starts with a fresh random nonce, so nothing is cached before; "long" is 1.5x the
model's minimum cacheable prefix, in plain words (each at least one token):

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

Verdicts are ``None`` ("cannot tell") when the relay reports no cache usage at all. A call that
fails for any other reason (network, key, another 400) raises its typed error: the probe never
hides a broken setup.

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
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_claude_relay.errors import BadRequestError
from langchain_claude_relay.models import lookup_model, price_table
from langchain_claude_relay.request import MAX_CACHE_MARKERS
from langchain_claude_relay.store import default_state_dir
from langchain_claude_relay.usage import normalize_usage

if TYPE_CHECKING:
    from langchain_claude_relay.chat_models import ChatClaudeRelay

__all__ = [
    "CAPABILITIES_FILE",
    "DEFAULT_MAX_AGE_S",
    "PROBE_LENGTH_FACTOR",
    "RelayCapabilities",
    "Adaptation",
    "adaptation_for",
    "probe_relay",
    "aprobe_relay",
    "probe_text_tokens",
    "relay_key",
    "capabilities_path",
    "save_capabilities",
    "load_capabilities",
]

logger = logging.getLogger(__name__)

CAPABILITIES_FILE = "relay_capabilities.json"
"""The cache file in the state directory: ``{relay_key(url): RelayCapabilities.to_dict()}``."""
DEFAULT_MAX_AGE_S = 7 * 86400.0
"""How long saved verdicts are trusted (relays change their behaviour between versions)."""
PROBE_LENGTH_FACTOR = 1.5
"""A probe's long text is this many times the model's minimum cacheable prefix."""

_FILLER = ("river", "stone", "green", "table", "light", "north", "paper", "music", "water", "cloud")
_QUESTIONS = ("Reply with the single word: ok.", "Reply with the single word: yes.")
_VERDICTS = ("keeps_block_markers", "keeps_tool_markers", "keeps_ttl", "injects_markers")
_FIELDS = (*_VERDICTS, "reports_cache_usage", "usage_fields", "model", "probed_at")
_MARKER_WORDS = re.compile(r"cache[_ ]control|cache marker|breakpoint", re.I)
_LIMIT_WORDS = re.compile(r"maximum|at most|more than|too many|exceed|limit", re.I)
_TTL_ORDER = re.compile(r"ttl.*(order|after|before)", re.I | re.S)


# ----------------------------------------------------------------------------- verdicts


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
    """

    keeps_block_markers: bool | None
    keeps_tool_markers: bool | None
    keeps_ttl: bool | None
    injects_markers: bool | None
    reports_cache_usage: bool
    usage_fields: tuple[str, ...]
    model: str
    probed_at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: booleans, field names, the model id and a number."""
        out = asdict(self)
        out["usage_fields"] = list(self.usage_fields)
        return out

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
        )

    def summary_lines(self) -> list[str]:
        """Human verdict lines (``keeps block markers: yes``, ``... no``, ``... unknown``)."""
        when = datetime.fromtimestamp(self.probed_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return [
            f"model probed: {self.model} at {when}",
            f"keeps block markers: {_word(self.keeps_block_markers)}",
            f"keeps tool markers: {_word(self.keeps_tool_markers)}",
            f"keeps ttl (1h stays 1h): {_word(self.keeps_ttl)}",
            f"injects markers: {_word(self.injects_markers)}",
            f"reports cache usage: {_word(self.reports_cache_usage)}",
            f"usage fields: {', '.join(self.usage_fields) or '(none)'}",
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
    """

    caching: bool
    ttl_policy: str | None
    max_markers: int
    mark_tools: bool
    warnings: tuple[str, ...] = field(default=())

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
    if not caching:
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
    return Adaptation(caching, ttl_policy, max_markers, mark_tools, tuple(notes))


# ----------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class _Call:
    """One probe request: messages, tools, and whether a 400 about markers is a finding."""

    messages: tuple[BaseMessage, ...]
    tools: tuple[dict[str, Any], ...] = ()
    may_be_refused: bool = False


@dataclass(frozen=True)
class _Answer:
    """What one probe request told: cache tokens by kind, or the 400 that refused it."""

    raw_usage: Mapping[str, Any] | None = None
    read: int = 0
    write: int = 0
    write_1h: int = 0
    split_known: bool = False
    refused: BadRequestError | None = None

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


def _probe_steps(words: int) -> Generator[_Call, _Answer, _Findings]:
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
    )


def _error_text(exc: BadRequestError) -> str:
    return f"{exc} {exc.body_excerpt}"


def _is_marker_limit(exc: BadRequestError) -> bool:
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
        write=int(details.get("cache_creation") or 0),
        write_1h=int(details.get("ephemeral_1h_input_tokens") or 0),
        split_known=normalize_usage(raw_usage).write_split_known if raw_usage else False,
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
    return {"tools": list(call.tools)} if call.tools else {}


def _capabilities(findings: _Findings, model: str, at: float) -> RelayCapabilities:
    return RelayCapabilities(**asdict(findings), model=model, probed_at=at)


def probe_relay(
    llm: ChatClaudeRelay, *, clock: Callable[[], float] = time.time
) -> RelayCapabilities:
    """Probe what the relay behind ``llm`` keeps of cache markers (8 small requests).

    Args:
        llm: a configured model (its base URL, key, headers, HTTP clients, rate limiter and
            model id are used; caching, the ledger and ``max_tokens`` are overridden).
        clock: epoch seconds, for ``probed_at``.

    Returns:
        The relay's capabilities.

    Raises:
        ClaudeRelayError: a typed error (connection, key, status) when a request fails for
            any reason but the marker rules the probe is testing.
    """
    model = _probe_model(llm)
    steps = _probe_steps(probe_text_tokens(model.model_name))
    try:
        call = next(steps)
        while True:
            try:
                answer = _answer_from(model.invoke(list(call.messages), **_kwargs(call)))
            except BadRequestError as exc:
                answer = _refusal(call, exc)
            call = steps.send(answer)
    except StopIteration as done:
        return _capabilities(done.value, model.model_name, clock())


def _refusal(call: _Call, exc: BadRequestError) -> _Answer:
    """A 400 is a finding only on a call that tests a marker rule; elsewhere it is raised."""
    if not call.may_be_refused:
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
    steps = _probe_steps(probe_text_tokens(model.model_name))
    try:
        call = next(steps)
        while True:
            try:
                message = await model.ainvoke(list(call.messages), **_kwargs(call))
                answer = _answer_from(message)
            except BadRequestError as exc:
                answer = _refusal(call, exc)
            call = steps.send(answer)
    except StopIteration as done:
        return _capabilities(done.value, model.model_name, clock())


# ----------------------------------------------------------------------------- the cache file


def relay_key(base_url: str) -> str:
    """The cache key of a relay: SHA-256 of its base URL (trailing ``/`` ignored), 32 hex digits.

    >>> relay_key("http://127.0.0.1:8787/v1") == relay_key("http://127.0.0.1:8787/v1/")
    True
    """
    return hashlib.sha256(base_url.strip().rstrip("/").encode()).hexdigest()[:32]


def capabilities_path(directory: Path | None = None) -> Path:
    """``relay_capabilities.json`` in ``directory`` (default: the package's state directory)."""
    return Path(directory if directory is not None else default_state_dir()) / CAPABILITIES_FILE


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

    Other relays' entries are kept; an unreadable file is replaced (with a warning).

    Args:
        base_url: the relay's base URL (only its hash is stored).
        caps: the capabilities.
        directory: where (default: ``$CLAUDE_RELAY_STATE_DIR`` or the user cache directory).

    Raises:
        OSError: if the directory or the file cannot be written.
    """
    path = capabilities_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
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
