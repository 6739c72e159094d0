"""The SSE reader: well-formed streams, garbage, cut streams; only typed errors escape."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_claude_relay.errors import APIResponseError
from langchain_claude_relay.wire.openai_chat import parse_chat_chunk
from langchain_claude_relay.wire.sse import aiter_sse_json, iter_sse_json


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['data: {"a": 1}', "", "data: [DONE]", ""], [{"a": 1}]),
        (
            [
                ": keep-alive",
                'data: {"a": 1}',
                "",
                "event: x",
                'data: {"b": 2}',
                "",
                "data: [DONE]",
            ],
            [{"a": 1}, {"b": 2}],
        ),
        (['data: {"a":', "data: 1}", "", "data: [DONE]"], [{"a": 1}]),  # multi-line data
        (['data:{"a": 1}\r', "\r", "data:[DONE]"], [{"a": 1}]),  # no space, CRLF
    ],
)
def test_well_formed_streams(lines: list[str], expected: list[Any]) -> None:
    assert list(iter_sse_json(lines)) == expected


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (["data: {not json", ""], "not JSON"),
        (['data: {"error": {"message": "overloaded"}}', ""], "error"),
        (['data: {"a": 1}', ""], "cut"),
        ([], "cut"),
        (["<html>502 Bad Gateway</html>"], "cut"),
    ],
)
def test_broken_streams(lines: list[str], fragment: str) -> None:
    with pytest.raises(APIResponseError, match=fragment):
        list(iter_sse_json(lines))


def test_async_reader_matches_the_sync_one() -> None:
    lines = ['data: {"a": 1}', "", 'data: {"b": 2}', "", "data: [DONE]", ""]

    async def collect() -> list[Any]:
        async def gen():
            for line in lines:
                yield line

        return [e async for e in aiter_sse_json(gen())]

    assert asyncio.run(collect()) == list(iter_sse_json(lines))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40),
            st.from_regex(r"data: .{0,30}", fullmatch=True),
            st.just(""),
            st.just("data: [DONE]"),
        ),
        max_size=12,
    )
)
def test_sse_fuzz_only_typed_errors(lines: list[str]) -> None:
    try:
        for event in iter_sse_json(lines):
            parse_chat_chunk(event)
    except APIResponseError:
        pass


chunkish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "choices",
                    "delta",
                    "content",
                    "tool_calls",
                    "usage",
                    "function",
                    "index",
                    "finish_reason",
                    "id",
                    "model",
                ]
            ),
            c,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(chunkish)
def test_chunk_parser_fuzz_only_typed_errors(chunk: Any) -> None:
    with contextlib.suppress(APIResponseError):
        parse_chat_chunk(chunk)
