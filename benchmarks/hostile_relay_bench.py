"""What a hostile relay costs a caller: peak memory and seconds to the typed error, per attack.

Run ``python benchmarks/hostile_relay_bench.py [--package-root DIR] [--give-up S] [--json PATH]``.

The relay is ``tests/unit_tests/hostile_relay.py`` on a loopback port. Each case runs in a fresh
Python process (so its peak RSS is its own) that builds a ``ChatClaudeRelay`` with ``timeout=5``
and the default retries, makes one call, and reports: the peak RSS (``ru_maxrss``) before and
after the call, the seconds the call took, and how it ended (the exception's type, or
``still running`` when the process gave up after ``--give-up`` seconds, default 40).

``--package-root`` puts another checkout of the package first on the path (e.g. an older
version, to measure before a fix).

Cases: a 200 MB JSON body (``invoke``); one 200 MB SSE line (``stream``); an endless fast SSE
stream (``stream``); a body trickling one byte every 0.5 s (``invoke``); an endless SSE stream
of one event every 0.2 s, without usage (``stream`` and ``astream``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "unit_tests"))

from hostile_relay import HostileRelay  # noqa: E402 -- after the path is set

CASES = [
    ("200 MB JSON body", "big-json", "invoke"),
    ("one 200 MB SSE line", "big-line", "stream"),
    ("endless fast SSE", "endless-fast", "stream"),
    ("trickling body (1 B / 0.5 s)", "trickle", "invoke"),
    ("endless slow SSE, stream", "endless-slow", "stream"),
    ("endless slow SSE, astream", "endless-slow", "astream"),
]

CHILD = r"""
import asyncio, json, os, resource, sys, threading, time, warnings
warnings.simplefilter("ignore")
url, how, give_up = sys.argv[1], sys.argv[2], float(sys.argv[3])
from langchain_claude_relay import ChatClaudeRelay

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

llm = ChatClaudeRelay(base_url=url, api_key="sk-bench-key-123456", model="claude-sonnet-4-6",
                      cache="off", ledger=False, timeout=5)
before = peak_mib()
start = time.monotonic()

def report(outcome):
    print(json.dumps({"outcome": outcome, "seconds": round(time.monotonic() - start, 2),
                      "rss_before_mib": round(before, 1), "rss_peak_mib": round(peak_mib(), 1)}),
          flush=True)
    os._exit(0)

threading.Timer(give_up, lambda: report("still running")).start()
try:
    if how == "invoke":
        llm.invoke("hi")
    elif how == "stream":
        for _ in llm.stream("hi"):
            pass
    else:
        async def consume():
            async for _ in llm.astream("hi"):
                pass
        asyncio.run(consume())
    report("returned")
except Exception as exc:
    report(type(exc).__name__)
"""


def run_case(url: str, how: str, give_up: float, package_root: str | None) -> dict[str, Any]:
    """One case in a fresh interpreter; its JSON report."""
    env = dict(os.environ)
    if package_root:
        env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", CHILD, url, how, str(give_up)],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_root or HERE.parent,  # ``-c`` puts the working directory first on the path
        timeout=give_up + 60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"outcome": f"crashed: {done.stderr.strip()[-300:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    """Run every case and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-root", help="a checkout of the package to measure instead")
    parser.add_argument("--give-up", type=float, default=40.0, help="seconds before giving up")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    with HostileRelay() as relay:
        for label, kind, how in CASES:
            result = run_case(relay.url(kind), how, args.give_up, args.package_root)
            rows.append({"case": label, "call": how, **result})
            print(
                f"{label:<30} {how:<8} {result.get('outcome', '?'):<22} "
                f"{result.get('seconds', float('nan')):>7} s  "
                f"peak RSS {result.get('rss_peak_mib', float('nan')):>8} MiB "
                f"(before the call {result.get('rss_before_mib', float('nan'))} MiB)",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
