"""``claude-relay bench``: caching cost against an offline optimum and the peers; overhead.

Modules: ``workloads`` (seeded traces in virtual time), ``strategies`` (the peers' marker rules
and ours), ``oracle`` (the lower bound and why it is one), ``runner`` (replay through the
emulator, billing from its log), ``overhead`` (latency and throughput against ``ChatOpenAI`` and
the raw ``openai`` client, planning time), ``load`` (the emulator under concurrent load),
``failures`` (a failed phase, recorded), ``report`` (table, JSON, chart).

Phases (each trace, overhead, load, chart) run one after the other; one that fails is recorded
with what went wrong, reported in its place, and the command exits with status 1 without a
traceback; the other phases still run.

>>> run_bench(["--quick", "--json", "bench.json"])   # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from langchain_claude_relay.bench.explain import Explanation, explain_nodes, format_explanation
from langchain_claude_relay.bench.failures import PhaseFailure, attempt
from langchain_claude_relay.bench.load import LoadSettings, measure_load
from langchain_claude_relay.bench.oracle import (
    OracleResult,
    Rates,
    RequestProfile,
    oracle_cost,
    profile_request,
)
from langchain_claude_relay.bench.overhead import OverheadSettings, measure_overhead
from langchain_claude_relay.bench.report import (
    BenchResult,
    TraceResult,
    evaluate_targets,
    format_report,
    write_chart,
    write_json,
)
from langchain_claude_relay.bench.runner import (
    DAY,
    BenchError,
    ReplaySession,
    RunMetrics,
    StrategyRun,
    check_totals,
    run_metrics,
)
from langchain_claude_relay.bench.strategies import STRATEGIES, Strategy
from langchain_claude_relay.bench.workloads import WORKLOADS, Trace, build_workloads
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.tokens import EmulatorTokenizer
from langchain_claude_relay.models import lookup_model

T = TypeVar("T")

__all__ = ["add_arguments", "build_parser", "run", "run_bench", "explain", "BenchError"]

_ORACLE_SLACK = 1e-9
"""Relative tolerance when checking that the oracle is below every strategy (float sums)."""


KEEP_WARM_BUDGET_USD = 1.0
"""``ours``'s keep-alive budget in every replay (``--keep-warm-budget``; 0: ``keep_warm="off"``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options to ``parser`` (for the ``claude-relay bench`` subcommand)."""
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--chart", metavar="PATH", help="also draw a PNG chart (needs matplotlib)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny traces and few overhead runs (< 30 s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="workload seed (default: 0)")
    parser.add_argument(
        "--traces",
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--no-overhead", action="store_true", help="skip the latency and planning measurements"
    )
    parser.add_argument("--no-load", action="store_true", help="skip the emulator load check")
    parser.add_argument(
        "--keep-warm-budget",
        type=float,
        default=KEEP_WARM_BUDGET_USD,
        metavar="USD",
        help=f"ours' keep-alive budget per replay (default: {KEEP_WARM_BUDGET_USD:g}; "
        "0: keep_warm='off', the chat model's default)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is not met"
    )
    explain = parser.add_argument_group(
        "explaining one trace",
        "--explain replays one trace with ours only (no peers, overhead or load) and prints, "
        "per prefix node of the oracle's relaxation, what ours paid against the oracle",
    )
    explain.add_argument(
        "--explain",
        metavar="TRACE",
        choices=list(WORKLOADS),
        help=f"the trace to explain, one of: {', '.join(WORKLOADS)}",
    )
    explain.add_argument(
        "--day",
        type=int,
        choices=(1, 2),
        default=1,
        help="the day to explain (2: replayed again on day one's store; default: 1)",
    )
    explain.add_argument(
        "--top", type=int, default=15, metavar="N", help="nodes to list (default: 15)"
    )


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser with the bench options."""
    parser = argparse.ArgumentParser(
        prog="claude-relay bench",
        description="Prompt-caching cost against an offline optimum and peer strategies, "
        "overhead against ChatOpenAI, and the emulator under load, all on the local emulator.",
    )
    add_arguments(parser)
    return parser


def _progress(text: str, *, step: int | None = None, steps: int | None = None) -> None:
    """A progress line on stderr; on a terminal, prefixed by a bar when the step is known."""
    if step is not None and steps and sys.stderr.isatty():
        width = 24
        done = round(width * step / steps)
        text = f"[{'#' * done}{'.' * (width - done)}] {step}/{steps} {text}"
    print(text, file=sys.stderr, flush=True)


def _replay_days(
    session: ReplaySession,
    trace: Trace,
    strategy: Strategy,
    budget_usd: float,
    *,
    days_wanted: int = 2,
) -> list[tuple[StrategyRun, RunMetrics]]:
    """Replay a baseline (one day: it learns nothing), or ours on day one then day two.

    ``days_wanted=1`` stops ours after day one (``--explain`` of day one). If a concurrent
    instant was not concurrent (a loaded machine), everything is replayed again, slower (ours
    from a fresh store).
    """
    for _attempt in range(3):
        state = session.new_state(budget_usd=budget_usd) if strategy.planned else None
        days = []
        for day in range(days_wanted if strategy.planned else 1):
            run = session.replay(trace, strategy, state=state, offset=day * DAY)
            days.append((run, run_metrics(run)))
            if days[-1][1].concurrency_violations:
                break
        else:
            return days
        session.concurrent_delay *= 3
        _progress(f"  {trace.name}/{strategy.name}: concurrent requests overlapped; retrying")
    msg = f"{trace.name}/{strategy.name}: could not send concurrent requests concurrently"
    raise BenchError(msg)


def _profiles(trace: Trace, tokenizer: EmulatorTokenizer) -> list[RequestProfile]:
    """Every request's profile, in trace order."""
    return [
        profile_request(r.messages, r.tools, trace.model_of(r), r.time, tokenizer)
        for r in trace.requests
    ]


def _oracle(
    trace: Trace, tokenizer: EmulatorTokenizer, configured_minimum: int | None
) -> tuple[OracleResult, list[RequestProfile]]:
    """The bound (per model, summed: caches are per model) and every request's profile."""
    profiles = _profiles(trace, tokenizer)
    parts = []
    for model in trace.models:
        mine = [
            p for p, r in zip(profiles, trace.requests, strict=True) if trace.model_of(r) == model
        ]
        minimum = configured_minimum or lookup_model(model).min_cache_tokens
        parts.append(oracle_cost(mine, Rates.for_model(model), minimum))
    oracle = OracleResult(
        sum(p.cost_usd for p in parts),
        sum(p.uncached_usd for p in parts),
        sum(p.nodes for p in parts),
        sum(p.below_minimum for p in parts),
    )
    return oracle, profiles


def _check_bound(trace: Trace, oracle: OracleResult, name: str, m: RunMetrics) -> None:
    if oracle.cost_usd > m.cost_usd * (1 + _ORACLE_SLACK):
        msg = (
            f"{trace.name}: the oracle (${oracle.cost_usd:.6f}) is above {name} "
            f"(${m.cost_usd:.6f}): it is not a lower bound"
        )
        raise BenchError(msg)


def _trace_result(
    session: ReplaySession, trace: Trace, tokenizer: EmulatorTokenizer, budget_usd: float
) -> TraceResult:
    oracle, profiles = _oracle(trace, tokenizer, session.emulator.settings.min_cache_tokens)
    metrics: dict[str, RunMetrics] = {}
    warnings: dict[str, tuple[str, ...]] = {}
    day_two: RunMetrics | None = None
    for strategy in STRATEGIES:
        days = _replay_days(session, trace, strategy, budget_usd)
        for day, (run, m) in enumerate(days, start=1):
            check_totals(run, profiles)
            name = strategy.name if day == 1 else f"{strategy.name} (day 2)"
            _check_bound(trace, oracle, name, m)
            keep = (
                f", {m.keep_alive_requests} keep-alives ${m.keep_alive_cost_usd:.4f}"
                if m.keep_alive_budget_usd is not None
                else ""
            )
            _progress(
                f"  {trace.name:<14} {name:<16} ${m.cost_usd:.4f} "
                f"({m.cost_usd / oracle.cost_usd:.3f}x oracle{keep}, {run.wall_seconds:.1f} s)"
            )
        metrics[strategy.name] = days[0][1]
        warnings[strategy.name] = days[0][0].warnings
        if len(days) > 1:
            day_two = days[1][1]
    return TraceResult(
        trace.name,
        trace.description,
        len(trace.requests),
        trace.duration / 3600.0,
        oracle,
        next(iter(metrics.values())).output_cost_usd,
        metrics,
        warnings,
        day_two,
    )


def _phase(phase: str, action: Callable[[], T], failures: list[PhaseFailure]) -> T | None:
    """``attempt(...)``, with a progress line when the phase fails."""
    before = len(failures)
    done = attempt(phase, action, failures)
    if len(failures) > before:
        _progress(f"  {phase}: FAILED: {failures[-1].error}")
    return done


def _traces(
    workloads: Sequence[Trace],
    quick: bool,
    steps: int,
    failures: list[PhaseFailure],
    budget_usd: float,
) -> list[TraceResult]:
    """Replay every trace; a trace that fails is recorded and the next one runs."""
    results: list[TraceResult] = []
    with (
        RelayEmulator() as emulator,
        ReplaySession(emulator, concurrent_delay=0.3 if quick else 1.0) as session,
    ):
        tokenizer = EmulatorTokenizer(emulator.settings.token_costs)
        for number, trace in enumerate(workloads):
            _progress(f"{trace.name}: {len(trace.requests)} requests", step=number, steps=steps)
            action = functools.partial(_trace_result, session, trace, tokenizer, budget_usd)
            done = _phase(f"trace {trace.name}", action, failures)
            if done is not None:
                results.append(done)
    return results


def run(
    *,
    seed: int = 0,
    quick: bool = False,
    traces: Sequence[str] | None = None,
    overhead: bool = True,
    load: bool = True,
    keep_warm_budget_usd: float = KEEP_WARM_BUDGET_USD,
) -> BenchResult:
    """Run the benchmark and return its results (nothing printed but progress on stderr).

    A phase that fails (an invariant broken: a request billed twice or for other tokens than
    profiled, the oracle above a strategy, concurrency not achieved, an emulator error under
    load; or an exception) is recorded in ``BenchResult.failures``, and the others still run.

    Args:
        seed: the workload seed.
        quick: tiny traces, few overhead iterations, a light load.
        traces: a subset of the workloads (default: all).
        overhead: whether to measure latency, throughput and planning time.
        load: whether to run the emulator load check.
        keep_warm_budget_usd: ours' keep-alive budget per replay (0: ``keep_warm="off"``).

    Returns:
        The results, with the targets evaluated and the failures listed.

    Raises:
        ValueError: for an unknown trace name (before anything runs).
    """
    started = time.perf_counter()
    workloads = build_workloads(seed, quick=quick, names=traces)
    failures: list[PhaseFailure] = []
    steps = len(workloads) + int(overhead) + int(load)
    if not keep_warm_budget_usd >= 0:
        msg = f"keep_warm_budget_usd={keep_warm_budget_usd!r}: pass a number of dollars >= 0"
        raise ValueError(msg)
    results = (
        _phase(
            "traces",
            lambda: _traces(workloads, quick, steps, failures, keep_warm_budget_usd),
            failures,
        )
        or []
    )
    report = None
    if overhead:
        _progress(
            "overhead: paired invoke/stream runs, async throughput, planning time",
            step=len(workloads),
            steps=steps,
        )
        settings = OverheadSettings.quick() if quick else OverheadSettings()
        report = _phase("overhead", lambda: measure_overhead(settings), failures)
    load_report = None
    if load:
        _progress(
            "load: the emulator at concurrency 1-256, plain and streamed, thread and process",
            step=len(workloads) + int(overhead),
            steps=steps,
        )
        load_settings = LoadSettings.quick() if quick else LoadSettings()
        load_report = _phase("load", lambda: measure_load(load_settings), failures)
        if load_report is not None and (problem := load_report.failure()) is not None:
            failures.append(PhaseFailure("load", problem))
            _progress(f"  load: FAILED: {problem}")
    checks: tuple[str, ...] = (
        f"oracle (keep-alives allowed) <= every strategy on {len(results)} traces, both days",
        "every request billed once, for exactly the profiled tokens",
        "concurrent instants verified (no read of a same-instant write)",
    )
    if load_report is not None and load_report.errors == 0:
        sent = sum(r.requests for r in load_report.rows)
        checks += (f"no emulator error under load ({sent} requests)",)
    return BenchResult(
        seed=seed,
        quick=quick,
        model=workloads[0].model if workloads else "",
        traces=tuple(results),
        overhead=report,
        targets=tuple(evaluate_targets(results, report)),
        checks=checks,
        elapsed_seconds=time.perf_counter() - started,
        load=load_report,
        failures=tuple(failures),
    )


def explain(
    name: str,
    *,
    seed: int = 0,
    quick: bool = False,
    day: int = 1,
    keep_warm_budget_usd: float = KEEP_WARM_BUDGET_USD,
) -> Explanation:
    """Replay one trace with ours (day one, then day two on the same store) and explain a day.

    Args:
        name: the trace.
        seed: the workload seed.
        quick: the tiny version of the trace.
        day: the day to explain (1 or 2).
        keep_warm_budget_usd: ours' keep-alive budget per replay (0: ``keep_warm="off"``).

    Returns:
        Per prefix node of the oracle's relaxation, ours against the oracle.

    Raises:
        ValueError: for an unknown trace name or a day other than 1 or 2.
        BenchError: if the replay's bills do not match the profiles.
    """
    if day not in (1, 2):
        msg = f"day={day!r}: pass 1 or 2"
        raise ValueError(msg)
    (trace,) = build_workloads(seed, quick=quick, names=[name])
    (ours,) = [s for s in STRATEGIES if s.planned]
    with (
        RelayEmulator() as emulator,
        ReplaySession(emulator, concurrent_delay=0.3 if quick else 1.0) as session,
    ):
        tokenizer = EmulatorTokenizer(emulator.settings.token_costs)
        profiles = _profiles(trace, tokenizer)
        replayed = _replay_days(session, trace, ours, keep_warm_budget_usd, days_wanted=day)
        run, _ = replayed[day - 1]
        check_totals(run, profiles)
        minimum = emulator.settings.min_cache_tokens
    return explain_nodes(trace, profiles, run, day=day, minimum=minimum)


def _run_explain(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--explain TRACE``: the per-node table instead of the bench."""
    ignored = [f for f in ("json", "chart", "traces", "strict") if getattr(args, f)]
    if ignored:
        parser.error(f"--explain does not combine with --{', --'.join(ignored)}")
    if args.top < 1:
        parser.error(f"--top {args.top}: pass a number of nodes >= 1")
    try:
        explanation = explain(
            args.explain,
            seed=args.seed,
            quick=args.quick,
            day=args.day,
            keep_warm_budget_usd=args.keep_warm_budget,
        )
    except (ValueError, BenchError) as exc:
        print(f"claude-relay bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("claude-relay bench: interrupted", file=sys.stderr)
        return 130
    print(format_explanation(explanation, args.top))
    return 0


def run_bench(argv: Sequence[str] | None = None) -> int:
    """``claude-relay bench [--json PATH] [--quick] [--chart PATH] ...``; returns the exit status.

    Never ends in a traceback: a failed phase is one line on stderr, its place in the report
    and an entry of ``failures`` in the JSON.

    Args:
        argv: the options (default: ``sys.argv[1:]``).

    Returns:
        0 when every phase ran (targets missed or not, unless ``--strict``); 1 when a phase
        failed (an invariant broken, an error), the options are wrong, the JSON cannot be
        written or a ``--strict`` target was missed; 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.explain:
        return _run_explain(parser, args)
    names = None
    if args.traces is not None:  # an empty list names no trace: not "all of them"
        names = [n.strip() for n in args.traces.split(",") if n.strip()]
        if not names:
            parser.error(
                f"--traces names no trace: give at least one of {', '.join(WORKLOADS)} "
                "(or leave --traces out to run them all)"
            )
    try:
        result = run(
            seed=args.seed,
            quick=args.quick,
            traces=names,
            overhead=not args.no_overhead,
            load=not args.no_load,
            keep_warm_budget_usd=args.keep_warm_budget,
        )
    except ValueError as exc:  # bad options, before anything ran
        print(f"claude-relay bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("claude-relay bench: interrupted", file=sys.stderr)
        return 130
    notes: list[str] = []
    failures = list(result.failures)
    if args.chart:
        problem = _phase("chart", lambda: write_chart(result, args.chart), failures)
        if len(failures) == len(result.failures):
            notes.append(problem or f"chart written to {args.chart}")
    if args.json:
        notes.append(f"JSON written to {args.json}")
    result = replace(result, notes=tuple(notes), failures=tuple(failures))
    if args.json:
        try:
            write_json(result, args.json)
        except OSError as exc:
            print(f"claude-relay bench: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    print(format_report(result))
    for failure in result.failures:
        print(f"claude-relay bench: FAILED {failure.phase}: {failure.error}", file=sys.stderr)
    if result.failures:
        return 1
    if args.strict and any(t.met is False for t in result.targets):
        return 1
    return 0
