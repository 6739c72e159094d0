"""Claude's marker rules: validation of user markers, TTL order, the minimum and its margin."""

from __future__ import annotations

import pytest

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner import validate_user_markers
from langchain_claude_relay.planner.rules import (
    MAX_LEARNED_MINIMUM,
    MinimumBounds,
    effective_minimum,
    learn_minimum,
    minimum_margin,
    reaches_minimum,
    ttl_order_valid,
)
from langchain_claude_relay.request import Block, CacheControl, ClaudeRequest, Message, Tool

M5 = CacheControl("5m")
M1H = CacheControl("1h")


def _req(*markers: CacheControl | None, thinking_marker: bool = False, empty_marker: bool = False):
    """Tools t0 t1, system s0, messages: user [a, b], assistant [thinking, c, ""]."""
    slots = list(markers) + [None] * (6 - len(markers))
    tools = (
        Tool("t0", "d", {"type": "object"}, cache_control=slots[0]),
        Tool("t1", "d", {"type": "object"}, cache_control=slots[1]),
    )
    system = (Block("text", {"text": "sys"}, slots[2]),)
    user = Message(
        "user", (Block("text", {"text": "a"}, slots[3]), Block("text", {"text": "b"}, slots[4]))
    )
    assistant = Message(
        "assistant",
        (
            Block(
                "thinking", {"thinking": "hmm", "signature": "s"}, M5 if thinking_marker else None
            ),
            Block("text", {"text": "c"}, slots[5]),
            Block("text", {"text": ""}, M5 if empty_marker else None),
        ),
    )
    return ClaudeRequest("claude-sonnet-4-6", tools, system, (user, assistant))


@pytest.mark.parametrize(
    "markers",
    [
        (),
        (M5,),
        (M1H, M1H, M5, M5),
        (None, M1H, None, None, M5),
        (CacheControl("5m", explicit_ttl=False), None, M5),
    ],
)
def test_valid_user_markers_pass(markers: tuple[CacheControl | None, ...]) -> None:
    validate_user_markers(_req(*markers))


@pytest.mark.parametrize(
    ("request_", "fragments"),
    [
        (_req(M5, M5, M5, M5, M5), ["5 cache_control markers", "at most 4", "cache='auto'"]),
        (_req(M5, M5, M5, M5, M5, M5), ["6 cache_control markers", "Remove 2"]),
        (_req(M5, M1H), ["ttl='1h' on tools[1]", "after ttl='5m' on tools[0]", "Make tools[0]"]),
        (
            _req(None, None, M5, None, M1H),
            ["messages[0].content[1]", "after ttl='5m' on system[0]"],
        ),
        (_req(thinking_marker=True), ["messages[1].content[0]", "thinking block", "Remove it"]),
        (_req(empty_marker=True), ["messages[1].content[2]", "empty text block"]),
    ],
)
def test_invalid_user_markers_raise_with_the_fix(
    request_: ClaudeRequest, fragments: list[str]
) -> None:
    with pytest.raises(RequestValidationError) as err:
        validate_user_markers(request_)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("ttls", "valid"),
    [
        ([], True),
        (["5m"], True),
        (["1h", "5m"], True),
        (["1h", "1h", "5m", "5m"], True),
        (["5m", "1h"], False),
        (["1h", "5m", "1h"], False),
    ],
)
def test_ttl_order(ttls: list[str], valid: bool) -> None:
    assert ttl_order_valid(ttls) is valid


@pytest.mark.parametrize(
    ("estimate", "minimum", "margin", "reaches"),
    [
        (1024, 1024, 0.0, True),
        (1023, 1024, 0.0, False),
        (931, 1024, 0.10, True),  # 931 * 1.1 = 1024.1
        (930, 1024, 0.10, False),
        (985, 1024, 0.04, True),
        (984, 1024, 0.04, False),
    ],
)
def test_reaches_minimum_rounds_up_by_the_margin(
    estimate: float, minimum: int, margin: float, reaches: bool
) -> None:
    assert reaches_minimum(estimate, minimum, margin) is reaches


def test_margin_narrows_once_calibrated() -> None:
    assert minimum_margin(0) > minimum_margin(10) > 0


@pytest.mark.parametrize(
    ("known", "override", "learned", "expected"),
    [
        (True, None, None, 1024),
        (True, 2048, None, 2048),
        (True, None, MinimumBounds(above=3000), 1024),  # a known model ignores learning
        (False, None, None, 1024),
        (False, None, MinimumBounds(above=1500), 1562),  # 1501 + 4% for estimation error
        (False, None, MinimumBounds(at_most=800), 800),
        (False, None, MinimumBounds(above=3000, at_most=2100), 2100),  # proof beats absence
        (False, None, MinimumBounds(above=50_000), MAX_LEARNED_MINIMUM),
        (False, 4096, MinimumBounds(above=5000), 4096),
    ],
)
def test_effective_minimum(
    known: bool, override: int | None, learned: MinimumBounds | None, expected: int
) -> None:
    assert effective_minimum(1024, known=known, override=override, learned=learned) == expected


def test_learn_minimum_keeps_the_tightest_bounds() -> None:
    bounds = MinimumBounds()
    for tokens, cached in [(600, False), (900, False), (700, False), (2000, True), (1500, True)]:
        bounds = learn_minimum(bounds, tokens, cached=cached)
    assert bounds == MinimumBounds(above=900, at_most=1500)
