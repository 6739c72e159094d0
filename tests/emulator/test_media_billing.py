"""The emulator bills images and documents as Claude does (and as the planner estimates).

Images by their size (``tokens.image_tokens``), PDFs by their pages (``tokens.pdf_pages`` times
``PDF_PAGE_TOKENS``), text documents by their text: in a user turn and inside a tool result,
on the chat path and on the Messages path. Never the base64 as text.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from typing import Any

import openai
import pytest

from langchain_claude_relay.emulator.engine import CacheEngine, parse_anthropic, parse_openai
from langchain_claude_relay.emulator.tokens import EmulatorTokenizer, TokenCosts, tiktoken_count
from langchain_claude_relay.tokens import PDF_PAGE_TOKENS, PDF_UNKNOWN_PAGES, image_tokens

from .conftest import MODEL, prose

OVERHEAD = TokenCosts().block_overhead


def png(width: int, height: int) -> str:
    """A base64 PNG header of that size (all the size reader needs)."""
    raw = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + struct.pack(">II", width, height) + b"\0" * 16
    return base64.b64encode(raw).decode()


def pdf(pages: int, padding: int = 0) -> str:
    """A base64 PDF 1.5 whose page objects sit in a compressed object stream (as pdfTeX's)."""
    body = b"".join(b"<< /Type /Page /Parent 2 0 R >>\n" for _ in range(pages))
    stream = zlib.compress(b"<< /Type /Pages /Count %d /Kids [] >>\n" % pages + body)
    raw = (
        b"%PDF-1.5\n%" + b"7" * padding + b"\n"
        b"5 0 obj\n<< /Type /ObjStm /N 9 /First 9 /Filter /FlateDecode >>\nstream\n"
        + stream
        + b"\nendstream\nendobj\n%%EOF\n"
    )
    return base64.b64encode(raw).decode()


def image_part(data: str, *, openai_way: bool) -> dict[str, Any]:
    if openai_way:
        return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def pdf_part(data: str, *, openai_way: bool) -> dict[str, Any]:
    if openai_way:
        return {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}"}}
    source = {"type": "base64", "media_type": "application/pdf", "data": data}
    return {"type": "document", "source": source}


def billed(
    content: list[dict[str, Any]], *, openai_way: bool, costs: TokenCosts | None = None
) -> int:
    """All input tokens of one user turn (the emulator's own tokenizer, no cache)."""
    payload = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": content}]}
    parse = parse_openai if openai_way else parse_anthropic
    return CacheEngine(EmulatorTokenizer(costs)).plan(parse(payload), 0.0).split.prompt_total


def media_cost(part: dict[str, Any], *, openai_way: bool) -> int:
    """What adding ``part`` to a one-text user turn costs."""
    text = [{"type": "text", "text": "describe"}]
    return billed([*text, part], openai_way=openai_way) - billed(text, openai_way=openai_way)


WAYS = pytest.mark.parametrize("openai_way", [True, False], ids=["chat", "messages"])


@WAYS
@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (400, 300, 160),  # width * height / 750
        (800, 600, 640),
        (3000, 2000, 1600),  # resized to a 1568 px long edge, then capped
        (20, 20, 1),
    ],
)
def test_images_are_billed_by_their_size(
    openai_way: bool, width: int, height: int, tokens: int
) -> None:
    data = png(width, height)
    assert image_tokens({"type": "base64", "data": data}) == tokens  # the planner's estimate
    part = image_part(data, openai_way=openai_way)
    assert media_cost(part, openai_way=openai_way) == tokens + OVERHEAD


@WAYS
def test_an_image_of_unknown_size_costs_the_setting(openai_way: bool) -> None:
    if openai_way:
        part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    else:
        part = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    costs = TokenCosts(image_tokens=1000)
    text = [{"type": "text", "text": "describe"}]
    with_image = billed([*text, part], openai_way=openai_way, costs=costs)
    assert with_image - billed(text, openai_way=openai_way, costs=costs) == 1000 + OVERHEAD


@WAYS
@pytest.mark.parametrize(("pages", "padding"), [(2, 0), (36, 0), (3, 3_000_000)])
def test_pdfs_are_billed_by_their_pages(openai_way: bool, pages: int, padding: int) -> None:
    part = pdf_part(pdf(pages, padding), openai_way=openai_way)
    assert media_cost(part, openai_way=openai_way) == pages * PDF_PAGE_TOKENS + OVERHEAD


def test_a_pdf_by_url_is_billed_the_planners_guess() -> None:
    part = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    assert media_cost(part, openai_way=False) == PDF_UNKNOWN_PAGES * PDF_PAGE_TOKENS + OVERHEAD


def test_a_text_document_is_billed_for_its_text_not_its_json() -> None:
    text = prose(300, 7)
    source = {"type": "text", "media_type": "text/plain", "data": text}
    part = {"type": "document", "source": source, "title": "Handbook"}
    alone = billed([part], openai_way=False)
    assert alone == math.ceil(1.2 * tiktoken_count(f"Handbook\n{text}")) + OVERHEAD


@WAYS
@pytest.mark.parametrize("media", ["image", "pdf"])
def test_media_in_a_tool_result_is_billed(openai_way: bool, media: str) -> None:
    data = png(800, 600) if media == "image" else pdf(2)
    make = image_part if media == "image" else pdf_part
    expected = image_tokens({"type": "base64", "data": data}) if media == "image" else 4600

    def result_tokens(parts: list[dict[str, Any]]) -> int:
        call = {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}
        if openai_way:
            messages: list[dict[str, Any]] = [
                {"role": "user", "content": "shot"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": parts},
            ]
        else:
            messages = [
                {"role": "user", "content": "shot"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "c1", "name": "shot", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "c1", "content": parts}],
                },
            ]
        payload = {"model": MODEL, "max_tokens": 10, "messages": messages}
        parse = parse_openai if openai_way else parse_anthropic
        return CacheEngine(EmulatorTokenizer()).plan(parse(payload), 0.0).split.prompt_total

    text = {"type": "text", "text": "here"}
    with_media = result_tokens([text, make(data, openai_way=openai_way)])
    # the media adds its cost, and the line break that separates parts
    newline = math.ceil(1.2 * tiktoken_count("here\n")) - math.ceil(1.2 * tiktoken_count("here"))
    assert with_media - result_tokens([text]) == expected + newline


def test_the_server_bills_an_image_by_its_size(client: openai.OpenAI) -> None:
    data = png(400, 300)
    content: list[Any] = [{"type": "text", "text": "describe"}]
    plain = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    content.append(image_part(data, openai_way=True))
    shown = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}]
    )
    assert plain.usage is not None
    assert shown.usage is not None
    assert shown.usage.prompt_tokens - plain.usage.prompt_tokens == 160 + OVERHEAD


# ------------------------------------------------------------------ thinking settings key order


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2000}},
            {"thinking": {"budget_tokens": 2000, "type": "enabled"}},
        ),
        (
            {"tool_choice": {"type": "tool", "name": "f"}},
            {"tool_choice": {"name": "f", "type": "tool"}},
        ),
    ],
)
def test_settings_claude_parses_are_one_cache_key_in_any_key_order(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    def payload(extra: dict[str, Any]) -> dict[str, Any]:
        content = [{"type": "text", "text": prose(1500, 3), "cache_control": {"type": "ephemeral"}}]
        return {
            "model": MODEL,
            "max_tokens": 4000,
            "messages": [{"role": "user", "content": content}],
            **extra,
        }

    engine = CacheEngine(EmulatorTokenizer())
    written = engine.plan(parse_anthropic(payload(first)), 0.0)
    engine.commit(written)
    assert written.split.cache_write > 1024
    again = engine.plan(parse_anthropic(payload(second)), 1.0)
    assert again.split.cache_read == written.split.cache_write
