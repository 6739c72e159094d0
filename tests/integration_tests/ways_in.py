"""The four ways in, each pointed at a relay emulator: the settings a test needs for each."""

from __future__ import annotations

from typing import Any

from langchain_claude_relay.emulator import RelayEmulator

WAYS_IN = ("openai", "anthropic", "bedrock", "vertex")

# What each way in spells the model as (Bedrock and Vertex have their own ids).
MODEL_IDS = {
    "openai": "claude-sonnet-4-6",
    "anthropic": "claude-sonnet-4-6",
    "bedrock": "anthropic.claude-sonnet-4-6",
    "vertex": "claude-sonnet-4-6@20260101",
}

# Fake credentials: long enough to be scrubbed from errors, never valid anywhere.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
VERTEX_TOKEN = "ya29.emulator-access-token-0123456789"


def way_params(way: str, emu: RelayEmulator, **extra: Any) -> dict[str, Any]:
    """``ChatClaudeRelay`` settings for ``way`` against ``emu`` (plus ``extra``)."""
    root = emu.base_url.removesuffix("/v1")
    params: dict[str, Any] = {"model": MODEL_IDS[way], "api": way}
    if way == "openai":
        params.update(base_url=emu.base_url, api_key="test-relay-key-0123456789")
    elif way == "anthropic":
        params.update(base_url=root, api_key="sk-ant-emulator-key-0123456789")
    elif way == "bedrock":
        params.update(
            base_url=root,
            aws_region="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key=AWS_SECRET,
        )
    else:
        params.update(
            base_url=f"{root}/v1",
            vertex_project="emulator-project",
            vertex_region="us-east5",
            vertex_access_token=VERTEX_TOKEN,
        )
    params.update(extra)
    return params
