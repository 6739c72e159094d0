"""An answer cut part-way is billed by Claude: each cut attempt is in the ledger, as an estimate.

A 2xx JSON body that ends inside its object (the relay or the network cut it) raises a typed
``CutResponseError``; the request began, so Claude billed it, but its usage went with the rest.
The chat model records an estimate for each such attempt (``LedgerEntry.estimated``, the
answer's id when the part received holds it), retried or not, and its cost trackers count it. A
relay's error page, HTML or whole JSON, is not billed and is not recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fake_relay import FakeRelay, completion

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.callbacks import track_costs
from langchain_claude_relay.errors import APIResponseError, CutResponseError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.transport.relay import _decode_body

USAGE = {"prompt_tokens": 40, "completion_tokens": 5}


def _cut(body: dict[str, Any], keep: float = 0.5) -> httpx2.Response:
    text = json.dumps(body)
    return httpx2.Response(
        200, content=text[: int(len(text) * keep)], headers={"content-type": "application/json"}
    )


def _cut_completion(response_id: str) -> httpx2.Response:
    body = completion("A long answer " * 20, usage=USAGE)
    body["id"] = response_id
    return _cut(body)


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


def test_a_cut_attempt_then_a_whole_answer_are_both_recorded(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay], ledger: MemoryLedger
) -> None:
    relay.queue(_cut_completion("chatcmpl-cut-1"), completion("Done.", usage=USAGE))
    with track_costs() as costs:
        answer = make_llm(ledger=ledger).invoke("Tell me everything.")
    assert answer.content == "Done."
    cut, whole = ledger.entries()
    assert (cut.estimated, cut.call_id) == (True, "chatcmpl-cut-1")
    assert cut.input_tokens > 0
    assert cut.output_tokens == 0
    assert not whole.estimated
    assert costs.calls == 2
    assert costs.cost_usd == pytest.approx((cut.cost_usd or 0) + (whole.cost_usd or 0))


async def test_every_cut_attempt_is_recorded_when_all_fail(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay], ledger: MemoryLedger
) -> None:
    relay.queue(*(_cut_completion(f"chatcmpl-cut-{i}") for i in range(3)))
    llm = make_llm(ledger=ledger, max_retries=2)
    with pytest.raises(CutResponseError, match="part-way") as caught:
        await llm.ainvoke("Tell me everything.")
    assert caught.value.status_code == 200
    assert caught.value.response_id == "chatcmpl-cut-2"
    assert [e.call_id for e in ledger.entries()] == [f"chatcmpl-cut-{i}" for i in range(3)]
    assert all(e.estimated for e in ledger.entries())


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, text="<html><body>502 Bad Gateway</body></html>"),
        _cut({"error": {"message": "upstream overloaded, please retry later"}}),
        httpx2.Response(200, text='{"id": "x", "choices": []}}'),  # whole, then garbage
    ],
    ids=["html", "cut-error-json", "garbage-after-a-whole-object"],
)
def test_an_error_page_is_neither_cut_nor_recorded(
    relay: FakeRelay,
    make_llm: Callable[..., ChatClaudeRelay],
    ledger: MemoryLedger,
    response: httpx2.Response,
) -> None:
    relay.queue(response)
    with pytest.raises(APIResponseError) as caught:
        make_llm(ledger=ledger, max_retries=0).invoke("hi")
    assert not isinstance(caught.value, CutResponseError)
    assert ledger.entries() == []


def test_a_cut_native_answer_keeps_its_message_id() -> None:
    text = json.dumps({"id": "msg_01ABC", "type": "message", "content": [{"type": "text"}]})
    with pytest.raises(CutResponseError) as caught:
        _decode_body(text[:40], 200)
    assert caught.value.response_id == "msg_01ABC"
    with pytest.raises(CutResponseError) as caught:
        _decode_body('{"object": "chat.completion", "id": "x", "choices": [', 200)
    assert caught.value.response_id is None  # the id does not lead: not guessed


def test_a_big_broken_body_is_not_taken_for_a_cut_one() -> None:
    broken = '{"id": "x", "a": [' + "1," * 8_000_000 + "x]}"
    with pytest.raises(APIResponseError) as caught:
        _decode_body(broken, 200)
    assert not isinstance(caught.value, CutResponseError)
    with pytest.raises(CutResponseError):
        _decode_body(broken[:-3], 200)


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_every_cut_of_an_answer_is_a_cut_answer(ensure_ascii: bool) -> None:
    # a cut inside null/true/false, a number or a \u escape stopped the parser at the token's
    # start: those cuts were reported as "not JSON" and left out of the ledger
    body = completion("Café 東京 ok", usage=USAGE)
    body["choices"][0]["message"]["refusal"] = None
    body.update(x=True, y=False, z=-1500.25, e=1e-7)
    text = json.dumps(body, ensure_ascii=ensure_ascii)
    for end in range(1, len(text)):
        with pytest.raises(CutResponseError):
            _decode_body(text[:end], 200)


@pytest.mark.parametrize("junk", ["-", "t", "n", "f", ".", "e", "x"])
def test_a_whole_object_then_junk_is_not_a_cut_answer(junk: str) -> None:
    with pytest.raises(APIResponseError) as caught:
        _decode_body('{"id": "x"}\n' + junk, 200)
    assert not isinstance(caught.value, CutResponseError)
