"""``claude-relay demo``: a LangChain agent over a large handbook, several turns over virtual time.

The agent is LangChain 1.x's ``create_agent`` (``pip install 'langchain-claude-relay[demo]'``).

On the embedded emulator (no key, no network) unless ``CLAUDE_RELAY_BASE_URL`` and
``CLAUDE_RELAY_API_KEY`` are set, in which case the same agent runs against that relay, on the
wall clock. Each model call prints where the planner put the cache markers, with which TTL, what
the relay reported as cache reads and writes, and the cost against the same call uncached.

One tool is slow: ``run_compliance_check`` takes ``SLOW_TOOL_MINUTES`` (virtual) minutes, longer
than a 5-minute cache entry lives. While it runs, the chat model's keep-alive requests
(``keep_warm="auto"``, off by default, on here) keep the agent's prompt cached; the demo sends
them as they fall due (``run_keep_warm``, on the emulator's clock), prints each, and at the end
what they cost against writing the prompt again when the tool's result came back.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.outputs import LLMResult
from langchain_core.tools import tool
from pydantic import SecretStr

from langchain_claude_relay.chat_models import ChatClaudeRelay
from langchain_claude_relay.cost import uncached_cost_usd
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.transport.checks import redact_url
from langchain_claude_relay.usage import normalize_usage

__all__ = ["DEMO_MODEL", "SLOW_TOOL_MINUTES", "TURNS", "handbook", "run_demo"]

DEMO_MODEL = "claude-sonnet-4-6"

TURNS: tuple[tuple[float, str], ...] = (
    (0.0, "Search the handbook for 'refunds' and tell me the rule."),
    (1.5, "Run the compliance check of part 7 and tell me whether it passes."),
    (12.0, "Search the handbook for 'travel' and list what needs approval."),
    (25.0, "Open section 12 and tell me who signs off."),
    (55.0, "Search the handbook for 'security' and give me the first step."),
    (100.0, "Open section 3 and quote its first sentence."),
    (103.0, "Search the handbook for 'holidays' and tell me how many days."),
    (150.0, "Open section 18 and summarize it."),
)
"""(virtual minutes since the start, question): a burst with a 9-minute compliance check, then
sparse visits, then another burst."""
SLOW_TOOL_MINUTES = 9.0
"""How long the compliance check runs (virtual minutes): longer than a 5-minute entry lives."""

_TOPICS = (
    "refunds", "travel", "security", "holidays", "expenses", "hiring", "onboarding", "equipment",
    "privacy", "incidents", "vendors", "training", "remote work", "overtime", "benefits",
    "compliance", "procurement", "escalation", "retention", "audits",
)  # fmt: skip


def handbook(sections: int = 20, sentences: int = 28, seed: int = 11) -> list[str]:
    """A deterministic company handbook (about 15K tokens with the defaults)."""
    rng = random.Random(seed)
    verbs = ("must be approved by", "is reviewed by", "is recorded by", "is escalated to")
    roles = ("the team lead", "finance", "the security office", "human resources", "the director")
    out = []
    for n in range(sections):
        topic = _TOPICS[n % len(_TOPICS)]
        lines = [f"Section {n + 1}: {topic.title()}."]
        for k in range(sentences):
            amount = rng.randint(2, 90)
            lines.append(
                f"Rule {n + 1}.{k + 1}: any {topic} request above {amount} units "
                f"{rng.choice(verbs)} {rng.choice(roles)} within {rng.randint(1, 14)} days."
            )
        out.append(" ".join(lines))
    return out


def _tools(sections: list[str], wait: Callable[[float], None]) -> list[Any]:
    @tool
    def search_handbook(query: str) -> str:
        """Search the company handbook; returns the best matching section."""
        query = query.lower().strip("'\" ")
        for text in sections:
            if query and query in text.lower():
                return text[:1200]
        return "No section matches."

    @tool
    def open_section(number: int) -> str:
        """Open one numbered section of the company handbook."""
        if 1 <= number <= len(sections):
            return sections[number - 1][:1200]
        return f"There is no section {number}; sections run from 1 to {len(sections)}."

    @tool
    def run_compliance_check(section: int) -> str:
        """Run the compliance check of one handbook section (a slow job: minutes)."""
        wait(SLOW_TOOL_MINUTES * 60)
        if 1 <= section <= len(sections):
            return f"Section {section}: 28 rules checked, all compliant; report archived."
        return f"There is no section {section}."

    return [search_handbook, open_section, run_compliance_check]


@dataclass
class _CallRow:
    turn: int
    minute: float
    breakpoints: str
    read: int
    write: int
    plain: int
    cost: float | None
    uncached: float | None


class _CallPrinter(BaseCallbackHandler):
    """Prints one line per model call and keeps the totals."""

    def __init__(self, out: TextIO, now: Callable[[], float]) -> None:
        self.out = out
        self.now = now
        self.turn = 0
        self.rows: list[_CallRow] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                if message is None:
                    continue
                meta = message.response_metadata
                usage = normalize_usage(meta.get("usage"))
                plan = meta.get("cache_plan") or {}
                marks = ", ".join(
                    f"{bp['position']}@{bp['ttl']}" for bp in plan.get("breakpoints", [])
                )
                row = _CallRow(
                    self.turn,
                    self.now() / 60,
                    marks or "none",
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                    usage.input_tokens,
                    meta.get("cost_usd"),
                    uncached_cost_usd(usage, meta.get("model_name") or DEMO_MODEL),
                )
                self.rows.append(row)
                print(_format_row(row), file=self.out, flush=True)


_HEADER = (
    f"{'turn':>4} {'min':>6}  {'breakpoints (position@ttl)':<52} {'read':>7} {'write':>7} "
    f"{'plain':>6} {'cost $':>9} {'uncached $':>10}"
)


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.5f}"


def _format_row(row: _CallRow) -> str:
    marks = row.breakpoints if len(row.breakpoints) <= 52 else row.breakpoints[:49] + "..."
    return (
        f"{row.turn:>4} {row.minute:>6.1f}  {marks:<52} {row.read:>7} {row.write:>7} "
        f"{row.plain:>6} {_usd(row.cost):>9} {_usd(row.uncached):>10}"
    )


@contextmanager
def _relay(
    real: bool,
) -> Iterator[tuple[str, str, Callable[[float], object], Callable[[], float], str]]:
    """The relay to use: the embedded emulator, or (``real``) the one in the environment.

    A real relay bills the demo's calls, so it is never used unless asked for: exporting
    ``CLAUDE_RELAY_BASE_URL`` for one's own code does not move ``make demo`` onto it.

    Raises:
        ValueError: if ``real`` and ``CLAUDE_RELAY_BASE_URL`` or ``CLAUDE_RELAY_API_KEY`` is
            not set.

    """
    if real:
        base_url = os.environ.get("CLAUDE_RELAY_BASE_URL")
        api_key = os.environ.get("CLAUDE_RELAY_API_KEY")
        if not base_url or not api_key:
            missing = " and ".join(
                name
                for name, value in (
                    ("CLAUDE_RELAY_BASE_URL", base_url),
                    ("CLAUDE_RELAY_API_KEY", api_key),
                )
                if not value
            )
            msg = (
                f"the demo on a real relay needs CLAUDE_RELAY_BASE_URL and CLAUDE_RELAY_API_KEY; "
                f"{missing} not set (without --relay it runs on the embedded emulator)"
            )
            raise ValueError(msg)
        where = f"the relay at {redact_url(base_url)}"  # its userinfo and query may hold keys
        started = time.time()
        yield base_url, api_key, lambda _s: None, lambda: time.time() - started, where
        return
    from langchain_claude_relay.emulator import RelayEmulator

    with RelayEmulator() as emu:
        yield emu.base_url, "demo", emu.set_time, lambda: emu.now, "the embedded relay emulator"


def run_demo(turns: int | None = None, out: TextIO | None = None, relay: bool = False) -> int:
    """Run the demo; returns the exit status (0 when every call succeeded).

    Args:
        turns: how many questions to ask, at least 1 (default: all of ``TURNS``).
        out: where to print (default: standard output).
        relay: run on the relay ``CLAUDE_RELAY_BASE_URL`` names, with ``CLAUDE_RELAY_API_KEY``
            (billed: 16 calls, about 260K input tokens, most of them cache reads), in real
            time; default: the embedded emulator, in virtual time.

    Raises:
        ValueError: for ``turns`` below 1, or (``relay``) a relay URL or key not set or a
            relay URL that is not one.
        ClaudeRelayError: if the relay fails (``claude-relay demo`` prints it on one line).

    """
    from langchain.agents import create_agent

    from langchain_claude_relay.planner import CachePlanner
    from langchain_claude_relay.store import MemoryStore

    if turns is not None and turns < 1:
        msg = f"turns={turns}: ask at least 1 question (or None for all {len(TURNS)})"
        raise ValueError(msg)
    out = out or sys.stdout
    sections = handbook()
    system_prompt = (
        "You answer questions about the company handbook below, using the tools to find the "
        "exact rule.\n\n" + "\n\n".join(sections)
    )
    schedule = TURNS[: turns or len(TURNS)]
    with _relay(relay) as (base_url, api_key, set_minute_clock, now, where):
        emulated = api_key == "demo"
        planner: CachePlanner | Literal["auto"] = (
            CachePlanner(store=MemoryStore(), clock=now) if emulated else "auto"
        )
        llm = ChatClaudeRelay(
            model=DEMO_MODEL,
            base_url=base_url,
            api_key=SecretStr(api_key),
            cache=planner,
            ledger=MemoryLedger() if emulated else None,
            max_tokens=400,
            keep_warm="auto",  # a slow tool: what keep-alives are for (off by default)
        )
        printer = _CallPrinter(out, now)
        keep_alives = _KeepAlives(llm, out, now, set_minute_clock, emulated)
        if emulated:  # the demo sends keep-alives on the virtual clock from the first call on
            llm.next_keep_warm()
        agent = create_agent(llm, _tools(sections, keep_alives.wait), system_prompt=system_prompt)
        print(
            f"langchain-claude-relay demo: a LangChain agent (create_agent) with 3 tools (one "
            f"takes {SLOW_TOOL_MINUTES:g} minutes) over a "
            f"{len(system_prompt) // 1000}K-character handbook, {len(schedule)} questions, "
            f"on {where}" + (" (virtual time)" if emulated else ""),
            file=out,
        )
        print(_HEADER, file=out)
        print("-" * len(_HEADER), file=out)
        for i, (minute, question) in enumerate(schedule, start=1):
            if emulated:
                set_minute_clock(minute * 60)
            printer.turn = i
            agent.invoke({"messages": [HumanMessage(question)]}, config={"callbacks": [printer]})
            keep_alives.after_turn(printer.rows)
        _print_totals(printer.rows, out, llm.keep_warm_spent_usd)
        keep_alives.print_totals(out)
        llm.close()
    return 0


class _KeepAlives:
    """The slow tool's wait: the virtual clock moves, keep-alives go as they fall due."""

    def __init__(
        self,
        llm: ChatClaudeRelay,
        out: TextIO,
        now: Callable[[], float],
        set_clock: Callable[[float], object],
        emulated: bool,
    ) -> None:
        self.llm, self.out, self.now, self.set_clock = llm, out, now, set_clock
        self.emulated = emulated
        self.sent = 0
        self.kept_tokens = 0  # what the call after the slow tool read thanks to them
        self._waited = False

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of (virtual) time pass, sending keep-alives on time."""
        if not self.emulated:
            return  # a real relay: the chat model's own thread sends them on the wall clock
        until = self.now() + seconds
        while (due := self.llm.next_keep_warm()) is not None and due < until:
            self.set_clock(due)
            before = self.llm.keep_warm_spent_usd
            if self.llm.run_keep_warm(due):
                self.sent += 1
                print(
                    f"{'':>4} {due / 60:>6.1f}  keep-alive while the check runs: "
                    f"${self.llm.keep_warm_spent_usd - before:.5f}",
                    file=self.out,
                )
        self.set_clock(until)
        self._waited = True

    def after_turn(self, rows: list[_CallRow]) -> None:
        """Note what the call that took the slow tool's result read from the cache."""
        if self._waited and rows:
            self.kept_tokens = rows[-1].read
            self._waited = False

    def print_totals(self, out: TextIO) -> None:
        """What the keep-alives cost against writing the prompt again after the slow tool."""
        if not self.sent:
            return
        spent = self.llm.keep_warm_spent_usd
        prices = lookup_model(DEMO_MODEL).prices
        rewrite = (
            self.kept_tokens * (prices.cache_write_5m - prices.cache_read) / 1e6
            if prices is not None
            else 0.0
        )
        print(
            f"keep-alive: {self.sent} request(s), ${spent:.5f}, kept {self.kept_tokens:,} tokens "
            f"cached through the {SLOW_TOOL_MINUTES:g}-minute check; writing them again would "
            f"have cost ${rewrite:.5f} more than reading them: saved ${rewrite - spent:.5f}",
            file=out,
        )


def _print_totals(rows: list[_CallRow], out: TextIO, keep_alive_usd: float = 0.0) -> None:
    cost = sum(r.cost or 0.0 for r in rows) + keep_alive_usd
    uncached = sum(r.uncached or 0.0 for r in rows)
    read = sum(r.read for r in rows)
    write = sum(r.write for r in rows)
    print("-" * len(_HEADER), file=out)
    print(f"{len(rows)} model calls: {read:,} tokens read from cache, {write:,} written", file=out)
    if keep_alive_usd:
        print(f"(the total below includes ${keep_alive_usd:.5f} of keep-alive requests)", file=out)
    if uncached > 0:
        saved = uncached - cost
        print(
            f"total ${cost:.4f} against ${uncached:.4f} uncached: saved ${saved:.4f} "
            f"({saved / uncached:.0%})",
            file=out,
        )
