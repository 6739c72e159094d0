"""Claude's refusals reach LangChain as standard refusal blocks, and structured output raises.

Claude declines with a successful answer (``stop_reason: "refusal"``); relays pass it on as the
``finish_reason``, some with OpenAI's ``message.refusal`` text. LangChain's agents
(``ModelRefusalMiddleware``), v1 content and structured output read it from ``content_blocks``.
"""

from __future__ import annotations

from functools import reduce
from operator import add
from typing import Any

import httpx2
import pytest
from fake_relay import FakeRelay, completion, sse
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from langchain_claude_relay._content_blocks import ClaudeRefusalError

USAGE = {"prompt_tokens": 12, "completion_tokens": 0}


def _refused(text: str | None = None, finish_reason: str = "refusal") -> dict[str, Any]:
    body = completion("", usage=USAGE, finish_reason=finish_reason)
    if text is not None:
        body["choices"][0]["message"]["refusal"] = text
        body["choices"][0]["message"]["content"] = None
    return body


def _refused_stream() -> str:
    base = {"id": "c1", "object": "chat.completion.chunk", "model": "claude-sonnet-5-5"}
    return sse(
        [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "refusal"}]},
            {**base, "choices": [], "usage": USAGE},
        ]
    )


class Answer(BaseModel):
    city: str


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (_refused(), ""),
        (_refused("I can't help with that."), "I can't help with that."),
        (_refused("I can't help with that.", finish_reason="stop"), "I can't help with that."),
    ],
)
def test_a_refusal_is_a_standard_refusal_block(
    relay: FakeRelay, make_llm: Any, body: dict[str, Any], text: str
) -> None:
    relay.queue(body)
    message = make_llm().invoke("x")
    assert {"type": "refusal", "refusal": text} in message.content_blocks


def test_an_answer_is_not_a_refusal(relay: FakeRelay, make_llm: Any) -> None:
    relay.queue(completion("Paris.", usage=USAGE))
    message = make_llm().invoke("x")
    assert [b["type"] for b in message.content_blocks] == ["text"]


def test_v1_output_carries_the_refusal_invoked_and_streamed(
    relay: FakeRelay, make_llm: Any
) -> None:
    streamed_body = _refused_stream().encode()
    relay.queue(
        _refused(),
        httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=streamed_body),
    )
    llm = make_llm(output_version="v1")
    invoked = llm.invoke("x")
    streamed = reduce(add, llm.stream("x"))
    for message in (invoked, streamed):
        assert any(b.get("type") == "refusal" for b in message.content_blocks), message


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_raises_a_model_refusal_error(
    relay: FakeRelay, make_llm: Any, method: str
) -> None:
    relay.queue(_refused("I can't help with that."))
    structured = make_llm().with_structured_output(Answer, method=method)
    with pytest.raises(ClaudeRefusalError, match="I can't help with that") as caught:
        structured.invoke("x")
    assert isinstance(caught.value.raw_message, AIMessage)
    core = pytest.importorskip("langchain_core.exceptions")
    if hasattr(core, "ModelRefusalError"):
        assert isinstance(caught.value, core.ModelRefusalError)


def test_structured_output_with_raw_reports_the_refusal_as_its_parsing_error(
    relay: FakeRelay, make_llm: Any
) -> None:
    relay.queue(_refused())
    result = make_llm().with_structured_output(Answer, include_raw=True).invoke("x")
    assert result["parsed"] is None
    assert isinstance(result["parsing_error"], ClaudeRefusalError)


def test_the_agents_refusal_middleware_raises(relay: FakeRelay, make_llm: Any) -> None:
    agents = pytest.importorskip("langchain.agents")
    middleware = pytest.importorskip("langchain.agents.middleware")
    refusal_middleware = getattr(middleware, "ModelRefusalMiddleware", None)
    if refusal_middleware is None:
        pytest.skip("this langchain has no ModelRefusalMiddleware")
    from langchain_core.exceptions import ModelRefusalError

    relay.queue(_refused())
    agent = agents.create_agent(make_llm(), [], middleware=[refusal_middleware()])
    with pytest.raises(ModelRefusalError):
        agent.invoke({"messages": [HumanMessage("x")]})


def test_a_refused_turn_in_history_can_be_sent_again(relay: FakeRelay, make_llm: Any) -> None:
    relay.queue(_refused("No."), _refused(), completion("ok", usage=USAGE))
    llm = make_llm()
    refused = llm.invoke("x")
    v1 = make_llm(output_version="v1").invoke("x")
    llm.invoke([HumanMessage("x"), refused, HumanMessage("y"), v1, HumanMessage("z")])
    sent = relay.last["messages"]
    assert "refusal" not in str(sent)  # Claude has no refusal block: nothing of it is sent
    assert [m["content"] for m in sent if m["role"] == "user"][-1] == "z"
