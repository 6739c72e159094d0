"""The local relay emulator: an OpenAI-compatible server with Claude's caching rules and billing.

>>> from langchain_claude_relay.emulator import RelayEmulator
>>> with RelayEmulator() as emu:            # doctest: +SKIP
...     client = openai.OpenAI(base_url=emu.base_url, api_key="test")
...     emu.advance(3600)                    # an hour of virtual time, instantly

Modules: ``engine`` (pure cache rules and billing), ``tokens`` (the emulator's tokenizer),
``replies`` (deterministic replies), ``dialects`` (usage dialects and wire bodies), ``faults``
(seeded faults, rate limits, latency), ``platforms`` (Bedrock and Vertex bodies and errors),
``eventstream`` (AWS event-stream frames), ``diagnostics`` (cache-miss reasons), ``server``
(Starlette app, background thread, ``serve``).
"""

from __future__ import annotations

from langchain_claude_relay.emulator.dialects import DIALECTS
from langchain_claude_relay.emulator.engine import BillingEntry
from langchain_claude_relay.emulator.faults import FAULT_KINDS, TIERS

try:
    from langchain_claude_relay.emulator.server import (
        EmulatorSettings,
        RelayEmulator,
        RequestRecord,
        serve,
    )
except ModuleNotFoundError as exc:  # the server's packages come with the extra
    if exc.name not in ("uvicorn", "starlette"):
        raise
    msg = (
        "the relay emulator needs the emulator extra: "
        "pip install 'langchain-claude-relay[emulator]'"
    )
    raise ModuleNotFoundError(msg, name=exc.name) from None

__all__ = [
    "RelayEmulator",
    "EmulatorSettings",
    "DIALECTS",
    "FAULT_KINDS",
    "TIERS",
    "BillingEntry",
    "RequestRecord",
    "serve",
]
