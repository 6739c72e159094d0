"""LangChain's standard content blocks for this package's messages, refusals included.

Claude declines some requests with a successful answer whose ``stop_reason`` is ``"refusal"``
(relays pass it on as the ``finish_reason``, some with OpenAI's ``message.refusal`` text).
LangChain reads refusals from standard ``refusal`` blocks (``content_blocks``): its agents'
``ModelRefusalMiddleware`` raises on one, ``output_version="v1"`` content carries it, and
structured output raises ``ModelRefusalError`` where it would otherwise fail to parse an empty
answer. A message's blocks come from the translator registered for its ``model_provider``;
this module registers one for ``MODEL_PROVIDER``: LangChain's best-effort reading (text,
reasoning, tool calls) plus a refusal block when Claude refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.block_translators import register_translator

try:  # langchain-core 1.7.5 and later
    from langchain_core.exceptions import ModelRefusalError as _RefusalBase

    _CORE_REFUSAL = True
except ImportError:  # pragma: no cover - older langchain-core
    _RefusalBase = ValueError  # type: ignore[assignment,misc]
    _CORE_REFUSAL = False

__all__ = [
    "MODEL_PROVIDER",
    "REFUSAL_STOP",
    "ClaudeRefusalError",
    "acheck_refusals",
    "check_refusals",
    "refusal_block",
]

MODEL_PROVIDER = "claude-relay"
"""``response_metadata["model_provider"]`` of every message this package's chat model returns."""

REFUSAL_STOP = "refusal"
"""Claude's ``stop_reason`` (and a relay's ``finish_reason``) for a declined request."""


class ClaudeRefusalError(_RefusalBase):
    """Claude declined to produce the requested output (``stop_reason="refusal"``).

    A ``langchain_core.exceptions.ModelRefusalError`` (langchain-core 1.7.5 and later), so
    code handling refusals across providers catches it. Retrying the same request is unlikely
    to succeed. ``raw_message`` is the answer that carried the refusal.
    """

    def __init__(
        self,
        message: str = "Claude declined to produce the requested output (stop_reason 'refusal')",
        *,
        raw_message: BaseMessage | None = None,
    ) -> None:
        if _CORE_REFUSAL:
            super().__init__(message, raw_message=raw_message)
        else:  # pragma: no cover - older langchain-core
            self.raw_message = raw_message
            super().__init__(message)


def refusal_block(message: BaseMessage) -> dict[str, Any] | None:
    """The standard ``refusal`` block of an answer Claude refused, else ``None``.

    A refusal is a ``refusal`` text in ``additional_kwargs`` (a relay's ``message.refusal``) or
    a ``finish_reason`` of ``"refusal"`` (Claude's ``stop_reason``, as the native ways in and
    most relays pass it on).

    >>> refusal_block(AIMessage("", response_metadata={"finish_reason": "refusal"}))
    {'type': 'refusal', 'refusal': ''}
    >>> refusal_block(AIMessage("Paris.", response_metadata={"finish_reason": "stop"})) is None
    True
    """
    text = message.additional_kwargs.get("refusal")
    if isinstance(text, str) and text:
        return {"type": "refusal", "refusal": text}
    if message.response_metadata.get("finish_reason") == REFUSAL_STOP:
        return {"type": "refusal", "refusal": ""}
    return None


def _translate(message: AIMessage) -> list[Any]:
    """LangChain's best-effort blocks of the message, and a refusal block if Claude refused."""
    metadata = {k: v for k, v in message.response_metadata.items() if k != "model_provider"}
    blocks: list[Any] = list(
        message.model_copy(update={"response_metadata": metadata}).content_blocks
    )
    refusal = refusal_block(message)
    if refusal is not None and not any(block.get("type") == "refusal" for block in blocks):
        blocks.append(refusal)
    return blocks


def _translate_chunk(chunk: AIMessageChunk) -> list[Any]:
    return _translate(chunk)


register_translator(MODEL_PROVIDER, _translate, _translate_chunk)


def _raise_on_refusal(message: Any) -> None:
    if isinstance(message, BaseMessage):
        refusal = refusal_block(message)
        if refusal is not None:
            text = refusal["refusal"]
            if text:
                raise ClaudeRefusalError(f"Claude declined: {text}", raw_message=message)
            raise ClaudeRefusalError(raw_message=message)


def check_refusals(messages: Iterator[Any]) -> Iterator[Any]:
    """Pass messages (or streamed chunks) on; raise ``ClaudeRefusalError`` at a refusal."""
    for message in messages:
        _raise_on_refusal(message)
        yield message


async def acheck_refusals(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``check_refusals`` for async streams."""
    async for message in messages:
        _raise_on_refusal(message)
        yield message
