"""Seeded workload generators: streams of timestamped LangChain requests in virtual time.

Each generator returns a ``Trace``: requests sorted by virtual time (seconds from 0), every one a
complete list of LangChain messages (and tools), with the history a real application would
resend. Assistant turns and tool results are part of the trace (fixed text), so every strategy
sends byte-identical content and only the cache markers differ. Requests that share a timestamp
are *concurrent*: the runner sends them at the same virtual instant, in parallel, and none of
them can read what another one writes. Every other request has a distinct timestamp.

The nine workloads (``build_workloads``), each on a current model (``Trace.model``):

==================  ============================================================================
``doc_qa``          one large static system document (8K-30K tokens), Poisson questions; Opus
                    5.5 (cache reads at 0.05x input)
``chat``            several multi-turn conversations under one system prompt, interleaved
``agent``           tools + system + 10-20 tool steps per episode, several episodes
``sparse``          the same large document every 10-50 minutes over six hours
``fan_out``         50 concurrent requests on a new prefix, then one reduce call (two jobs)
``mixed_tenants``   several system prompts of different sizes and traffic rates, interleaved
``volatile``        a timestamp at the top of the system prompt (after stable tools)
``short``           prompts below the model's minimum cacheable prefix
``near_minimum``    Haiku 5.5 apps whose system prompts sit around its 512-token minimum
==================  ============================================================================

The others run on the default model (Sonnet 5.5, 512-token minimum, reads at 0.1x).

Text is English-like prose from a fixed vocabulary (about 1.25 emulator tokens per word); sizes
are approximate, and every cost is computed from the emulator's exact counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_claude_relay.models import DEFAULT_MODEL

OPUS = "claude-opus-5-5"
"""Opus 5.5: $4 / $20 per million, cache reads at 0.05x input."""
HAIKU = "claude-haiku-5-5"
"""Haiku 5.5: $0.10 / $0.50 per million, 512-token minimum."""

__all__ = ["TraceRequest", "Trace", "WORKLOADS", "build_workloads"]

TOKENS_PER_WORD = 1.25
"""Emulator tokens per word of ``_VOCAB`` prose (1.2 x cl100k plus punctuation), for sizing."""

_VOCAB_TEXT = (
    "the of and to in is for that with as on by this be are from at or an which it not have has "
    "was were will can may should must each any all more most other some such only also than then "
    "when where while after before between under over into through during about against within "
    "system report service customer order invoice payment account contract policy review budget "
    "schedule shipment route warehouse supplier quality audit record request response process team "
    "project release version feature module function value table field index query result error "
    "status level limit rate period quarter month week day year region market product price cost "
    "revenue margin growth risk control section clause term notice party agreement obligation "
    "delivery standard procedure requirement approval manager owner support issue ticket change "
    "plan target metric data model input output source document page chapter summary detail note "
    "example case rule method step task goal test check update create remove include provide "
    "require ensure follow apply define describe maintain handle report measure compare reduce "
    "increase improve review track store send receive return open close start finish hold keep "
    "new current previous next first last final total annual daily internal external public "
    "private general specific major minor early late high low large small full partial clear "
    "valid active formal regional national local primary secondary critical normal"
)
_VOCAB = _VOCAB_TEXT.split()
_TOOL_NAMES = (
    "search_documents", "read_file", "write_file", "run_tests", "list_directory", "grep_code",
    "http_get", "query_database", "send_email", "create_ticket",
)  # fmt: skip


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace.

    Attributes:
        time: virtual seconds from the start of the trace.
        messages: the full LangChain message list sent with this request.
        tools: OpenAI-style tool dicts offered with it (empty: none).
        model: the model this request goes to, when not the trace's (a multi-agent workload's
            workers); ``None``: ``Trace.model``.
    """

    time: float
    messages: tuple[BaseMessage, ...]
    tools: tuple[dict[str, Any], ...] = ()
    model: str | None = None


@dataclass(frozen=True)
class Trace:
    """A named workload: requests in time order.

    Attributes:
        name: short identifier (``doc_qa``...).
        description: one line for reports.
        model: the model id every request uses.
        requests: the requests, sorted by ``time``.
    """

    name: str
    description: str
    model: str
    requests: tuple[TraceRequest, ...]

    def model_of(self, request: TraceRequest) -> str:
        """The model ``request`` goes to."""
        return request.model or self.model

    @property
    def models(self) -> tuple[str, ...]:
        """Every model the trace uses, the trace's own first."""
        return tuple(dict.fromkeys((self.model, *(r.model for r in self.requests if r.model))))

    def groups(self) -> list[list[int]]:
        """Request indices grouped by timestamp: each group is sent concurrently."""
        out: list[list[int]] = []
        for i, request in enumerate(self.requests):
            if out and self.requests[out[-1][0]].time == request.time:
                out[-1].append(i)
            else:
                out.append([i])
        return out

    @property
    def duration(self) -> float:
        """Virtual seconds from the first request to the last."""
        return self.requests[-1].time - self.requests[0].time if self.requests else 0.0


# ------------------------------------------------------------------------------------ text


def _sentence(rng: random.Random, words: int) -> str:
    chosen = [rng.choice(_VOCAB) for _ in range(words)]
    return chosen[0].capitalize() + " " + " ".join(chosen[1:]) + "."


def prose(rng: random.Random, tokens: int) -> str:
    """Prose worth about ``tokens`` emulator tokens.

    Args:
        rng: the seeded generator.
        tokens: the approximate size.

    Returns:
        Sentences grouped in paragraphs.
    """
    budget = max(1, math.ceil(tokens / TOKENS_PER_WORD))
    paragraphs: list[str] = []
    sentences: list[str] = []
    while budget > 0:
        n = min(budget, rng.randint(6, 18))
        sentences.append(_sentence(rng, n))
        budget -= n
        if len(sentences) >= rng.randint(3, 7):
            paragraphs.append(" ".join(sentences))
            sentences = []
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def document(rng: random.Random, tokens: int, title: str) -> str:
    """A document with numbered sections, about ``tokens`` emulator tokens."""
    sections = max(1, tokens // 1500)
    parts = [f"# {title}"]
    for i in range(1, sections + 1):
        heading = " ".join(rng.choice(_VOCAB) for _ in range(3)).title()
        parts.append(f"## Section {i}: {heading}\n\n{prose(rng, tokens // sections)}")
    return "\n\n".join(parts)


def _question(rng: random.Random, tokens: int = 30) -> str:
    return f"Question {rng.randrange(10**6)}: {prose(rng, tokens)} Answer briefly."


def _poisson_times(rng: random.Random, mean_gap: float, horizon: float) -> list[float]:
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(1.0 / mean_gap)
        if t > horizon:
            return times
        times.append(round(t, 3))


def _make_trace(
    name: str,
    description: str,
    requests: Sequence[TraceRequest],
    *,
    concurrent: bool = False,
    model: str = DEFAULT_MODEL,
) -> Trace:
    """Sort by time; separate accidental ties unless the trace is ``concurrent`` on purpose."""
    ordered = sorted(requests, key=lambda r: r.time)
    out: list[TraceRequest] = []
    for request in ordered:
        if out and (
            request.time < out[-1].time or (request.time == out[-1].time and not concurrent)
        ):
            request = replace(request, time=round(out[-1].time + 0.01, 3))
        out.append(request)
    models = ", ".join(dict.fromkeys((model, *(r.model for r in out if r.model))))
    return Trace(name, f"{description} [{models}]", model, tuple(out))


# ------------------------------------------------------------------------------- workloads


def doc_qa(rng: random.Random, quick: bool) -> Trace:
    """Questions about one large static system document, Poisson arrivals (mean gap 100 s)."""
    size = 2500 if quick else rng.randint(8000, 30000)
    system = SystemMessage(
        "You answer questions about the document below. Quote the section you rely on.\n\n"
        + document(rng, size, "Operations Handbook")
    )
    horizon = 1200.0 if quick else 7200.0
    requests = [
        TraceRequest(t, (system, HumanMessage(_question(rng))))
        for t in _poisson_times(rng, 100.0, horizon)
    ]
    description = f"document Q&A: ~{size}-token system document, Poisson"
    return _make_trace("doc_qa", description, requests, model=OPUS)


def chat(rng: random.Random, quick: bool) -> Trace:
    """Conversations with growing history under one system prompt, interleaved in time."""
    system = SystemMessage("You are a helpful support assistant.\n\n" + prose(rng, 1300))
    conversations = 2 if quick else 5
    requests: list[TraceRequest] = []
    for _ in range(conversations):
        t = rng.uniform(0.0, 300.0 if quick else 1800.0)
        history: list[BaseMessage] = []
        for _turn in range(rng.randint(3, 4) if quick else rng.randint(6, 14)):
            user = HumanMessage(prose(rng, rng.randint(20, 250)))
            requests.append(TraceRequest(round(t, 3), (system, *history, user)))
            history += [user, AIMessage(prose(rng, rng.randint(120, 600)))]
            t += min(1200.0, max(10.0, rng.expovariate(1.0 / 75.0)))
    return _make_trace(
        "chat", f"multi-turn chat: {conversations} interleaved conversations", requests
    )


def _tool_schema(rng: random.Random, name: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for _ in range(rng.randint(3, 6)):
        field = "_".join(rng.choice(_VOCAB) for _ in range(2))
        kind = rng.choice(["string", "integer", "boolean"])
        properties[field] = {"type": kind, "description": prose(rng, rng.randint(10, 30))}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": prose(rng, rng.randint(60, 160)),
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": sorted(properties)[:2],
            },
        },
    }


def agent(rng: random.Random, quick: bool) -> Trace:
    """A tool-using agent: a call after the task and after each of 10-20 tool results."""
    tools = tuple(_tool_schema(rng, name) for name in _TOOL_NAMES[: 4 if quick else 8])
    system = SystemMessage("You are a careful engineering agent.\n\n" + prose(rng, 1500))
    episodes = 2 if quick else 6
    requests: list[TraceRequest] = []
    t = 0.0
    for episode in range(episodes):
        messages: list[BaseMessage] = [system, HumanMessage("Task: " + prose(rng, 100))]
        requests.append(TraceRequest(round(t, 3), tuple(messages), tools))
        for step in range(rng.randint(3, 4) if quick else rng.randint(10, 20)):
            name = tools[rng.randrange(len(tools))]["function"]["name"]
            call_id = f"call_{episode}_{step}"
            args = {"query": " ".join(rng.choice(_VOCAB) for _ in range(6)), "limit": step + 5}
            messages.append(AIMessage("", tool_calls=[{"id": call_id, "name": name, "args": args}]))
            messages.append(ToolMessage(prose(rng, rng.randint(100, 1500)), tool_call_id=call_id))
            t += rng.uniform(3.0, 25.0)
            requests.append(TraceRequest(round(t, 3), tuple(messages), tools))
        t += rng.uniform(300.0, 2400.0)
    return _make_trace(
        "agent", f"agent tool loop: {len(tools)} tools, {episodes} episodes", requests
    )


def sparse(rng: random.Random, quick: bool) -> Trace:
    """The same large document every 10-50 minutes over several hours."""
    size = 3000 if quick else 20000
    system = SystemMessage("Answer from this reference.\n\n" + document(rng, size, "Reference"))
    horizon = 7200.0 if quick else 6 * 3600.0
    requests: list[TraceRequest] = []
    t = rng.uniform(0.0, 60.0)
    while t <= horizon:
        requests.append(TraceRequest(round(t, 3), (system, HumanMessage(_question(rng)))))
        t += rng.uniform(600.0, 3000.0)
    return _make_trace("sparse", f"sparse traffic: ~{size}-token prefix every 10-50 min", requests)


def fan_out(rng: random.Random, quick: bool) -> Trace:
    """Map-reduce jobs: N concurrent calls on a new prefix, then one reduce call 2 min later."""
    width = 8 if quick else 50
    requests: list[TraceRequest] = []
    for job, start in enumerate((0.0,) if quick else (0.0, 2400.0)):
        system = SystemMessage(
            f"Job {job}: extract the facts each item needs from this corpus.\n\n"
            + document(rng, 2000 if quick else 10000, f"Corpus {job}")
        )
        for _ in range(width):
            item = HumanMessage("Item: " + prose(rng, rng.randint(60, 200)))
            requests.append(TraceRequest(start, (system, item)))
        reduce = HumanMessage("Combine these findings: " + prose(rng, 1500))
        requests.append(TraceRequest(start + 120.0, (system, reduce)))
    description = f"batch fan-out: {width} concurrent requests on a new prefix, then a reduce"
    return _make_trace("fan_out", description, requests, concurrent=True)


def mixed_tenants(rng: random.Random, quick: bool) -> Trace:
    """Several applications (system prompts) with different sizes and rates, interleaved."""
    gaps = (40.0, 300.0, 1500.0) if quick else (40.0, 120.0, 300.0, 700.0, 1500.0, 2700.0)
    horizon = 1800.0 if quick else 3 * 3600.0
    requests: list[TraceRequest] = []
    for tenant, gap in enumerate(gaps):
        size = rng.randint(1200, 2500) if quick else rng.randint(1500, 8000)
        system = SystemMessage(f"Tenant {tenant} assistant.\n\n" + prose(rng, size))
        for t in _poisson_times(rng, gap, horizon):
            requests.append(TraceRequest(t, (system, HumanMessage(_question(rng)))))
    return _make_trace("mixed_tenants", f"mixed tenants: {len(gaps)} system prompts", requests)


def volatile(rng: random.Random, quick: bool) -> Trace:
    """A timestamp at the top of the system prompt; stable tools before it."""
    tools = tuple(_tool_schema(rng, name) for name in _TOOL_NAMES[: 4 if quick else 6])
    static = prose(rng, 1500 if quick else 5000)
    horizon = 900.0 if quick else 5400.0
    requests: list[TraceRequest] = []
    for t in _poisson_times(rng, 90.0, horizon):
        seconds = int(t) + 9 * 3600
        stamp = f"2026-03-14T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
        system = SystemMessage(f"Current time: {stamp}\n\n{static}")
        requests.append(TraceRequest(t, (system, HumanMessage(_question(rng))), tools))
    return _make_trace("volatile", "volatile prefix: a timestamp in the system prompt", requests)


def short(rng: random.Random, quick: bool) -> Trace:
    """Prompts below the minimum cacheable prefix (512): single calls and short chats."""
    systems = [SystemMessage(prose(rng, rng.randint(100, 220))) for _ in range(3)]
    horizon = 600.0 if quick else 3600.0
    requests: list[TraceRequest] = []
    for t in _poisson_times(rng, 60.0, horizon):
        system = rng.choice(systems)
        history: list[BaseMessage] = []
        for turn in range(rng.choice((1, 1, 3))):
            user = HumanMessage(prose(rng, rng.randint(15, 50)))
            requests.append(TraceRequest(round(t + 30.0 * turn, 3), (system, *history, user)))
            history += [user, AIMessage(prose(rng, rng.randint(20, 50)))]
    return _make_trace("short", "short prompts below the minimum cacheable prefix", requests)


def near_minimum(rng: random.Random, quick: bool) -> Trace:
    """Haiku 5.5 apps whose system prompts sit just under, at and over its 512-token minimum.

    Marking is a bet near the minimum: the planner's estimate (tiktoken, calibrated) decides
    whether a prefix reaches it, and a miss either way costs (an unmarked cacheable prefix pays
    full price on every call; a marker below the minimum only costs its slot).
    """
    sizes = (430, 500, 540, 620)
    horizon = 900.0 if quick else 2 * 3600.0
    requests: list[TraceRequest] = []
    for app, size in enumerate(sizes):
        system = SystemMessage(f"App {app} assistant.\n\n" + prose(rng, size))
        for t in _poisson_times(rng, 45.0 if app % 2 else 150.0, horizon):
            question = HumanMessage(_question(rng, rng.randint(10, 40)))
            requests.append(TraceRequest(t, (system, question)))
    description = "system prompts of ~430-620 tokens around the 512-token minimum"
    return _make_trace("near_minimum", description, requests, model=HAIKU)


SLOW_TOOLS = ("run_tests", "build_project")
"""Tools that take minutes in ``slow_agent`` (a build or a test run: 4-12 minutes)."""
_FAST_TOOLS = (
    "read_file",
    "grep_code",
    "write_file",
    "list_directory",
    "search_documents",
    "http_get",
)


def _tool_step(
    rng: random.Random, messages: list[BaseMessage], name: str, call_id: str, result_tokens: int
) -> None:
    """Append one tool call and its result to ``messages``."""
    args = {"query": " ".join(rng.choice(_VOCAB) for _ in range(6)), "limit": len(messages)}
    messages.append(AIMessage("", tool_calls=[{"id": call_id, "name": name, "args": args}]))
    messages.append(ToolMessage(prose(rng, result_tokens), tool_call_id=call_id))


def slow_agent(rng: random.Random, quick: bool) -> Trace:
    """A coding agent on Opus 5.5 whose builds and test runs take minutes.

    A third of the tool calls are ``run_tests`` or ``build_project`` (4-12 minutes before the
    result comes back), the rest take 5-30 s; 8-16 steps per task, tasks 5-40 minutes apart.
    """
    names = (*SLOW_TOOLS, *_FAST_TOOLS)[: 4 if quick else 8]
    tools = tuple(_tool_schema(rng, name) for name in names)
    slow = [n for n in names if n in SLOW_TOOLS]
    fast = [n for n in names if n not in SLOW_TOOLS]
    system = SystemMessage("You are a careful software engineering agent.\n\n" + prose(rng, 1800))
    episodes = 2 if quick else 5
    requests: list[TraceRequest] = []
    t = 0.0
    for episode in range(episodes):
        messages: list[BaseMessage] = [system, HumanMessage("Task: " + prose(rng, 120))]
        requests.append(TraceRequest(round(t, 3), tuple(messages), tools))
        for step in range(rng.randint(4, 5) if quick else rng.randint(8, 16)):
            minutes = rng.random() < 1 / 3
            name = rng.choice(slow if minutes else fast)
            size = rng.randint(300, 1500) if minutes else rng.randint(80, 1200)
            _tool_step(rng, messages, name, f"call_{episode}_{step}", size)
            t += rng.uniform(240.0, 720.0) if minutes else rng.uniform(5.0, 30.0)
            requests.append(TraceRequest(round(t, 3), tuple(messages), tools))
        t += rng.uniform(300.0, 2400.0)
    description = (
        f"agent with slow tools: {len(tools)} tools, a third of calls 4-12 min "
        f"({', '.join(slow)}), the rest 5-30 s, {episodes} tasks"
    )
    return _make_trace("slow_agent", description, requests, model=OPUS)


def paused_chat(rng: random.Random, quick: bool) -> Trace:
    """Conversations whose users sometimes pause 6-40 minutes between turns."""
    system = SystemMessage("You are a patient tutor.\n\n" + prose(rng, 2000))
    conversations = 2 if quick else 5
    requests: list[TraceRequest] = []
    for _ in range(conversations):
        t = rng.uniform(0.0, 600.0 if quick else 3600.0)
        history: list[BaseMessage] = []
        for _turn in range(rng.randint(3, 4) if quick else rng.randint(6, 12)):
            user = HumanMessage(prose(rng, rng.randint(20, 200)))
            requests.append(TraceRequest(round(t, 3), (system, *history, user)))
            history += [user, AIMessage(prose(rng, rng.randint(120, 500)))]
            paused = rng.random() < 0.3
            t += rng.uniform(360.0, 2400.0) if paused else rng.uniform(20.0, 120.0)
    description = f"chat with human pauses: {conversations} conversations, 3 in 10 turns 6-40 min"
    return _make_trace("paused_chat", description, requests)


def multi_agent(rng: random.Random, quick: bool) -> Trace:
    """A supervisor on Opus 5.5 delegating to workers on Sonnet 5.5 (two models, one planner).

    Each task: the supervisor calls ``delegate_research`` or ``delegate_code``; the worker runs
    its own tool loop (4-8 steps, 5-30 s apart) and the supervisor gets its report as the tool
    result, one step per delegation (2-4 per task); tasks 10-30 minutes apart.
    """
    supervisor_tools = tuple(
        _tool_schema(rng, name) for name in ("delegate_research", "delegate_code", "ask_user")
    )
    worker_tools = tuple(_tool_schema(rng, name) for name in _FAST_TOOLS[: 3 if quick else 5])
    supervisor = SystemMessage("You coordinate a team of agents.\n\n" + prose(rng, 1600))
    workers = {
        "delegate_research": SystemMessage("You are a research agent.\n\n" + prose(rng, 1400)),
        "delegate_code": SystemMessage("You are a coding agent.\n\n" + prose(rng, 1400)),
    }
    tasks = 2 if quick else 5
    requests: list[TraceRequest] = []
    t = 0.0
    for task in range(tasks):
        boss: list[BaseMessage] = [supervisor, HumanMessage("Task: " + prose(rng, 150))]
        requests.append(TraceRequest(round(t, 3), tuple(boss), supervisor_tools))
        for delegation in range(rng.randint(1, 2) if quick else rng.randint(2, 4)):
            kind = rng.choice(sorted(workers))
            worker: list[BaseMessage] = [workers[kind], HumanMessage("Subtask: " + prose(rng, 120))]
            t += rng.uniform(2.0, 6.0)
            requests.append(
                TraceRequest(round(t, 3), tuple(worker), worker_tools, model=DEFAULT_MODEL)
            )
            for step in range(rng.randint(2, 3) if quick else rng.randint(4, 8)):
                name = worker_tools[rng.randrange(len(worker_tools))]["function"]["name"]
                _tool_step(rng, worker, name, f"w_{task}_{delegation}_{step}", rng.randint(80, 900))
                t += rng.uniform(5.0, 30.0)
                requests.append(
                    TraceRequest(round(t, 3), tuple(worker), worker_tools, model=DEFAULT_MODEL)
                )
            report = prose(rng, rng.randint(200, 600))
            call_id = f"s_{task}_{delegation}"
            boss.append(
                AIMessage(
                    "", tool_calls=[{"id": call_id, "name": kind, "args": {"brief": report[:40]}}]
                )
            )
            boss.append(ToolMessage(report, tool_call_id=call_id))
            t += rng.uniform(2.0, 6.0)
            requests.append(TraceRequest(round(t, 3), tuple(boss), supervisor_tools))
        t += rng.uniform(600.0, 1800.0)
    description = f"multi-agent: a supervisor and its workers, {tasks} tasks"
    return _make_trace("multi_agent", description, requests, model=OPUS)


WORKLOADS: dict[str, Callable[[random.Random, bool], Trace]] = {
    "doc_qa": doc_qa,
    "chat": chat,
    "agent": agent,
    "sparse": sparse,
    "fan_out": fan_out,
    "mixed_tenants": mixed_tenants,
    "volatile": volatile,
    "short": short,
    "near_minimum": near_minimum,
    "slow_agent": slow_agent,
    "paused_chat": paused_chat,
    "multi_agent": multi_agent,
}
"""Generators by trace name, in report order."""


def build_workloads(
    seed: int = 0, *, quick: bool = False, names: Sequence[str] | None = None
) -> list[Trace]:
    """Build the traces (each from its own generator seeded by ``seed`` and its name).

    Args:
        seed: the seed; equal seeds give byte-identical traces.
        quick: tiny traces for the smoke test.
        names: a subset of ``WORKLOADS`` (default: all, in order).

    Returns:
        The traces.

    Raises:
        ValueError: for an unknown name.
    """
    chosen = list(names) if names is not None else list(WORKLOADS)
    unknown = [n for n in chosen if n not in WORKLOADS]
    if unknown:
        msg = f"unknown workload(s) {unknown}: choose from {', '.join(WORKLOADS)}"
        raise ValueError(msg)
    return [WORKLOADS[n](random.Random(f"{seed}:{n}"), quick) for n in chosen]
