"""A fake relay on an injected transport: unit tests send nothing over any socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from langchain_claude_relay import ChatClaudeRelay

CANARY_KEY = "sk-canary-7f3a9c1e5b2d4f6a8c0e"


def completion(
    content: str = "Hello",
    *,
    usage: dict[str, Any] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    model: str = "claude-sonnet-4-6",
) -> dict[str, Any]:
    """A chat completion body as a relay sends it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def sse(events: list[Any], *, done: bool = True) -> str:
    """An SSE body from JSON events."""
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines)


def stream_events(
    text: str = "Hello there", usage: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Chat-completion chunks for ``text`` in three pieces, then a usage chunk."""
    pieces = [
        text[: len(text) // 3],
        text[len(text) // 3 : 2 * len(text) // 3],
        text[2 * len(text) // 3 :],
    ]
    events: list[dict[str, Any]] = [
        {
            "id": "c1",
            "model": "claude-sonnet-4-6",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}}],
        }
        for p in pieces
    ]
    events[-1]["choices"][0]["finish_reason"] = "stop"
    events.append(
        {
            "id": "c1",
            "model": "claude-sonnet-4-6",
            "choices": [],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 3},
        }
    )
    return events


@dataclass
class FakeRelay:
    """Answers queued responses (or a handler) and records every request body and header."""

    responses: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    handler: Callable[[dict[str, Any]], httpx2.Response] | None = None

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.handler is not None:
            return self.handler(body)
        if not self.responses:
            return httpx2.Response(
                200, json=completion(usage={"prompt_tokens": 10, "completion_tokens": 1})
            )
        item = self.responses.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, httpx2.Response):
            return item
        return httpx2.Response(200, json=item)

    def queue(self, *items: Any) -> FakeRelay:
        self.responses.extend(items)
        return self

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]


@pytest.fixture
def relay() -> FakeRelay:
    return FakeRelay()


@pytest.fixture
def make_llm(relay: FakeRelay) -> Callable[..., ChatClaudeRelay]:
    """A ChatClaudeRelay wired to the fake relay (prompt caching off unless asked)."""

    def factory(**kwargs: Any) -> ChatClaudeRelay:
        params: dict[str, Any] = {
            "base_url": "https://relay.example.com/v1",
            "api_key": CANARY_KEY,
            "cache": "off",
            "max_retries": 2,
            "http_client": httpx2.Client(transport=httpx2.MockTransport(relay)),
            "http_async_client": httpx2.AsyncClient(transport=httpx2.MockTransport(relay)),
        }
        params.update(kwargs)
        llm = ChatClaudeRelay(**params)
        # no real waiting between retries in unit tests
        llm._transport._sleep = lambda _s: None

        async def _no_wait(_s: float) -> None:
            return None

        llm._transport._asleep = _no_wait
        return llm

    return factory
