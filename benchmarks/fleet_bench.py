"""Fleet rate limiting: 4 processes x N calls against the emulator's tier limits.

Run ``python benchmarks/fleet_bench.py [--calls N] [--tier tier1] [--threads T]
[--window-factor F] [--redis URL] [--json PATH]``.

Four worker processes, each with ``T`` threads, make ``N`` ``ChatClaudeRelay`` calls in total
per process (distinct ~300-token prompts, ``cache="off"``, ``max_tokens=32``) against one
``RelayEmulator`` that enforces the tier's limits on the wall clock. Two configurations:

* ``shared``: every process uses one ``RedisRateLimiter`` (the account's buckets in Redis);
* ``independent``: each process has its own ``RateLimiter`` with the account's limits (what a
  fleet gets today without Redis).

A call refused with a 429 is retried after the ``retry-after`` the emulator sends (the client's
own retries are off, so every 429 is counted); a call counts as done once it is answered.
Printed per configuration: 429s received, calls answered, wall seconds from the first call to
the last answer, throughput (answered calls per minute) and the emulator's own count of
requests and 429s.

**How the server counts** (``--server``). ``bucket`` (the default) is Anthropic's documented
model: per limit a token bucket that holds the per-minute limit, starts full and refills
continuously; the bench puts it in the emulator in place of the emulator's own counter (the
emulator's ``admit`` interface, refusals with ``retry-after``). ``window`` is the emulator's own
sliding 60-second window at the tier's limits times ``--window-factor``. A bucket admits up to
twice its limit in some 60 s, so against a window at 1x even one shared bucket is refused in its
first minute, and at 2x the window sustains twice the tier's rate: both distort the comparison,
and the table says which model it used.

Measured (2 cores, loopback, 2 threads per process; ``--server bucket``):

=========  =========  ===========  =====  ===========  =========
tier       calls      limiter      429s   seconds      calls/min
=========  =========  ===========  =====  ===========  =========
tier1      4 x 25     shared       1      61.3         97.9
tier1      4 x 25     independent  167    61.3         97.9
tier2      4 x 110    shared       1      39.4         670.8
tier2      4 x 110    independent  243    40.1         657.5
=========  =========  ===========  =====  ===========  =========

Throughput is the server's (both fleets keep it busy; the independent one by retrying after
429s); the shared limiter removes the 429s (the one left is network jitter: two calls the
buckets spaced exactly one token apart reached the server a little closer together). Against
the emulator's own sliding window (tier1, 4 x 25): at 1x both fleets drew 8 429s (one per
thread in the first minute: a full bucket bursts past a 60 s window); at 2x neither drew any,
and the independent fleet finished in 3.7 s against 60.2 s, because a window of twice the
limit sustains twice the rate that a bucket allows.

Needs ``redis-server`` on the PATH (started on a free loopback port, in a temporary directory)
or ``--redis URL``, and the ``redis`` and ``emulator`` extras.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODEL = "claude-sonnet-4-6"
WORKERS = 4
WORDS = ("relay", "cache", "prefix", "token", "window", "system", "marker", "budget", "answer")


@dataclass
class Row:
    mode: str
    calls: int
    answered: int
    refused_429: int
    seconds: float
    per_minute: float
    emulator_requests: int
    emulator_429: int


def _prompt(worker: int, index: int) -> str:
    rng = random.Random(worker * 100_003 + index)
    return f"Call {worker}-{index}. " + " ".join(rng.choice(WORDS) for _ in range(240))


def worker(
    mode: str,
    base_url: str,
    redis_url: str,
    account: str,
    limits: dict[str, float | None],
    worker_id: int,
    calls: int,
    threads: int,
    ready: Any,
    go: Any,
    out: str,
) -> None:
    from langchain_core.messages import HumanMessage

    from langchain_claude_relay import ChatClaudeRelay
    from langchain_claude_relay.errors import RateLimitError
    from langchain_claude_relay.ledger import MemoryLedger
    from langchain_claude_relay.limiter import RateLimiter
    from langchain_claude_relay.limiter.redis import RedisRateLimiter

    if mode == "shared":
        limiter: RateLimiter = RedisRateLimiter(**limits, redis=redis_url, key=account)
        limiter.available()  # connect before the clock starts
    else:
        limiter = RateLimiter(**limits)
    llm = ChatClaudeRelay(
        model=MODEL,
        base_url=base_url,
        api_key="test",
        cache="off",
        ledger=MemoryLedger(),
        rate_limiter=limiter,
        max_retries=0,
        max_tokens=32,
    )
    lock = threading.Lock()
    refused, answered, finished = [0], [0], [0.0]

    def run(indices: list[int]) -> None:
        for index in indices:
            message = [HumanMessage(_prompt(worker_id, index))]
            while True:
                try:
                    llm.invoke(message)
                except RateLimitError as exc:
                    with lock:
                        refused[0] += 1
                    time.sleep(min(60.0, exc.retry_after or 1.0))
                    continue
                with lock:
                    answered[0] += 1
                    finished[0] = max(finished[0], time.time())
                break

    shares = [list(range(calls))[t::threads] for t in range(threads)]
    ready.release()
    go.wait(120)
    pool = [threading.Thread(target=run, args=(share,)) for share in shares]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    Path(out).write_text(
        json.dumps({"refused": refused[0], "answered": answered[0], "finished": finished[0]})
    )


class BucketServer:
    """The server side as Anthropic documents it: a token bucket per limit (capacity = limit).

    Has the emulator's ``RateLimiter.admit`` interface, so it replaces the emulator's sliding
    window for this bench.
    """

    def __init__(self, limits: dict[str, float | None], now: float) -> None:
        self.capacity = {name: float(v) for name, v in limits.items() if v is not None}
        self.level = dict(self.capacity)
        self.at = now

    def admit(self, now: float, input_tokens: int, output_tokens: int) -> Any:
        from langchain_claude_relay.emulator.faults import RateLimited

        elapsed, self.at = max(0.0, now - self.at), max(now, self.at)
        for name, capacity in self.capacity.items():
            self.level[name] = min(capacity, self.level[name] + capacity / 60 * elapsed)
        amounts = {"rpm": 1, "itpm": input_tokens, "otpm": output_tokens}
        for name, capacity in self.capacity.items():
            missing = min(amounts[name], capacity) - self.level[name]
            if missing > 0:
                wait = missing / (capacity / 60)
                message = f"rate limit: {capacity:g} {name}; retry after {wait:.1f} s"
                return RateLimited(name, wait, message)
        for name in self.capacity:
            self.level[name] -= amounts[name]
        return None


def run_mode(mode: str, args: argparse.Namespace, redis_url: str, tmp: Path) -> Row:
    from langchain_claude_relay.emulator import RelayEmulator
    from langchain_claude_relay.limiter import PRESETS

    tier = PRESETS[args.tier]
    limits = asdict(tier)
    factor = args.window_factor if args.server == "window" else 1.0
    window = {
        name: None if value is None else round(value * factor) for name, value in limits.items()
    }
    spawn = multiprocessing.get_context("spawn")
    with RelayEmulator(clock="wall", **window) as emu:
        if args.server == "bucket":
            emu.core._limiter = BucketServer(limits, emu.now)  # the server model of this run
        ready, go = spawn.Semaphore(0), spawn.Event()
        account = f"bench-{uuid.uuid4().hex[:8]}"
        outs = [tmp / f"{mode}{i}.json" for i in range(WORKERS)]
        procs = [
            spawn.Process(
                target=worker,
                args=(
                    mode,
                    emu.base_url,
                    redis_url,
                    account,
                    limits,
                    i,
                    args.calls,
                    args.threads,
                    ready,
                    go,
                    str(out),
                ),
            )
            for i, out in enumerate(outs)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            if not ready.acquire(timeout=120):
                msg = "a worker did not start"
                raise RuntimeError(msg)
        started = time.time()
        go.set()
        for p in procs:
            p.join()
        results = [json.loads(out.read_text()) for out in outs]
        log = emu.request_log
    finished = max(r["finished"] for r in results)
    answered = sum(r["answered"] for r in results)
    seconds = finished - started
    return Row(
        mode=mode,
        calls=WORKERS * args.calls,
        answered=answered,
        refused_429=sum(r["refused"] for r in results),
        seconds=round(seconds, 1),
        per_minute=round(answered / seconds * 60, 1),
        emulator_requests=len(log),
        emulator_429=sum(1 for r in log if r.status == 429),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "redis-server is not installed (apt-get install redis-server) and no --redis URL"
        raise SystemExit(msg)
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(  # noqa: S603 -- a fixed command line
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="calls per process")
    parser.add_argument("--threads", type=int, default=2, help="threads per process")
    parser.add_argument("--tier", default="tier1", help="limiter.PRESETS name")
    parser.add_argument("--server", choices=("bucket", "window"), default="bucket")
    parser.add_argument("--window-factor", type=float, default=1.0, help="--server window only")
    parser.add_argument("--redis", default=None, help="a Redis URL (default: start one)")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    with redis_server(args.redis) as url, tempfile.TemporaryDirectory() as tmp:
        rows = [run_mode(mode, args, url, Path(tmp)) for mode in ("shared", "independent")]
    from langchain_claude_relay.limiter import PRESETS

    tier = PRESETS[args.tier]
    server = (
        "token bucket per limit (capacity = limit)"
        if args.server == "bucket"
        else f"sliding 60 s window at {args.window_factor:g}x the limits"
    )
    print(
        f"\n{WORKERS} processes x {args.calls} calls ({args.threads} threads each), {args.tier} "
        f"({tier.rpm:g} RPM / {tier.itpm:g} ITPM); server: {server}\n"
    )
    header = (
        f"{'limiter':<12} {'answered':>8} {'429s':>6} {'seconds':>8} {'calls/min':>10} "
        f"{'emu reqs':>9} {'emu 429':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.mode:<12} {row.answered:>8} {row.refused_429:>6} {row.seconds:>8.1f} "
            f"{row.per_minute:>10.1f} {row.emulator_requests:>9} {row.emulator_429:>8}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
