"""Automatic caching (a top-level ``cache_control``) in the emulator, rule by rule.

Each row of ``RULES`` is one documented rule (DESIGN.md, "Automatic caching"), run on both the
Messages path (``parse_anthropic``) and the chat-completions path (``parse_openai``, where the
top-level field rides in the body as OpenRouter passes it on). Sizes are in ``WordCounter``
tokens and the minimum is 100, so every expected split is worked by hand: reads up to the
highest hit, 1h writes to the last 1h marker, 5m writes to the last marker, the rest plain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import httpx
import pytest

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import (
    CacheEngine,
    InvalidRequest,
    PrefixRequest,
    apply_bad_relay,
    parse_anthropic,
    parse_openai,
)

from .conftest import WordCounter, words

EMPTY = -1  # an empty text block: cannot carry a marker
THINK = -2  # a thinking block of 20 tokens (Messages path only)

Block = tuple[str, int, str | None]  # (role: tool/system/user/assistant, tokens, explicit ttl)


def _marker(ttl: str | None) -> dict[str, Any]:
    if ttl is None:
        return {}
    return {"cache_control": {"type": "ephemeral", **({"ttl": "1h"} if ttl == "1h" else {})}}


def _part(role: str, i: int, tokens: int, ttl: str | None) -> dict[str, Any]:
    if tokens == THINK:
        return {"type": "thinking", "thinking": words(20, f"k{i}"), "signature": "sig"}
    text = "" if tokens == EMPTY else words(tokens, f"{role[0]}{i}")
    return {"type": "text", "text": text, **_marker(ttl)}


def _turns(blocks: Sequence[Block]) -> list[tuple[str, list[dict[str, Any]]]]:
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, (role, tokens, ttl) in enumerate(blocks):
        if role not in ("user", "assistant"):
            continue
        if not turns or turns[-1][0] != role:
            turns.append((role, []))
        turns[-1][1].append(_part(role, i, tokens, ttl))
    return turns


def payload(path: str, blocks: Sequence[Block], automatic: str | None) -> dict[str, Any]:
    """A request with these blocks in prefix order, for ``path`` ("messages" or "chat")."""
    tools = [(i, n, t) for i, (r, n, t) in enumerate(blocks) if r == "tool"]
    system = [_part("system", i, n, t) for i, (r, n, t) in enumerate(blocks) if r == "system"]
    body: dict[str, Any] = {"model": "claude-sonnet-5-5", "max_tokens": 1}
    if path == "messages":
        if tools:
            body["tools"] = [
                {
                    "name": f"t{i}",
                    "description": words(n, f"t{i}"),
                    "input_schema": {},
                    **_marker(t),
                }
                for i, n, t in tools
            ]
        if system:
            body["system"] = system
        body["messages"] = [{"role": r, "content": c} for r, c in _turns(blocks)]
    else:
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": f"t{i}", "description": words(n, f"t{i}")},
                    **_marker(t),
                }
                for i, n, t in tools
            ]
        messages = [{"role": "system", "content": system}] if system else []
        body["messages"] = messages + [{"role": r, "content": c} for r, c in _turns(blocks)]
    if automatic is not None:
        body["cache_control"] = _marker(automatic)["cache_control"]
    return body


def parse(path: str, body: dict[str, Any]) -> PrefixRequest:
    return parse_anthropic(body) if path == "messages" else parse_openai(body)


class Rule(NamedTuple):
    """One documented rule: a first request on an empty cache and what Claude does with it."""

    rule: str
    blocks: Sequence[Block]
    automatic: str | None
    markers: tuple[int, ...] | None  # block indices that end up marked (None: a 400)
    split: tuple[int, int, int, int] | str  # (read, write 5m, write 1h, plain), or the 400's text
    paths: tuple[str, ...] = ("messages", "chat")


RULES = [
    Rule(
        "one marker on the last cacheable block",
        [("system", 200, None), ("user", 50, None)],
        "5m",
        (1,),
        (0, 250, 0, 0),
    ),
    Rule(
        "no top-level field: no marker, nothing cached",
        [("system", 200, None), ("user", 50, None)],
        None,
        (),
        (0, 0, 0, 250),
    ),
    Rule(
        "walks back past an empty text block",
        [("system", 200, None), ("user", 50, None), ("user", EMPTY, None)],
        "5m",
        (1,),
        (0, 250, 0, 0),
    ),
    Rule(
        "walks back past a thinking block",
        [
            ("system", 200, None),
            ("user", 50, None),
            ("assistant", 30, None),
            ("assistant", THINK, None),
        ],
        "5m",
        (2,),
        (0, 280, 0, 20),
        ("messages",),
    ),
    Rule(
        "walks back into the system prompt and the tools",
        [("tool", 150, None), ("user", EMPTY, None)],
        "5m",
        (0,),
        "tools",  # checked below: the marker lands on the tool
    ),
    Rule(
        "no block can carry a marker: no caching",
        [("user", EMPTY, None)],
        "5m",
        (),
        (0, 0, 0, 0),
    ),
    Rule(
        "a 1h top-level marker writes at the 1h price",
        [("system", 200, None), ("user", 30, None)],
        "1h",
        (1,),
        (0, 0, 230, 0),
    ),
    Rule(
        "it takes one of the 4 slots: 3 explicit + top-level = 4 markers",
        [("tool", 120, "5m"), ("system", 100, "5m"), ("user", 50, "5m"), ("user", 30, None)],
        "5m",
        (0, 1, 2, 3),
        (0, 300, 0, 0),
    ),
    Rule(
        "4 explicit + top-level is a 400",
        [
            ("tool", 120, "5m"),
            ("system", 100, "5m"),
            ("user", 50, "5m"),
            ("user", 40, "5m"),
            ("user", 30, None),
        ],
        "5m",
        None,
        "A maximum of 4 blocks with cache_control",
    ),
    Rule(
        "last block already marked with the same TTL: a no-op (4 explicit pass)",
        [("tool", 120, "5m"), ("system", 100, "5m"), ("user", 50, "5m"), ("user", 30, "5m")],
        "5m",
        (0, 1, 2, 3),
        (0, 300, 0, 0),
    ),
    Rule(
        "last block already marked with the other TTL: a 400",
        [("system", 200, "1h"), ("user", 30, "1h")],
        "5m",
        None,
        "the two must have the same ttl",
    ),
    Rule(
        "TTL order: a 1h top-level marker after an explicit 5m one is a 400",
        [("system", 200, "5m"), ("user", 30, None)],
        "1h",
        None,
        "Invalid cache_control TTL ordering",
    ),
    Rule(
        "TTL order: a 5m top-level marker after an explicit 1h one bills 1h, then 5m",
        [("system", 200, "1h"), ("user", 30, None)],
        "5m",
        (0, 1),
        (0, 30, 200, 0),
    ),
    Rule(
        "same minimum: a prefix under it writes nothing",
        [("user", 60, None)],
        "5m",
        (0,),
        (0, 0, 0, 60),
    ),
]


def engine() -> CacheEngine:
    return CacheEngine(WordCounter(), minimum=lambda _model: 100)


def cases() -> list[Any]:
    return [
        pytest.param(rule, path, id=f"{path}: {rule.rule}") for rule in RULES for path in rule.paths
    ]


@pytest.mark.parametrize(("rule", "path"), cases())
def test_automatic_caching_rule(rule: Rule, path: str) -> None:
    request = parse(path, payload(path, rule.blocks, rule.automatic))
    cache = engine()
    if rule.markers is None:
        with pytest.raises(InvalidRequest, match=str(rule.split)):
            cache.plan(request, 0.0)
        return
    bill = cache.plan(request, 0.0)
    assert bill.marker_indices == rule.markers
    if rule.split == "tools":
        assert request.blocks[bill.marker_indices[0]].section == "tools"
        return
    split = bill.split
    assert (split.cache_read, split.cache_write_5m, split.cache_write_1h, split.input_tokens) == (
        rule.split
    )


def send(cache: CacheEngine, path: str, blocks: Sequence[Block], at: float) -> tuple[int, int]:
    bill = cache.plan(parse(path, payload(path, blocks, "5m")), at)
    cache.commit(bill)
    return bill.split.cache_read, bill.split.cache_write


@pytest.mark.parametrize("path", ["messages", "chat"])
def test_the_marker_moves_forward_each_turn(path: str) -> None:
    cache = engine()
    first: list[Block] = [("system", 200, None), ("user", 30, None)]
    assert send(cache, path, first, 0.0) == (0, 230)
    second = [*first, ("assistant", 40, None), ("user", 20, None)]
    assert send(cache, path, second, 60.0) == (230, 60)  # reads turn 1, writes the new turn


@pytest.mark.parametrize("path", ["messages", "chat"])
def test_the_same_lookback_limits_it(path: str) -> None:
    cache = engine()
    first: list[Block] = [("system", 200, None), ("user", 30, None)]
    send(cache, path, first, 0.0)
    # 20 more blocks: the entry at block 1 is 21 boundaries back from the new last block
    later = [*first, *[("assistant" if k % 2 else "user", 5, None) for k in range(20)]]
    assert send(cache, path, later, 60.0) == (0, 330)
    within = [*first, *[("assistant" if k % 2 else "user", 5, None) for k in range(19)]]
    cache = engine()
    send(cache, path, first, 0.0)
    assert send(cache, path, within, 60.0) == (230, 95)


@pytest.mark.parametrize("path", ["messages", "chat"])
def test_its_trap_a_changing_last_block_writes_every_turn(path: str) -> None:
    cache = engine()
    for k in range(3):  # same document, a new question each time: no read ever
        question: list[Block] = [("system", 2000, None), ("user", 30 + k, None)]
        assert send(cache, path, question, 60.0 * k) == (0, 2030 + k)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, ((1,), "5m")),
        ("drop_automatic", ((), None)),
        ("drop_cache_control", ((), None)),
        ("drop_ttl", ((1,), "5m")),
    ],
)
def test_bad_relay_modes_and_automatic_caching(
    mode: str | None, expected: tuple[tuple[int, ...], str | None]
) -> None:
    body = payload("chat", [("system", 200, None), ("user", 30, None)], "1h")
    bill = engine().plan(apply_bad_relay(parse_openai(body), mode), 0.0)
    markers, ttl = expected
    assert bill.marker_indices == markers
    if mode == "drop_ttl":  # a relay that strips ttl turns 1h into 5m, top-level too
        assert bill.split.cache_write_5m == 230
    elif mode is None:
        assert bill.split.cache_write_1h == 230
    else:
        assert ttl is None
        assert bill.split.cache_write == 0


def test_a_bad_top_level_marker_is_a_400() -> None:
    body = payload("messages", [("user", 30, None)], None)
    body["cache_control"] = {"type": "ephemeral", "ttl": "10m"}
    with pytest.raises(InvalidRequest, match=r"cache_control\.ttl"):
        parse_anthropic(body)


# ----------------------------------------------------------------------- through the server


def _http(emu: RelayEmulator) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url.removesuffix("/v1"), timeout=10)


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/messages"])
def test_the_server_caches_with_a_top_level_marker_on_both_apis(
    emu: RelayEmulator, route: str
) -> None:
    emu.configure(min_cache_tokens=100)
    path = "messages" if route == "/v1/messages" else "chat"
    body = payload(path, [("system", 400, None), ("user", 30, None)], "1h")
    with _http(emu) as http:
        assert http.post(route, json=body).status_code == 200
        assert http.post(route, json=body).status_code == 200
    first, second = emu.billing_log[-2:]
    assert first.cache_write_1h > 400
    assert first.cache_read == 0
    assert second.cache_read == first.cache_write_1h


def test_the_server_refuses_five_markers_counting_the_top_level_one(emu: RelayEmulator) -> None:
    blocks: list[Block] = [("system", 50, "5m"), *[("user", 10, "5m")] * 3, ("user", 10, None)]
    with _http(emu) as http:
        response = http.post("/v1/messages", json=payload("messages", blocks, "5m"))
    assert response.status_code == 400
    assert "A maximum of 4 blocks" in response.text


def test_a_relay_that_drops_the_top_level_field_caches_nothing(emu: RelayEmulator) -> None:
    emu.configure(min_cache_tokens=100, bad_relay="drop_automatic")
    body = payload("chat", [("system", 400, None), ("user", 30, None)], "5m")
    with _http(emu) as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200
    assert emu.billing_log[-1].cache_write == 0
    assert emu.billing_log[-1].marker_indices == ()


@pytest.mark.parametrize(
    ("model", "status"),
    [("anthropic.claude-opus-4-6-v1", 400), ("anthropic.claude-fable-5-1-v1", 200)],
)
def test_legacy_bedrock_refuses_it_for_opus_4_6_and_earlier(
    emu: RelayEmulator, model: str, status: int
) -> None:
    body = payload("messages", [("system", 400, None), ("user", 30, None)], "5m")
    del body["model"]
    body["anthropic_version"] = "bedrock-2023-05-31"
    with _http(emu) as http:
        response = http.post(f"/model/{model}/invoke", json=body)
    assert response.status_code == status
    if status == 400:
        assert "cache_control" in response.json()["message"]
