"""Claude's marker rules: validation of user markers, TTL order, the minimum and its margin."""

from __future__ import annotations

import pytest

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner import validate_user_markers
from langchain_claude_relay.planner.rules import (
    MAX_LEARNED_MINIMUM,
    MinimumBounds,
    automatic_marker,
    effective_minimum,
    fixed_markers,
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


# ---------------------------------------------------------------- automatic caching (top level)

_TEXT = Block("text", {"text": "some text"})
_EMPTY = Block("text", {"text": ""})
_THINKING = Block("thinking", {"thinking": "...", "signature": "s"})
_M5, _M1 = CacheControl("5m"), CacheControl("1h")


def _marked(block: Block, marker: CacheControl | None) -> Block:
    return Block(block.type, block.data, marker)


def _auto_request(
    tool: CacheControl | None = None,
    system: CacheControl | None = None,
    turns: tuple[tuple[str, tuple[Block, ...]], ...] = (("user", (_TEXT,)),),
    automatic: CacheControl | None = _M5,
) -> ClaudeRequest:
    return ClaudeRequest(
        "claude-sonnet-5-5",
        tools=(Tool("t", "a tool", {}, tool),),
        system=(_marked(_TEXT, system),),
        messages=tuple(Message(role, blocks) for role, blocks in turns),  # type: ignore[arg-type]
        cache_control=automatic,
    )


AUTO_CASES = [
    # (case, request, fixed flat indices (None: refused), error text)
    ("lands on the last block", _auto_request(), {2: _M5}, None),
    (
        "walks back past thinking and empty text",
        _auto_request(turns=(("user", (_TEXT,)), ("assistant", (_TEXT, _EMPTY, _THINKING)))),
        {3: _M5},
        None,
    ),
    (
        "walks back to the tools when nothing after can carry one",
        ClaudeRequest(
            "m",
            tools=(Tool("t", "a tool", {}),),
            messages=(Message("user", (_EMPTY,)),),
            cache_control=_M5,
        ),
        {0: _M5},
        None,
    ),
    ("no block at all: nothing", ClaudeRequest("m", cache_control=_M5), {}, None),
    (
        "3 explicit + top-level: 4",
        _auto_request(tool=_M5, system=_M5, turns=(("user", (_marked(_TEXT, _M5), _TEXT)),)),
        {0: _M5, 1: _M5, 2: _M5, 3: _M5},
        None,
    ),
    (
        "4 explicit + top-level: refused",
        _auto_request(
            tool=_M5,
            system=_M5,
            turns=(("user", (_marked(_TEXT, _M5), _marked(_TEXT, _M5), _TEXT)),),
        ),
        None,
        "5 cache_control markers",
    ),
    (
        "last block marked with the same TTL: a no-op",
        _auto_request(
            tool=_M5,
            system=_M5,
            turns=(("user", (_marked(_TEXT, _M5), _marked(_TEXT, _M5))),),
        ),
        {0: _M5, 1: _M5, 2: _M5, 3: _M5},
        None,
    ),
    (
        "last block marked with the other TTL: refused",
        _auto_request(turns=(("user", (_marked(_TEXT, _M1),)),)),
        None,
        "the two TTLs on one block",
    ),
    (
        "a 1h top-level marker after an explicit 5m one: refused",
        _auto_request(system=_M5, automatic=_M1),
        None,
        "top-level cache_control lands there",
    ),
    (
        "a 5m top-level marker after an explicit 1h one: fine",
        _auto_request(system=_M1),
        {1: _M1, 2: _M5},
        None,
    ),
]


@pytest.mark.parametrize(
    ("request_", "fixed", "error"),
    [pytest.param(r, f, e, id=name) for name, r, f, e in AUTO_CASES],
)
def test_a_top_level_marker_is_counted_and_checked_before_sending(
    request_: ClaudeRequest, fixed: dict[int, CacheControl] | None, error: str | None
) -> None:
    if fixed is None:
        with pytest.raises(RequestValidationError, match=str(error)):
            validate_user_markers(request_)
        return
    validate_user_markers(request_)
    assert fixed_markers(request_) == fixed
    flats = request_.flat_blocks()
    automatic = automatic_marker(request_)
    if automatic is not None:  # the index is the flat index of the block it names
        assert flats[automatic.flat_index].position == automatic.position
