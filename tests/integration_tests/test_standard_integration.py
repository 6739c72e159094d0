"""LangChain's standard integration suite, run against the local relay emulator."""

from __future__ import annotations

import uuid
from typing import Any

from emulator_session import shared_emulator
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests
from ways_in import MODEL_IDS, way_params

from langchain_claude_relay import ChatClaudeRelay

MODEL = "claude-sonnet-4-6"


def _long_document(tag: str) -> str:
    """A system prompt well above the 1,024-token minimum, unique per call site."""
    sentence = (
        f"[{tag}] The relay forwards requests to Claude and reports usage in its own dialect. "
    )
    return sentence * 150


class TestChatClaudeRelayOnEmulator(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatClaudeRelay]:
        return ChatClaudeRelay

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": MODEL, "base_url": shared_emulator().base_url, "api_key": "test"}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True

    # Image and PDF inputs are supported (see tests/unit_tests/test_chat_model.py), but the
    # standard tests download their sample files from the internet, which tests never reach.
    # JSON mode is supported on the wire too; the standard test needs a model that reads
    # "with 'setup' and 'punchline' keys" from prose, which an emulator does not.

    @property
    def model_override_value(self) -> str:
        return "claude-opus-4-8"

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        # ChatAnthropic's convention: the details never add up to more than input_tokens
        # (cache_creation is 0 once the 5m/1h split is given), so both checks hold.
        both = ["cache_read_input", "cache_creation_input"]
        return {"invoke": both, "stream": both}

    def _cached_call(self, tag: str, *, stream: bool) -> AIMessage:
        llm = ChatClaudeRelay(**{**self.chat_model_params, "cache": "off"})
        messages = [
            SystemMessage(
                [
                    {
                        "type": "text",
                        "text": _long_document(tag),
                        "cache_control": {"type": "ephemeral"},
                    }
                ]
            ),
            HumanMessage("Summarize the document in one line."),
        ]
        if stream:
            full = None
            for chunk in llm.stream(messages):
                full = chunk if full is None else full + chunk
            assert full is not None
            return AIMessage(
                content=full.content,
                usage_metadata=full.usage_metadata,
                response_metadata=full.response_metadata,
            )
        return llm.invoke(messages)

    def invoke_with_cache_creation_input(self, *, stream: bool = False) -> AIMessage:
        message = self._cached_call(f"create-{uuid.uuid4()}", stream=stream)
        details = message.usage_metadata["input_token_details"]
        assert details["ephemeral_5m_input_tokens"] + details["ephemeral_1h_input_tokens"] > 1024
        return message

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        tag = f"read-{uuid.uuid4()}"
        self._cached_call(tag, stream=stream)
        message = self._cached_call(tag, stream=stream)
        assert message.usage_metadata["input_token_details"]["cache_read"] > 1024
        return message


class TestNativeApiOnEmulator(TestChatClaudeRelayOnEmulator):
    """The same suite through ``api="anthropic"`` (the ``anthropic`` SDK, ``/v1/messages``)."""

    way = "anthropic"

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return way_params(self.way, shared_emulator())

    @property
    def model_override_value(self) -> str:
        return MODEL_IDS[self.way].replace("sonnet-4-6", "opus-4-8")


class TestBedrockOnEmulator(TestNativeApiOnEmulator):
    """Through ``api="bedrock"`` (``AnthropicBedrock``: SigV4-signed, event-stream frames)."""

    way = "bedrock"


class TestVertexOnEmulator(TestNativeApiOnEmulator):
    """Through ``api="vertex"`` (``AnthropicVertex``: ``rawPredict`` / ``streamRawPredict``)."""

    way = "vertex"
