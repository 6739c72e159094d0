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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langchain_claude_relay._env import state_dir
from langchain_claude_relay._plumbing import private_dir
from langchain_claude_relay.request import MAX_CACHE_MARKERS

__all__ = [
    "CAPABILITIES_FILE",
    "DEFAULT_MAX_AGE_S",
    "RelayCapabilities",
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
        when = datetime.fromtimestamp(self.probed_at, tz=timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
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
