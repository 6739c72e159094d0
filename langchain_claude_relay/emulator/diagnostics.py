"""Cache diagnostics: why a request could not reuse the prefix of the request it names.

A request opts in with ``"diagnostics": {"previous_message_id": "msg_..." | null}``. The emulator
keeps, per answered message id, a fingerprint of its request: hashes and numbers only (the
model, a digest of the tools, of the system blocks, of the messages context, of the message
blocks in order, their count, and the tokens it cached). The answer then carries
``"diagnostics": {"cache_miss_reason": {...}}`` or ``"diagnostics": null``. Reasons, first
match wins:

==============================  =================================================================
``previous_message_not_found``  the id is unknown (or forgotten)
``model_changed``               another model
``tools_changed``               tools added, removed, reordered or edited
``system_changed``              the system blocks differ
``messages_changed``            an earlier message block differs (not only blocks appended)
``unavailable``                 the same prompt, but ``tool_choice``/``thinking``/images differ
==============================  =================================================================

``cache_missed_input_tokens`` is the previous request's cached prefix (its cache reads plus
writes: what this request could have read had its prefix matched) minus what this request
read, floored at 0. ``cache_control`` markers are not part of any hash: moving a breakpoint is
not a change.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_claude_relay.emulator.engine import InvalidRequest, PrefixRequest
from langchain_claude_relay.models import cache_model_key

__all__ = [
    "MAX_FINGERPRINTS",
    "PromptFingerprint",
    "fingerprint",
    "cache_miss_reason",
    "requested_diagnostics",
    "FingerprintStore",
]

MAX_FINGERPRINTS = 20_000
"""Fingerprints kept (oldest forgotten first); a forgotten id reads as not found."""


def _digest(parts: Iterable[str]) -> str:
    running = hashlib.sha256()
    for part in parts:
        running.update(part.encode())
        running.update(b"\0")
    return running.hexdigest()[:32]


@dataclass(frozen=True)
class PromptFingerprint:
    """What the diagnostics compare between two requests (hashes and numbers, no text).

    Attributes:
        model: the model id.
        tools: digest of the tool blocks.
        system: digest of the system blocks.
        context: the messages context hash (``tool_choice``, thinking, images).
        message_blocks: how many message blocks the request had.
        messages: digest of the message blocks, in order.
        cached_tokens: the prefix the request read or wrote in the cache.

    """

    model: str
    tools: str
    system: str
    context: str
    message_blocks: int
    messages: str
    cached_tokens: int


def _section(request: PrefixRequest, section: str) -> list[str]:
    return [b.hash for b in request.blocks if b.section == section]


def fingerprint(request: PrefixRequest, cached_tokens: int) -> PromptFingerprint:
    """Fingerprint a request.

    Args:
        request: the parsed request.
        cached_tokens: the tokens it read from or wrote to the cache.

    Returns:
        The fingerprint.

    """
    messages = _section(request, "messages")
    return PromptFingerprint(
        model=cache_model_key(request.model),
        tools=_digest(_section(request, "tools")),
        system=_digest(_section(request, "system")),
        context=request.context_hash,
        message_blocks=len(messages),
        messages=_digest(messages),
        cached_tokens=cached_tokens,
    )


def cache_miss_reason(
    previous: PromptFingerprint | None, request: PrefixRequest, read_tokens: int
) -> dict[str, Any] | None:
    """Why ``request`` diverges from the previous request, or ``None`` if it only appends.

    Args:
        previous: the named request's fingerprint (``None``: not found).
        request: this request.
        read_tokens: what this request reads from the cache.

    Returns:
        A ``cache_miss_reason`` object (Anthropic's field names), or ``None``.

    """
    if previous is None:
        return {"type": "previous_message_not_found"}
    current = fingerprint(request, 0)
    missed = max(0, previous.cached_tokens - read_tokens)
    changes = (
        ("model_changed", previous.model != current.model),
        ("tools_changed", previous.tools != current.tools),
        ("system_changed", previous.system != current.system),
        ("messages_changed", not _extends(previous, request)),
    )
    for kind, changed in changes:
        if changed:
            return {"type": kind, "cache_missed_input_tokens": missed}
    if previous.context != current.context:
        return {"type": "unavailable"}
    return None


def _extends(previous: PromptFingerprint, request: PrefixRequest) -> bool:
    """Whether the request's message blocks start with all of the previous request's."""
    messages = _section(request, "messages")
    if len(messages) < previous.message_blocks:
        return False
    return _digest(messages[: previous.message_blocks]) == previous.messages


def requested_diagnostics(payload: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Read a payload's ``diagnostics`` parameter.

    Args:
        payload: the request body.

    Returns:
        (whether diagnostics were asked for, the previous message id or ``None``). A missing
        or ``null`` parameter asks for none.

    Raises:
        InvalidRequest: if the parameter is not an object with a string or null
            ``previous_message_id``.

    """
    value = payload.get("diagnostics")
    if value is None:
        return False, None
    if not isinstance(value, Mapping):
        msg = "diagnostics: Input should be an object like {'previous_message_id': 'msg_...'}"
        raise InvalidRequest(msg)
    previous = value.get("previous_message_id")
    if previous is not None and not isinstance(previous, str):
        msg = "diagnostics.previous_message_id: Input should be a string (a msg_... id) or null"
        raise InvalidRequest(msg)
    return True, previous


class FingerprintStore:
    """Fingerprints by message id, the oldest forgotten beyond ``limit``.

    >>> store = FingerprintStore(limit=1)
    >>> store.remember("msg_a", PromptFingerprint("m", "t", "s", "c", 0, "x", 0))
    >>> store.remember("msg_b", PromptFingerprint("m", "t", "s", "c", 0, "x", 0))
    >>> store.get("msg_a") is None, store.get("msg_b") is not None
    (True, True)
    """

    def __init__(self, limit: int = MAX_FINGERPRINTS) -> None:
        self.limit = limit
        self._prints: OrderedDict[str, PromptFingerprint] = OrderedDict()

    def remember(self, message_id: str, print_: PromptFingerprint) -> None:
        """Keep a message's fingerprint."""
        self._prints[message_id] = print_
        while len(self._prints) > self.limit:
            self._prints.popitem(last=False)

    def get(self, message_id: str) -> PromptFingerprint | None:
        """The fingerprint of a message id, or ``None``."""
        return self._prints.get(message_id)

    def clear(self) -> None:
        """Forget every fingerprint."""
        self._prints.clear()

    def __len__(self) -> int:
        return len(self._prints)
