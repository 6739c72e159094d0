"""``claude-relay bench --quick`` end to end, and the pieces it relies on."""

from __future__ import annotations

import gc
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest

from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay.bench import run, run_bench
from langchain_claude_relay.bench.report import format_report, write_chart
from langchain_claude_relay.bench.strategies import (
    BASELINES,
    STRATEGIES,
    prefix_gaps,
    rule_of_thumb_ttl,
    system_end,
    tools_end,
)
from langchain_claude_relay.bench.workloads import WORKLOADS, build_workloads
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner.rules import validate_user_markers

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, Path]:
    directory = tmp_path_factory.mktemp("bench")
    chart = directory / "bench.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = run_bench(
            ["--quick", "--json", str(directory / "bench.json"), "--chart", str(chart)]
        )
        gc.collect()
    data = json.loads((directory / "bench.json").read_text(encoding="utf-8"))
    data["_resource_warnings"] = [
        str(w.message) for w in caught if issubclass(w.category, ResourceWarning)
    ]
    return status, data, chart


def test_quick_run_covers_every_trace_and_strategy(quick_run: tuple[int, dict, Path]) -> None:
    status, data, _ = quick_run
    assert status == 0
    assert data["quick"] is True
    assert [t["trace"] for t in data["traces"]] == list(WORKLOADS)
    names = [s.name for s in STRATEGIES]
    for trace in data["traces"]:
        assert list(trace["metrics"]) == names
        assert trace["requests"] > 0
    rows = data["table"]
    assert len(rows) == len(WORKLOADS) * (len(names) + 2)  # the oracle, and ours on day two
    assert data["elapsed_seconds"] < 90, "the smoke run must stay quick"


def test_ours_is_replayed_on_day_two_with_its_keep_alives(
    quick_run: tuple[int, dict, Path],
) -> None:
    _, data, _ = quick_run
    for trace in data["traces"]:
        for day in (trace["metrics"]["ours"], trace["day_two"]):
            assert day is not None
            assert day["keep_alive_budget_usd"] == pytest.approx(1.0)
            assert 0 <= day["keep_alive_cost_usd"] <= day["keep_alive_budget_usd"]
            assert day["keep_alive_cost_usd"] <= day["cost_usd"]
            assert (day["keep_alive_requests"] == 0) == (day["keep_alive_cost_usd"] == 0)
        for name, metrics in trace["metrics"].items():
            if name != "ours":
                assert metrics["keep_alive_requests"] == 0  # peers send only the trace
    assert sum(t["metrics"]["ours"]["keep_alive_requests"] for t in data["traces"]) > 0
    names = [t["name"] for t in data["targets"]]
    assert any(n.startswith("day two") for n in names)
    assert any("keep-alive spend" in n for n in names)


def test_oracle_is_a_lower_bound_in_the_run(quick_run: tuple[int, dict, Path]) -> None:
    _, data, _ = quick_run
    for trace in data["traces"]:
        oracle = trace["oracle"]["cost_usd"]
        assert 0 < oracle <= trace["oracle"]["uncached_usd"] * (1 + 1e-9)
        for name, metrics in [*trace["metrics"].items(), ("ours (day 2)", trace["day_two"])]:
            assert metrics["cost_usd"] >= oracle * (1 - 1e-9), (trace["trace"], name)
            assert metrics["concurrency_violations"] == 0
    none = {t["trace"]: t["metrics"]["none"] for t in data["traces"]}
    for trace in data["traces"]:  # no markers: no cache traffic, cost = uncached
        assert none[trace["trace"]]["read_tokens"] == 0
        assert none[trace["trace"]]["cost_usd"] == pytest.approx(trace["oracle"]["uncached_usd"])


def test_short_prompts_cost_the_same_for_everyone(quick_run: tuple[int, dict, Path]) -> None:
    _, data, _ = quick_run
    short = next(t for t in data["traces"] if t["trace"] == "short")
    costs = {m["cost_usd"] for m in short["metrics"].values()}
    assert max(costs) == pytest.approx(min(costs))
    assert short["oracle"]["below_minimum"] == short["requests"]


def test_overhead_and_targets_are_reported(quick_run: tuple[int, dict, Path]) -> None:
    _, data, _ = quick_run
    overhead = data["overhead"]
    metrics = {p["metric"] for p in overhead["paired"]}
    assert metrics == {"invoke", "stream_first_chunk"}
    assert all(p["variant_median_ms"] > 0 and p["median_ratio"] > 0 for p in overhead["paired"])
    assert {r["client"] for r in overhead["throughput"]} >= {"relay[planner,memory]", "openai"}
    assert overhead["planning"]
    assert overhead["planning"][0]["warm_ms"] > 0
    assert len(data["targets"]) == 9
    assert all(t["met"] in (True, False, None) for t in data["targets"])


def test_emulator_load_is_reported_without_errors(quick_run: tuple[int, dict, Path]) -> None:
    _, data, _ = quick_run
    rows = data["load"]["rows"]
    assert {(r["emulator"], r["mode"], r["concurrency"]) for r in rows} == {
        (emulator, mode, concurrency)
        for emulator in ("thread", "process")
        for mode in ("plain", "stream")
        for concurrency in (1, 16, 64, 256)
    }
    assert all(r["requests"] >= r["concurrency"] and r["requests_per_second"] > 0 for r in rows)
    assert data["load"]["errors"] == 0
    assert data["failures"] == []


def test_nothing_is_left_open(quick_run: tuple[int, dict, Path]) -> None:
    _, data, _ = quick_run
    assert data["_resource_warnings"] == []


def test_chart_is_drawn_or_explained(quick_run: tuple[int, dict, Path]) -> None:
    _, data, chart = quick_run
    if HAS_MATPLOTLIB:
        assert chart.is_file()
        assert chart.stat().st_size > 0
    else:
        assert not chart.exists()
        assert any("matplotlib is not installed" in note for note in data["notes"])


def test_chart_without_matplotlib_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(quick=True, traces=["short"], overhead=False, load=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    problem = write_chart(result, tmp_path / "chart.png")
    assert problem is not None
    assert "matplotlib is not installed" in problem
    assert not (tmp_path / "chart.png").exists()
    assert "short" in format_report(result)


def test_workloads_are_seeded() -> None:
    first = build_workloads(3, quick=True)
    again = build_workloads(3, quick=True)
    other = build_workloads(4, quick=True)
    assert [[r.messages for r in t.requests] for t in first] == [
        [r.messages for r in t.requests] for t in again
    ]
    assert [t.requests[0].messages for t in first] != [t.requests[0].messages for t in other]
    fan_out = next(t for t in first if t.name == "fan_out")
    assert max(len(g) for g in fan_out.groups()) > 1
    for trace in first:
        times = [r.time for r in trace.requests]
        assert times == sorted(times)
        if trace.name != "fan_out":
            assert len(set(times)) == len(times), "only fan_out is concurrent on purpose"


def test_baseline_markers_are_valid_requests() -> None:
    for trace in build_workloads(0, quick=True):
        rules = {s.name: s.rule_for(trace) for s in BASELINES}
        for item in trace.requests:
            request = to_claude_request(
                list(item.messages), model=trace.model, tools=list(item.tools)
            )
            for name, rule in rules.items():
                try:
                    validate_user_markers(rule(request))
                except RequestValidationError as exc:
                    pytest.fail(f"{name} placed markers Claude refuses: {exc}")
            marked = rules["always_1h"](request).markers()
            assert system_end(request) in marked
            if request.tools:
                assert tools_end(request) in marked
            places = bool(request.tools) + bool(request.system) + len(request.messages)
            assert len(marked) == min(4, places)
            assert {m.ttl for m in marked.values()} == {"1h"}


@pytest.mark.parametrize("ttl", ["5m", "1h"])
def test_the_2026_middleware_marks_tool_system_and_top_level_with_one_ttl(ttl: str) -> None:
    trace = next(t for t in build_workloads(0, quick=True) if t.name == "agent")
    item = trace.requests[-1]
    request = to_claude_request(list(item.messages), model=trace.model, tools=list(item.tools))
    middleware = next(s for s in BASELINES if s.name == f"middleware_{ttl}").rule_for(trace)
    sent = middleware(request)
    assert set(sent.markers()) == {tools_end(request), system_end(request)}
    assert {m.ttl for m in sent.markers().values()} == {ttl}
    assert sent.cache_control is not None
    assert sent.cache_control.ttl == ttl
    automatic = next(s for s in BASELINES if s.name == f"auto_{ttl}").rule_for(trace)(request)
    assert automatic.markers() == {}
    assert automatic.cache_control is not None
    assert automatic.cache_control.ttl == ttl


@pytest.mark.parametrize(
    ("gaps", "ttl"),
    [
        ([], "5m"),
        ([30.0] * 20, "5m"),  # every gap under 5 minutes
        ([30.0] * 19 + [600.0], "5m"),  # exactly 1 in 20 between 5 and 60 minutes: not more
        ([30.0] * 18 + [600.0, 900.0], "1h"),  # 2 in 20
        ([30.0] * 17 + [600.0, 4000.0, 5000.0], "5m"),  # 2 of 3 long pauses past an hour
        ([30.0] * 16 + [600.0, 900.0, 1200.0, 4000.0], "1h"),  # 1 of 4 past an hour: rare
        ([30.0] * 16 + [600.0, 4000.0, 5000.0, 6000.0], "5m"),  # 3 of 4 past an hour
    ],
)
def test_anthropics_ttl_rule_of_thumb(gaps: list[float], ttl: str) -> None:
    assert rule_of_thumb_ttl(gaps) == ttl


def test_the_rule_of_thumb_looks_at_the_whole_trace() -> None:
    for trace in build_workloads(0, quick=True):
        rule = next(s for s in BASELINES if s.name == "rule_of_thumb").rule_for(trace)
        request = to_claude_request(
            list(trace.requests[0].messages), model=trace.model, tools=list(trace.requests[0].tools)
        )
        sent = rule(request)
        assert sent.cache_control is not None
        assert sent.cache_control.ttl == rule_of_thumb_ttl(prefix_gaps(trace))


def test_bad_trace_name_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bench(["--quick", "--traces", "nope", "--no-overhead", "--no-load"]) == 1
    assert "unknown workload" in capsys.readouterr().err


def test_a_zero_keep_warm_budget_runs_ours_as_the_default_model() -> None:
    """``--keep-warm-budget 0``: ours with ``keep_warm="off"`` (the default), no keep-alive."""
    result = run(
        quick=True, traces=["slow_agent"], overhead=False, load=False, keep_warm_budget_usd=0.0
    )
    (trace,) = result.traces
    assert trace.day_two is not None
    for day in (trace.metrics["ours"], trace.day_two):
        assert day.keep_alive_requests == 0
        assert day.keep_alive_cost_usd == 0
    with pytest.raises(ValueError, match="keep_warm_budget_usd"):
        run(quick=True, traces=["short"], overhead=False, load=False, keep_warm_budget_usd=-1.0)
