"""Images, documents and thinking as reviewers found them mishandled, and as they go now.

- documents: a text (or ``content``) document reached a relay as an empty ``file`` part; a PDF
  over 5 MB was refused as an image; ``citations`` and ``context`` were dropped on the Messages
  API; a PDF in a tool result reached a relay in Claude's shape, which LiteLLM drops;
- media types: ``image/jpg``, ``image/bmp`` and base64 text/plain documents went out to a 400;
- LangChain v1 blocks: ``text-plain`` was refused, file ids got a misleading error, and
  redacted thinking (wrapped as ``non_standard``) was refused;
- another model's signed thinking (Gemini's) went back to Claude, a 400 on every call.

Everything is checked on the converted request and the rendered bodies (no network).
"""

from __future__ import annotations

import base64
import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.wire.anthropic_messages import render_messages_payload
from langchain_claude_relay.wire.openai_chat import render_chat_payload

MODEL = "claude-sonnet-5-5"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF").decode()
GRASS = "The grass is green."
TEXT_DOC: dict[str, Any] = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": GRASS},
}


def ask(*parts: Any) -> list[Any]:
    return [HumanMessage([{"type": "text", "text": "What colour?"}, *parts])]


def native(messages: list[Any]) -> dict[str, Any]:
    return render_messages_payload(to_claude_request(messages, model=MODEL), {})


def relay(messages: list[Any]) -> dict[str, Any]:
    return render_chat_payload(to_claude_request(messages, model=MODEL))


def first_user_part(payload: dict[str, Any], index: int = 1) -> Any:
    return payload["messages"][0]["content"][index]


def tool_history(*parts: Any) -> list[Any]:
    return [
        HumanMessage("Show me the report."),
        AIMessage("", tool_calls=[{"name": "report", "args": {}, "id": "c1"}]),
        ToolMessage([{"type": "text", "text": "here"}, *parts], tool_call_id="c1"),
    ]


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    forget_warnings(lambda key: isinstance(key, tuple) and key[:1] == ("openai_document_keys",))


# -- 1. text and content documents on the relay way ---------------------------------------------


def test_a_text_document_reaches_a_relay_as_its_text_after_its_title() -> None:
    messages = ask({**TEXT_DOC, "title": "facts"})
    assert relay(messages)["messages"][0]["content"][1:] == [
        {"type": "text", "text": "facts"},
        {"type": "text", "text": GRASS},
    ]
    assert first_user_part(native(messages)) == {**TEXT_DOC, "title": "facts"}


def test_a_content_document_reaches_a_relay_as_its_parts_and_keeps_its_marker() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    document = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": GRASS}, image]},
        "cache_control": {"type": "ephemeral"},
    }
    assert relay(ask(document))["messages"][0]["content"][1:] == [
        {"type": "text", "text": GRASS},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}"},
            "cache_control": {"type": "ephemeral"},
        },
    ]


def test_a_content_source_given_as_a_string_is_one_text_block() -> None:
    document = {"type": "document", "source": {"type": "content", "content": GRASS}}
    assert first_user_part(native(ask(document)))["source"] == {
        "type": "content",
        "content": [{"type": "text", "text": GRASS}],
    }


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        pytest.param({"type": "bogus", "data": "x"}, "source type 'bogus'", id="unknown type"),
        pytest.param({"type": "text", "data": ""}, "non-empty string", id="empty text"),
        pytest.param({"type": "content", "content": []}, "'content' document", id="no content"),
        pytest.param(
            {"type": "content", "content": [{"type": "tool_use"}]},
            "holds only non-empty text blocks",
            id="content not text",
        ),
        pytest.param({"type": "url"}, "needs a non-empty 'url'", id="url without url"),
    ],
)
def test_a_document_source_claude_would_refuse_is_refused_before_sending(
    source: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(RequestValidationError, match=fragment) as caught:
        to_claude_request(ask({"type": "document", "source": source}), model=MODEL)
    assert "messages[0] (human), part 1" in str(caught.value)


# -- 2. PDFs are not held to the image limit ----------------------------------------------------


def test_a_pdf_over_5_mb_is_sent_while_an_image_over_5_mb_is_refused() -> None:
    big = "A" * (8 * 1024 * 1024)  # about 6 MB decoded
    pdf = {"type": "file", "base64": big, "mime_type": "application/pdf"}
    assert first_user_part(native(ask(pdf)))["source"]["data"] == big
    with pytest.raises(RequestValidationError, match=r"image of about 6\.3 MB is over"):
        to_claude_request(
            ask({"type": "image", "base64": big, "mime_type": "image/png"}), model=MODEL
        )


# -- 3. citations and context -------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            {**TEXT_DOC, "title": "facts", "context": "trusted", "citations": {"enabled": True}},
            id="Claude's shape",
        ),
        pytest.param(
            {
                "type": "text-plain",
                "text": GRASS,
                "mime_type": "text/plain",
                "extras": {"title": "facts", "context": "trusted", "citations": {"enabled": True}},
            },
            id="LangChain v1, in extras",
        ),
    ],
)
def test_citations_and_context_reach_the_messages_api(document: dict[str, Any]) -> None:
    assert first_user_part(native(ask(document))) == {
        **TEXT_DOC,
        "title": "facts",
        "citations": {"enabled": True},
        "context": "trusted",
    }


def test_citations_and_context_are_left_out_on_a_relay_with_one_warning() -> None:
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "citations": {"enabled": True},
        "context": "trusted",
    }
    with pytest.warns(UserWarning, match="citations and context cannot be sent"):
        payload = relay(ask(pdf, {**pdf, "context": "again"}))
    assert (
        payload["messages"][0]["content"][1:]
        == [{"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}}] * 2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        relay(ask(pdf))  # once per process


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"citations": True}, "'citations' must be"),
        ({"context": {"why": "x"}}, "'context' must be a string"),
    ],
)
def test_bad_citations_or_context_are_refused(extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(RequestValidationError, match=fragment):
        to_claude_request(ask({**TEXT_DOC, **extra}), model=MODEL)


# -- 4. documents in tool results on the relay way ----------------------------------------------


def test_a_pdf_in_a_tool_result_reaches_a_relay_as_a_file_part() -> None:
    pdf = {"type": "file", "base64": PDF, "mime_type": "application/pdf", "filename": "r.pdf"}
    result = relay(tool_history(pdf))["messages"][-1]
    assert result["role"] == "tool"
    assert result["content"][1] == {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "r.pdf"},
    }


def test_a_text_document_in_a_marked_tool_result_reaches_a_relay_as_text() -> None:
    history = tool_history(TEXT_DOC)
    history[-1].additional_kwargs["cache_control"] = {"type": "ephemeral"}
    assert relay(history)["messages"][-1]["content"][1:] == [
        {"type": "text", "text": GRASS, "cache_control": {"type": "ephemeral"}}
    ]


# -- 5. media types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        {"type": "image", "base64": PNG, "mime_type": "image/jpg"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
        {"type": "image", "source": {"type": "base64", "media_type": "IMAGE/JPG", "data": PNG}},
    ],
)
def test_image_jpg_is_sent_as_image_jpeg(image: dict[str, Any]) -> None:
    assert first_user_part(native(ask(image)))["source"]["media_type"] == "image/jpeg"


@pytest.mark.parametrize(
    "image",
    [
        {"type": "image", "base64": PNG, "mime_type": "image/bmp"},
        {"type": "image_url", "image_url": {"url": f"data:image/svg+xml;base64,{PNG}"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": PNG}},
    ],
)
def test_an_image_type_claude_refuses_is_refused_before_sending(image: dict[str, Any]) -> None:
    with pytest.raises(RequestValidationError, match="image/jpeg, image/png, image/gif"):
        to_claude_request(ask(image), model=MODEL)


def test_a_claude_shaped_base64_source_without_a_media_type_is_refused() -> None:
    image = {"type": "image", "source": {"type": "base64", "data": PNG}}
    with pytest.raises(RequestValidationError, match="needs a media type such as 'image/png'"):
        to_claude_request(ask(image), model=MODEL)


@pytest.mark.parametrize(
    "text_file",
    [
        {
            "type": "file",
            "base64": base64.b64encode(GRASS.encode()).decode(),
            "mime_type": "text/plain",
        },
        {
            "type": "file",
            "file": {
                "file_data": "data:text/plain;base64," + base64.b64encode(GRASS.encode()).decode()
            },
        },
        {
            "type": "document",
            "source": {
                "type": "base64",
                "media_type": "text/plain; charset=utf-8",
                "data": base64.urlsafe_b64encode(GRASS.encode()).decode().rstrip("="),
            },
        },
    ],
)
def test_a_base64_text_file_is_sent_as_a_text_document(text_file: dict[str, Any]) -> None:
    assert first_user_part(native(ask(text_file)))["source"] == TEXT_DOC["source"]


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        (
            {
                "type": "file",
                "base64": base64.b64encode(b"\xff\xfe\x00").decode(),
                "mime_type": "text/plain",
            },
            "not UTF-8 text",
        ),
        ({"type": "file", "base64": "QUJD*", "mime_type": "text/plain"}, "not valid base64"),
        (
            {"type": "file", "base64": PDF, "mime_type": "application/msword"},
            "only as application/pdf",
        ),
        ({"type": "file", "file": {"file_data": "data:text/plain,hi"}}, "must hold base64"),
    ],
)
def test_a_base64_document_claude_refuses_is_refused_before_sending(
    part: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(RequestValidationError, match=fragment):
        to_claude_request(ask(part), model=MODEL)


# -- 6. text-plain blocks and file ids ----------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        {"type": "text-plain", "text": GRASS, "mime_type": "text/plain"},
        {"type": "text-plain", "base64": base64.b64encode(GRASS.encode()).decode()},
        {"type": "file", "source_type": "text", "text": GRASS},  # langchain-core < 1
    ],
)
def test_a_text_plain_block_is_a_text_document(block: dict[str, Any]) -> None:
    assert first_user_part(native(ask(block))) == TEXT_DOC
    assert first_user_part(relay(ask(block))) == {"type": "text", "text": GRASS}


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file_id": "file-abc", "mime_type": "application/pdf"},
        {"type": "image", "file_id": "file-abc"},
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "image", "source_type": "id", "id": "file-abc"},
        {"type": "document", "source": {"type": "file", "file_id": "file-abc"}},
    ],
)
def test_a_file_id_goes_to_the_messages_api_and_is_refused_on_a_relay(part: dict[str, Any]) -> None:
    # Claude's Files API takes it (a beta header the user sets); a relay cannot see uploads
    sent = first_user_part(native(ask(part)))
    assert sent["source"] == {"type": "file", "file_id": "file-abc"}
    assert sent["type"] == ("image" if part["type"] == "image" else "document")
    with pytest.raises(RequestValidationError, match=r"uploaded file \('file-abc'\).*relay"):
        relay(ask(part))


def test_a_file_source_without_an_id_is_refused() -> None:
    with pytest.raises(RequestValidationError, match="file_id"):
        to_claude_request(ask({"type": "document", "source": {"type": "file"}}), model=MODEL)


# -- 7. another model's thinking ----------------------------------------------------------------

GEMINI_THOUGHT = {"type": "thinking", "thinking": "Gemini thought", "signature": "Q2lHZW1pbmk="}


def assistant_turn(payload: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in payload["messages"] if m["role"] == "assistant")


@pytest.mark.parametrize(
    ("metadata", "kept"),
    [
        ({"model_provider": "google_genai", "model_name": "gemini-3-pro"}, False),
        ({"model_provider": "openai", "model_name": "gpt-5"}, False),
        ({}, True),
        ({"model_provider": "claude-relay"}, True),
        ({"model_provider": "anthropic"}, True),
        ({"model_provider": "google_anthropic_vertex"}, True),
        ({"model_provider": "bedrock_converse", "model_name": "us.anthropic.claude-x"}, True),
        ({"model_provider": "openrouter", "model_name": "anthropic/claude-sonnet-4.5"}, True),
    ],
)
def test_signed_thinking_goes_back_only_from_a_turn_claude_wrote(
    metadata: dict[str, str], kept: bool
) -> None:
    turns = [
        AIMessage([GEMINI_THOUGHT, {"type": "text", "text": "Sunny."}], response_metadata=metadata),
        AIMessage(
            "Rainy.",
            additional_kwargs={"thinking_blocks": [GEMINI_THOUGHT]},
            response_metadata=metadata,
        ),
    ]
    for turn in turns:
        messages = [HumanMessage("weather?"), turn, HumanMessage("tomorrow?")]
        native_turn = assistant_turn(native(messages))
        relay_turn = assistant_turn(relay(messages))
        assert (GEMINI_THOUGHT in native_turn["content"]) is kept
        assert ("thinking_blocks" in relay_turn) is kept


# -- 8. LangChain v1 redacted thinking ----------------------------------------------------------


def test_a_v1_turn_with_redacted_thinking_goes_back_whole() -> None:
    claude_turn = AIMessage(
        [
            {"type": "thinking", "thinking": "t", "signature": "S"},
            {"type": "redacted_thinking", "data": "R"},
            {"type": "text", "text": "hi"},
        ],
        response_metadata={"model_provider": "anthropic"},
    )
    v1_content = claude_turn.content_blocks  # langchain-core's translator: output_version="v1"
    assert {"type": "non_standard", "value": {"type": "redacted_thinking", "data": "R"}} in [
        {k: v for k, v in block.items() if k != "id"} for block in v1_content
    ]
    v1_turn = AIMessage(
        v1_content, response_metadata={"model_provider": "anthropic", "output_version": "v1"}
    )
    messages = [HumanMessage("q"), v1_turn, HumanMessage("more")]
    assert assistant_turn(native(messages))["content"] == claude_turn.content
    assert assistant_turn(relay(messages))["thinking_blocks"] == claude_turn.content[:2]


def test_redacted_thinking_from_another_provider_is_left_out() -> None:
    wrapped = {"type": "non_standard", "value": {"type": "redacted_thinking", "data": "R"}}
    turn = AIMessage([wrapped, "hi"], response_metadata={"model_provider": "google_genai"})
    messages = [HumanMessage("q"), turn, HumanMessage("more")]
    assert assistant_turn(native(messages))["content"] == [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize(
    "messages",
    [
        [HumanMessage([{"type": "non_standard", "value": {"type": "redacted_thinking"}}])],
        [
            HumanMessage("q"),
            AIMessage([{"type": "non_standard", "value": {"type": ["thinking"]}}]),
            HumanMessage("more"),
        ],
        [
            HumanMessage("q"),
            AIMessage([{"type": "non_standard", "value": {"type": "mystery", "x": 1}}]),
            HumanMessage("more"),
        ],
    ],
    ids=["in a user turn", "a value of no string type", "any other value in an assistant turn"],
)
def test_other_non_standard_blocks_are_still_refused_naming_what_they_hold(
    messages: list[Any],
) -> None:
    with pytest.raises(RequestValidationError, match="'non_standard' holding"):
        to_claude_request(messages, model=MODEL)
