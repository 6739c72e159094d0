"""Per-call work the planner path no longer repeats, with results unchanged.

Hashes chained once per request and reused; markers read without hashing blocks; the same
hash bytes and calibration floats as the straightforward computations they replace.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

import pytest
from planner_helpers import ESTIMATOR, Clock, prose

from langchain_claude_relay import request as request_module
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.planner.history import hex_key
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    ClaudeRequest,
    Message,
    Position,
    Tool,
    claude_tool_choice,
    content_hash,
)
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.tokens import (
    FEATURES,
    prior_calibration,
    solve_calibration,
    update_calibration,
)


def _request() -> ClaudeRequest:
    return ClaudeRequest(
        "claude-sonnet-4-6",
        system=(Block("text", {"text": prose(2500, 3)}),),
        messages=(Message("user", (Block("text", {"text": "What does rule 1.1 say?"}),)),),
    )


def test_a_plan_leaves_the_requests_prefix_hashes_memoized_as_computed_from_scratch() -> None:
    planner = CachePlanner(MemoryStore(), clock=Clock(), encoding=ESTIMATOR)
    planned = _request()
    plan = planner.plan(planned)
    assert "_prefix_hashes" in planned.__dict__  # the scan's chain, kept on the request
    marked = plan.apply()
    assert "_prefix_hashes" in marked.__dict__  # markers are not content: kept as well
    fresh = _request()
    assert planned.prefix_hashes() == fresh.prefix_hashes() == marked.prefix_hashes()
    assert all("hash" not in b.__dict__ for b in marked.system)  # nothing rehashed


def test_markers_are_read_without_hashing_any_block() -> None:
    request = _request().with_markers(
        {
            Position("system", 0): CacheControl("1h"),
            Position("messages", 0, 0): CacheControl("5m"),
        }
    )
    markers = request.markers()
    assert [(str(p), m.ttl) for p, m in markers.items()] == [
        ("system[0]", "1h"),
        ("messages[0].content[0]", "5m"),
    ]
    assert all("hash" not in b.__dict__ for b in request.system)


def _content_hash_by_json(value: Any) -> str:
    """``content_hash`` as it was: every scalar other than a string through ``json.dumps``."""
    digest = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, str):
            data = v.encode("utf-8", "surrogatepass")
            digest.update(b"s%d:" % len(data))
            digest.update(data)
        elif isinstance(v, dict):
            digest.update(b"d%d:" % len(v))
            for key in sorted(v, key=str):
                feed(str(key))
                feed(v[key])
        elif isinstance(v, list | tuple):
            digest.update(b"l%d:" % len(v))
            for item in v:
                feed(item)
        else:
            digest.update(b"j" + json.dumps(v).encode() + b";")

    feed(value)
    return digest.hexdigest()[:32]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        10**40,
        2.5,
        math.inf,
        {"tool_choice": None, "thinking": None, "images": False},
        {"a": [1, True, None, 1.0], "b": {"c": False}},
    ],
)
def test_content_hash_feeds_the_same_bytes_as_json_for_scalars(value: Any) -> None:
    assert content_hash(value) == _content_hash_by_json(value)


def test_hex_key_memo_keeps_ints_and_floats_apart() -> None:
    assert hex_key("t", 1) != hex_key("t", 1.0)
    assert hex_key("t", 1) == f"t:{hashlib.sha256(repr((1,)).encode()).hexdigest()[:12]}"


def test_calibration_solve_matches_plain_gaussian_elimination_to_the_bit() -> None:
    """The solver's loops were tightened; a naive reference gives the same floats."""
    rng = random.Random(7)
    prior = prior_calibration(1.1)
    checked = 0
    for _ in range(300):
        state = None
        for _ in range(rng.randint(1, 6)):
            features = [
                rng.uniform(0, 5000),
                rng.uniform(0, 3000) * (rng.random() < 0.4),
                rng.uniform(0, 1500) * (rng.random() < 0.2),
                float(rng.randint(1, 9)),
                float(rng.randint(0, 4)),
                1.0,
                float(rng.random() < 0.5),
            ]
            actual = prior.tokens(features) * rng.uniform(0.3, 3.5)
            state = update_calibration(state, features, actual, prior) or state
        if state is None:
            continue
        solved = solve_calibration(state, prior).coef
        expected = _reference(state, prior)
        assert [float(c).hex() for c in solved] == [float(c).hex() for c in expected]
        checked += 1
    assert checked > 250


def _reference(state: dict[str, Any], prior: Any) -> tuple[float, ...]:
    """``solve_calibration`` written plainly (as it was before its loops were tightened)."""
    from langchain_claude_relay.tokens import _LIMITS, PRIOR_STRENGTH

    k = len(FEATURES)
    weight = float(state["w"])
    matrix = [[0.0] * k for _ in range(k)]
    idx = 0
    for i in range(k):
        for j in range(i, k):
            matrix[i][j] = matrix[j][i] = float(state["a"][idx])
            idx += 1
    rhs = [float(v) for v in state["b"]]
    unseen = {i: prior.coef[i] for i in range(k) if matrix[i][i] == 0.0}  # keep their prior
    for i in range(k):
        ridge = PRIOR_STRENGTH[i] * matrix[i][i] / max(weight, 1.0) + 1e-12
        matrix[i][i] += ridge
        rhs[i] += ridge * prior.coef[i]

    def solve(mat: list[list[float]], b: list[float]) -> list[float] | None:
        n = len(b)
        m = [[*row, b[i]] for i, row in enumerate(mat)]
        for col in range(n):
            pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
            if abs(m[pivot][col]) < 1e-300:
                return None
            m[col], m[pivot] = m[pivot], m[col]
            for r in range(col + 1, n):
                factor = m[r][col] / m[col][col]
                if factor:
                    for c in range(col, n + 1):
                        m[r][c] -= factor * m[col][c]
        out = [0.0] * n
        for r in range(n - 1, -1, -1):
            out[r] = (m[r][n] - sum(m[r][c] * out[c] for c in range(r + 1, n))) / m[r][r]
        return out if all(math.isfinite(v) for v in out) else None

    fixed: dict[int, float] = dict(unseen)
    for _round in range(k):
        free = [i for i in range(k) if i not in fixed]
        sub_rhs = [rhs[i] - sum(matrix[i][j] * v for j, v in fixed.items()) for i in free]
        scale = [math.sqrt(matrix[i][i]) for i in free]
        scaled = [
            [matrix[i][j] / (scale[a] * scale[b]) for b, j in enumerate(free)]
            for a, i in enumerate(free)
        ]
        solved = solve(scaled, [r / scale[a] for a, r in enumerate(sub_rhs)]) if free else []
        if solved is None:
            return tuple(prior.coef)
        values = dict(fixed)
        worst: tuple[float, int, float] | None = None
        for a, i in enumerate(free):
            value = solved[a] / scale[a]
            low, high = _LIMITS[i]
            bound = min(high, max(low, value))
            excess = abs(value - bound) / (high - low)
            if excess > 0 and (worst is None or excess > worst[0]):
                worst = (excess, i, bound)
            values[i] = value
        if worst is None:
            return tuple(values[i] for i in range(k))
        fixed[worst[1]] = worst[2]
    return tuple(min(hi, max(lo, fixed.get(i, 0.0))) for i, (lo, hi) in enumerate(_LIMITS))


@pytest.mark.parametrize("tool_choice", [None, "auto", "lookup", {"type": "tool", "name": "x"}])
@pytest.mark.parametrize("thinking", [None, {"type": "enabled", "budget_tokens": 2048}])
@pytest.mark.parametrize("image", [False, True])
def test_messages_context_hash_remembered_equals_computed(
    tool_choice: Any, thinking: Any, image: bool
) -> None:
    blocks = [Block("text", {"text": "hi"})]
    if image:
        blocks.append(Block("image", {"source": {"type": "url", "url": "https://x.test/a.png"}}))
    request = ClaudeRequest(
        "claude-sonnet-4-6",
        messages=(Message("user", tuple(blocks)),),
        tool_choice=tool_choice,
        thinking=thinking,
    )
    expected = _content_hash_by_json(
        {"tool_choice": claude_tool_choice(tool_choice), "thinking": thinking, "images": image}
    )
    assert request.messages_context_hash() == expected  # computed (and remembered)
    assert request.messages_context_hash() == expected  # remembered


_LOOKUP = Tool("lookup", "Look it up.", {"type": "object", "properties": {}})


@pytest.mark.parametrize(
    "spellings",
    [
        ["any", "required", True, {"type": "any"}],
        ["lookup", {"type": "tool", "name": "lookup"}, {"type": "function", "function": {"name": "lookup"}}],  # noqa: E501
        [{"type": "auto", "name": None}, "auto", {"type": "auto"}],  # a stray key first
        [None, False],
    ],
)  # fmt: skip
def test_every_spelling_of_one_tool_choice_keys_the_messages_part_alike(
    spellings: list[Any],
) -> None:
    # Claude receives one tool choice: "required" after "any" rewrote a cached conversation
    hashes = {
        ClaudeRequest("claude-sonnet-4-6", tools=(_LOOKUP,), tool_choice=c).messages_context_hash()
        for c in spellings
    }
    assert len(hashes) == 1


def test_a_tool_choice_keys_alike_whatever_the_memo_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    # the memo of common context hashes is per process: with a stray key a spelling was keyed
    # by whichever spelling a process met first
    def fresh(choice: Any) -> str:
        monkeypatch.setattr(request_module, "_CONTEXT_HASHES", {})
        return ClaudeRequest(
            "claude-sonnet-4-6", tools=(_LOOKUP,), tool_choice=choice
        ).messages_context_hash()

    assert fresh({"type": "auto", "name": None}) == fresh("auto")
    assert fresh({"type": "any", "stray": 1}) == fresh("any")


def test_what_claude_receives_as_another_tool_choice_keys_it_apart() -> None:
    def key(**fields: Any) -> str:
        return ClaudeRequest(
            "claude-sonnet-4-6", tools=(_LOOKUP,), **fields
        ).messages_context_hash()

    base = key(tool_choice="any")
    assert key(tool_choice="any", parallel_tool_calls=False) != base  # disable_parallel_tool_use
    assert key(tool_choice="any", parallel_tool_calls=True) == base
    assert key(tool_choice=None, parallel_tool_calls=False) == key(
        tool_choice="auto", parallel_tool_calls=False
    )  # both {"type": "auto", "disable_parallel_tool_use": true} on the wire
    assert key(tool_choice="none", parallel_tool_calls=False) == key(tool_choice="none")
    assert key(tool_choice="any", reasoning_effort="high") != base  # relays make it thinking
    assert key(tool_choice="auto") != key(tool_choice="any") != key(tool_choice="lookup")
