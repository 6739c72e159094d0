"""Usage dialects: each relay's cache fields, read through the openai SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from langchain_claude_relay.emulator import DIALECTS, RelayEmulator
from langchain_claude_relay.emulator.dialects import render_usage
from langchain_claude_relay.emulator.engine import TokenSplit

from .conftest import MODEL, prose

# What each relay sends, written out by hand from DESIGN.md's table: path -> quantity.
CACHED = "prompt_tokens_details.cached_tokens"
EXPECTED: dict[str, dict[str, str]] = {
    "superset": {
        "prompt_tokens": "total",
        CACHED: "read",
        "cache_read_input_tokens": "read",
        "cache_creation_input_tokens": "write",
        "cache_creation.ephemeral_5m_input_tokens": "write_5m",
        "cache_creation.ephemeral_1h_input_tokens": "write_1h",
    },
    "openai": {"prompt_tokens": "total", CACHED: "read"},
    "openrouter": {
        "prompt_tokens": "total",
        CACHED: "read",
        "prompt_tokens_details.cache_write_tokens": "write",
    },
    "litellm": {
        "prompt_tokens": "total",
        CACHED: "read",
        "cache_read_input_tokens": "read",
        "cache_creation_input_tokens": "write",
    },
    "anthropic": {
        "prompt_tokens": "input",
        "cache_read_input_tokens": "read",
        "cache_creation_input_tokens": "write",
        "cache_creation.ephemeral_5m_input_tokens": "write_5m",
        "cache_creation.ephemeral_1h_input_tokens": "write_1h",
    },
    "newapi": {
        "prompt_tokens": "total",
        CACHED: "read",
        "prompt_tokens_details.cached_creation_tokens": "write",
    },
    "axonhub": {
        "prompt_tokens": "total",
        CACHED: "read",
        "prompt_tokens_details.write_cached_tokens": "write",
    },
    "oneapi": {"prompt_tokens": "total", CACHED: "read", "cache_creation_tokens": "write"},
}


def flatten(usage: dict[str, Any], prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in usage.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def quantities(split: TokenSplit) -> dict[str, int]:
    return {
        "total": split.prompt_total,
        "input": split.input_tokens,
        "read": split.cache_read,
        "write": split.cache_write,
        "write_5m": split.cache_write_5m,
        "write_1h": split.cache_write_1h,
    }


def test_every_dialect_is_exported() -> None:
    assert set(DIALECTS) == set(EXPECTED)


@pytest.mark.parametrize("dialect", list(EXPECTED))
def test_render_usage_fields(dialect: str) -> None:
    split = TokenSplit(
        input_tokens=7, cache_read=1000, cache_write_5m=300, cache_write_1h=200, output_tokens=9
    )
    usage = flatten(render_usage(split, dialect))
    values = quantities(split)
    expected = {path: values[q] for path, q in EXPECTED[dialect].items()}
    prompt = expected["prompt_tokens"]
    assert usage == {**expected, "completion_tokens": 9, "total_tokens": prompt + 9}


@pytest.mark.parametrize(
    ("dialect", "flag", "prompt"),
    [("superset", True, "input"), ("anthropic", False, "total"), ("openai", None, "total")],
)
def test_prompt_tokens_flag(dialect: str, flag: bool | None, prompt: str) -> None:
    split = TokenSplit(5, 100, 20, 0, 1)
    assert render_usage(split, dialect, flag)["prompt_tokens"] == quantities(split)[prompt]


def three_kinds_request(client: openai.OpenAI) -> Any:
    """Write a prefix, then send a request that reads it and writes 1h and 5m entries after it."""
    a, b, c = prose(1300, 1), prose(400, 2), prose(300, 3)

    def send(parts: list[dict[str, Any]]) -> Any:
        messages = [{"role": "system", "content": parts}, {"role": "user", "content": "go"}]
        return client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]

    send([{"type": "text", "text": a, "cache_control": {"type": "ephemeral"}}])
    return send(
        [
            {"type": "text", "text": a},
            {"type": "text", "text": b, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": c, "cache_control": {"type": "ephemeral", "ttl": "5m"}},
        ]
    )


@pytest.mark.parametrize("dialect", list(EXPECTED))
def test_dialect_fields_through_the_sdk(
    emu: RelayEmulator, client: openai.OpenAI, dialect: str
) -> None:
    emu.configure(dialect=dialect)
    response = three_kinds_request(client)
    entry = emu.billing_log[-1]
    split = TokenSplit(
        entry.input_tokens,
        entry.cache_read,
        entry.cache_write_5m,
        entry.cache_write_1h,
        entry.output_tokens,
    )
    assert min(split.cache_read, split.cache_write_5m, split.cache_write_1h) > 0
    usage = flatten(response.usage.model_dump(exclude_none=True))
    values = quantities(split)
    for path, quantity in EXPECTED[dialect].items():
        assert usage[path] == values[quantity], path
    assert usage["completion_tokens"] == entry.output_tokens
    cache_keys = {
        "cached_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_write_tokens",
        "cached_creation_tokens",
        "write_cached_tokens",
        "cache_creation_tokens",
        "ephemeral_5m_input_tokens",
        "ephemeral_1h_input_tokens",
    }
    sent = {p for p in usage if p.rsplit(".", 1)[-1] in cache_keys}
    assert sent == set(EXPECTED[dialect]) - {"prompt_tokens"}  # nothing more than the dialect sends
