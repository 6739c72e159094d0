"""The command line: every subcommand has help and works; the demo saves money."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from langchain_claude_relay.cli import main
from langchain_claude_relay.demo import run_demo


@pytest.mark.parametrize(
    "command", [[], ["demo"], ["emulator"], ["plan"], ["stats"], ["models"], ["bench"]]
)
def test_every_subcommand_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: claude-relay" in capsys.readouterr().out


def test_demo_runs_on_the_emulator_and_saves() -> None:
    out = io.StringIO()
    assert run_demo(out=out) == 0
    text = out.getvalue()
    assert "embedded relay emulator" in text
    saved = re.search(r"saved \$[0-9.]+ \((\d+)%\)", text)
    assert saved is not None, text
    assert int(saved.group(1)) >= 50
    assert "@1h" in text, "the sparse turns should switch the system prompt to a 1-hour TTL"
    kept = re.search(
        r"keep-alive: (\d+) request\(s\), \$([0-9.]+), kept ([0-9,]+) tokens .* saved \$([0-9.]+)",
        text,
    )
    assert kept is not None, text  # the 9-minute tool call: the prompt was kept warm
    assert int(kept.group(1)) >= 1
    assert int(kept.group(3).replace(",", "")) > 10_000
    assert float(kept.group(4)) > float(kept.group(2))  # it saved more than it cost


def _plan_file(tmp_path, **extra: object) -> str:
    request = {
        "model": "claude-sonnet-5-5",
        "messages": [
            {"role": "system", "content": "policy " * 3000},
            {"role": "user", "content": "What does the policy say?"},
        ],
        **extra,
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return str(path)


def test_plan_shows_a_table_and_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _plan_file(tmp_path, model="claude-sonnet-4-6")
    assert main(["plan", path, "--fresh"]) == 0
    table = capsys.readouterr().out
    assert "system[0]" in table
    assert "5m" in table
    assert main(["plan", path, "--fresh", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["breakpoints"][0]["position"] == "system[0]"


def test_plan_reports_a_bad_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert main(["plan", str(path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_plan_shows_where_automatic_caching_lands(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _plan_file(tmp_path, cache_control={"type": "ephemeral", "ttl": "1h"})
    assert main(["plan", path, "--fresh"]) == 0
    table = capsys.readouterr().out
    assert "automatic caching: top-level cache_control ttl=1h" in table
    assert "messages[0].content[0]" in table
    assert "[top-level cache_control lands here]" in table


def test_plan_refuses_a_top_level_marker_that_makes_five(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    marked = {"type": "text", "text": "x " * 10, "cache_control": {"type": "ephemeral"}}
    path = _plan_file(
        tmp_path,
        cache_control={"type": "ephemeral"},
        messages=[
            {"role": "system", "content": [marked, marked]},
            {"role": "user", "content": [marked, marked, {"type": "text", "text": "q"}]},
        ],
    )
    assert main(["plan", path, "--fresh"]) == 2
    assert "5 cache_control markers" in capsys.readouterr().err


def test_plan_refuses_a_bad_top_level_marker(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _plan_file(tmp_path, cache_control={"type": "ephemeral", "ttl": "2h"})
    assert main(["plan", path]) == 2
    assert "ttl" in capsys.readouterr().err


def test_models_prints_the_table_with_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for family in ("fable-5-1", "opus-5-5", "sonnet-5-5", "haiku-5-5"):
        assert re.search(rf"^{family}\s+current\s+512\b", text, re.MULTILINE), family
    assert re.search(r"^opus-5-5 .* 0\.05x", text, re.MULTILINE)
    assert re.search(r"^fable-5-1 .* 0\.025x", text, re.MULTILINE)
    assert "listed, unpriced" in text
    assert re.search(r"^sonnet-4-6 .*inference_geo us x1\.1", text, re.MULTILINE)
    assert not re.search(r"^haiku-4-5 .*inference_geo", text, re.MULTILINE)  # no residency
    assert "sonnet-4-5" not in text  # retired: only with --all
    assert "pricing-2026-12" in text
    assert "(read 2026-12-01)" in text
    assert main(["models", "--all", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["family"]: r for r in data["models"]}
    assert rows["sonnet-4-5"]["status"] == "retired"
    assert rows["opus-5-5"]["read_multiplier"] == 0.05
    assert rows["haiku-5-5"]["long_context"]["above_prompt_tokens"] == 100_000
    assert rows["fable-5-2"]["input"] is None
    assert set(data["sources"]) >= set(rows["opus-5-5"]["sources"])


def test_stats_prints_the_ledger(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "calls" in summary
    assert main(["stats", "--since", "1h"]) == 0


def test_the_installed_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "langchain_claude_relay.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "emulator" in done.stdout


def test_the_demo_uses_no_deprecated_agent_api() -> None:
    """The demo builds its agent with LangChain 1.x's create_agent, not create_react_agent."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_demo(turns=1, out=io.StringIO()) == 0
    deprecated = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, DeprecationWarning) or "Deprecat" in w.category.__name__
    ]
    assert deprecated == []


# -- one-line errors instead of tracebacks ----------------------------------------------------


def test_plan_refuses_a_model_that_is_not_a_string(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _plan_file(tmp_path, model=5)
    assert main(["plan", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("claude-relay plan: 'model'")
    assert "\n" not in err


def test_plan_refuses_json_nested_too_deeply(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nested too deeply" in err
    assert "\n" not in err


@pytest.mark.parametrize("since", ["nan", "-5m", "", "inf", "5x"])
def test_stats_refuses_a_duration_that_is_not_one(since: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["stats", f"--since={since}"])
    assert str(info.value.code).startswith("claude-relay stats: cannot read --since")


@pytest.mark.parametrize("turns", ["0", "-1", "x"])
def test_demo_refuses_fewer_than_one_turn(turns: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", f"--turns={turns}"])
    assert info.value.code == 2
    assert "at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("traces", ["", ",", " , "])
def test_bench_refuses_an_empty_trace_list(traces: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["bench", "--quick", "--traces", traces], ["bench", f"--traces={traces}"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "--traces names no trace" in capsys.readouterr().err


def _stats_dir(tmp_path, monkeypatch: pytest.MonkeyPatch):
    state = tmp_path / "state"
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(state))
    monkeypatch.delenv("CLAUDE_RELAY_STATE", raising=False)
    return state / "ledger"


def _record(directory, *entries) -> None:
    from langchain_claude_relay.ledger import DiskLedger

    ledger = DiskLedger(directory, background=False)
    for entry in entries:
        ledger.record(entry)
    ledger.close()


def _entry(call_id: str, t: float, cost: float = 0.01, uncached: float = 0.03):
    from langchain_claude_relay.ledger import LedgerEntry

    return LedgerEntry(
        call_id, t, "claude-sonnet-4-6", 100, 10_000, 0, 0, 50,
        cost_usd=cost, uncached_cost_usd=uncached,
    )  # fmt: skip


def test_stats_on_a_missing_ledger_creates_nothing(tmp_path) -> None:
    """A fresh process (the default ledger is opened once per process, on first use)."""
    import os

    state = tmp_path / "state"
    env = {**os.environ, "CLAUDE_RELAY_STATE_DIR": str(state)}
    env.pop("CLAUDE_RELAY_STATE", None)
    done = subprocess.run(
        [sys.executable, "-m", "langchain_claude_relay.cli", "stats"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "no calls recorded" in done.stdout
    assert done.stderr == ""
    assert not state.exists()


@pytest.mark.parametrize("damage", ["random bytes", "a file for the directory"])
def test_stats_on_a_ledger_it_cannot_read_says_so(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    import os
    import warnings

    directory = _stats_dir(tmp_path, monkeypatch)
    if damage == "random bytes":
        directory.mkdir(parents=True)
        (directory / "ledger.sqlite3").write_bytes(os.urandom(8192))
    else:
        directory.parent.mkdir(parents=True)
        directory.write_text("not a directory")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "recorded in memory only" warning
        assert main(["stats"]) == 1
    captured = capsys.readouterr()
    assert "no calls recorded" not in captured.out
    err = captured.err.strip()
    assert err.startswith(f"claude-relay stats: cannot read the ledger at {directory}: ")
    assert "\n" not in err


def test_stats_keeps_totals_finite_and_json_valid_with_absurd_costs(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _stats_dir(tmp_path, monkeypatch)
    _record(
        directory,
        _entry("c1", 100.0, cost=1e308, uncached=1e308),
        _entry("c2", 200.0, cost=1e308, uncached=1e308),
        _entry("c3", 300.0),
    )
    assert main(["stats", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert summary["calls"] == 3
    assert summary["unpriced_calls"] == 2  # the absurd costs are unknown, not summed
    assert summary["cost_usd"] == pytest.approx(0.01)
    assert main(["stats"]) == 0
    assert "inf" not in capsys.readouterr().out


def test_stats_chart_errors_are_one_line_and_the_path_is_the_real_one(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    directory = _stats_dir(tmp_path, monkeypatch)
    _record(directory, _entry("c1", 100.0), _entry("c2", 400.0))
    for bad in ("/proc/x.png", str(tmp_path / "out.txt")):
        assert main(["stats", "--chart", bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("claude-relay stats: cannot write the chart to "), err
    report = tmp_path / "report"
    assert main(["stats", "--chart", str(report)]) == 0
    assert f"chart: {report}.png" in capsys.readouterr().err
    assert (tmp_path / "report.png").exists()


_KEY = {"CLAUDE_RELAY_API_KEY": "sk-demo-secret-123456"}


@pytest.mark.parametrize(
    ("env", "expected", "status"),
    [
        ({"CLAUDE_RELAY_BASE_URL": "127.0.0.1:18787/v1", **_KEY}, "is not an http(s) URL", 2),
        ({"CLAUDE_RELAY_BASE_URL": "http://127.0.0.1:1/v1", **_KEY},
         "the relay failed (APIConnectionError)", 1),
        ({"CLAUDE_RELAY_BASE_URL": "http://127.0.0.1:1/v1"}, "CLAUDE_RELAY_API_KEY not set", 2),
    ],
)  # fmt: skip
def test_demo_relay_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    expected: str,
    status: int,
) -> None:
    monkeypatch.delenv("CLAUDE_RELAY_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["demo", "--relay", "--turns", "1"]) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("claude-relay demo: ")
    assert expected in err
    assert "\n" not in err
    assert "sk-demo-secret-123456" not in err


@pytest.mark.parametrize(
    ("base_url", "expected", "status"),
    [
        ("127.0.0.1:18787/v1", "is not an http(s) URL", 2),
        ("http://user:pw-secret@127.0.0.1:1/v1", "carries credentials before the host", 2),
        ("http://127.0.0.1:1/v1", "the relay failed (APIConnectionError)", 1),
    ],
)  # fmt: skip
def test_probe_failures_are_one_line_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    base_url: str,
    expected: str,
    status: int,
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", _KEY["CLAUDE_RELAY_API_KEY"])
    assert main(["probe", "--base-url", base_url, "--no-cache"]) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("claude-relay probe: ")
    assert expected in err
    assert "\n" not in err
    assert _KEY["CLAUDE_RELAY_API_KEY"] not in err
    assert "pw-secret" not in err


@pytest.mark.parametrize(
    ("block_markers", "fields", "expected"),
    [
        (True, ("prompt_tokens", "prompt_tokens_details.cached_tokens"), "none needed"),
        (None, ("completion_tokens", "prompt_tokens"), "undetermined"),
    ],
)
def test_probe_says_when_it_could_not_tell(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    block_markers: bool | None,
    fields: tuple[str, ...],
    expected: str,
) -> None:
    """A relay reporting no cache usage looks like one that drops markers: not 'none needed'."""
    from langchain_claude_relay import probe
    from langchain_claude_relay.capabilities import RelayCapabilities

    caps = RelayCapabilities(
        block_markers, None, None, None, block_markers is True, fields, "claude-sonnet-5-5", 0.0
    )
    monkeypatch.setattr(probe, "probe_relay", lambda llm: caps)
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-probe-test-0000")
    assert main(["probe", "--base-url", "http://127.0.0.1:1/v1", "--no-cache"]) == 0
    adaptation = capsys.readouterr().out.split("adaptation:", 1)[1]
    assert expected in adaptation
    if block_markers is None:
        assert "completion_tokens, prompt_tokens" in adaptation
        assert "none needed" not in adaptation


# -- the demo runs on a real relay only when asked --------------------------------------------


def test_the_demo_stays_on_the_emulator_when_a_relay_is_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``make demo`` is the emulator's: a relay exported for one's own code is not billed."""
    monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-test-not-used-0123456789")
    out = io.StringIO()
    assert run_demo(turns=1, out=out) == 0
    assert "on the embedded relay emulator" in out.getvalue()


@pytest.mark.parametrize("unset", ["CLAUDE_RELAY_BASE_URL", "CLAUDE_RELAY_API_KEY"])
def test_the_demo_on_a_relay_names_the_variable_it_lacks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], unset: str
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-test-secret-0123456789")
    monkeypatch.delenv(unset)
    assert main(["demo", "--relay", "--turns", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{unset} not set" in err
    assert "sk-test-secret" not in err


def test_the_demo_runs_on_the_relay_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_claude_relay.emulator import RelayEmulator

    with RelayEmulator() as relay:  # a relay of its own, on the wall clock
        monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", relay.base_url)
        monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-test-relay-0123456789")
        out = io.StringIO()
        assert run_demo(turns=1, out=out, relay=True) == 0
        assert relay.billing_log  # the calls went to it
        text = out.getvalue()
        assert f"on the relay at {relay.base_url}" in text
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s+1\s+\d", line)]
    assert rows
    assert all(float(row[1]) < 5.0 for row in rows)  # minutes since the demo began


def test_plan_sees_what_a_model_on_the_configured_relay_cached(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chat model keys its records by relay and key (``cache_scope``): ``plan`` without
    ``--fresh`` plans under the scope of the relay the environment names, so it sees them."""
    import uuid

    from langchain_core.messages import HumanMessage, SystemMessage

    from langchain_claude_relay import ChatClaudeRelay
    from langchain_claude_relay.emulator import RelayEmulator
    from langchain_claude_relay.ledger import MemoryLedger
    from langchain_claude_relay.planner import CachePlanner

    unique = " ".join("abcdefghij"[int(c, 16) % 10] for c in uuid.uuid4().hex)  # no hex id
    system = f"policy {unique} " + "policy " * 3000
    key = "relaykey-plan-scope-0123456789"
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CLAUDE_RELAY_STATE", raising=False)
    planner = CachePlanner()  # the default store, as ``plan`` reads it
    with RelayEmulator() as emu:
        llm = ChatClaudeRelay(
            model="claude-sonnet-4-6",
            base_url=emu.base_url,
            api_key=key,
            cache=planner,
            ledger=MemoryLedger(),
            keep_warm="off",
            max_tokens=5,
        )
        for question in ("first?", "second?"):
            llm.invoke([SystemMessage(system), HumanMessage(question)])
        llm.close()
        planner.close()  # its records written to disk, where ``plan`` reads them
        path = tmp_path / "request.json"
        path.write_text(
            json.dumps(
                {
                    "model": "claude-sonnet-4-6",
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": "third?"},
                    ],
                }
            )
        )
        monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", emu.base_url)
        monkeypatch.setenv("CLAUDE_RELAY_API_KEY", key)
        assert main(["plan", "--json", str(path)]) == 0
    predicted = [bp["predicted"] for bp in json.loads(capsys.readouterr().out)["breakpoints"]]
    assert predicted[0] == "read", predicted


@pytest.mark.parametrize(
    "base_url",
    [
        "http://relay.internal:8080/v1",  # a chat model's allow_insecure_http=True
        "https://relay.example.com/v1/chat/completions",  # a URL no chat model takes
    ],
)
def test_plan_runs_whatever_relay_the_environment_names(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base_url: str
) -> None:
    """``plan`` sends nothing: a base URL the chat model would refuse (or take only with
    ``allow_insecure_http=True``) never stops it; a plain-http one keeps its scope."""
    from langchain_claude_relay import ChatClaudeRelay
    from langchain_claude_relay.cli import _plan_scope, build_parser

    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CLAUDE_RELAY_STATE", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", base_url)
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "relaykey-plan-http-0123456789")
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err
    if base_url.startswith("http://"):
        args = build_parser().parse_args(["plan", str(path)])
        llm = ChatClaudeRelay(model="claude-sonnet-4-6", allow_insecure_http=True, ledger=False)
        assert _plan_scope(args, "claude-sonnet-4-6") == llm._cache_scope_digest()


def test_the_demo_learns_the_slow_tool_from_its_first_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo drives keep-alives from its first call on, so every call is planned for them.

    Driven only once the slow tool waited, the first calls were planned without keep-alives:
    the check's arrival at 1.5 minutes was no trial of its follow-up's gaps, its return at 10.5
    was dropped, and the next check (25 minutes) was judged on the prior and the final answers
    alone: back between 5 and 10 minutes with a chance of 0.01 instead of about a half.
    """
    import langchain_claude_relay.demo as demo
    from langchain_claude_relay.planner import CachePlanner
    from langchain_claude_relay.planner.followup import survival, tool_key
    from langchain_claude_relay.planner.history import gap_odds
    from langchain_claude_relay.planner.plan import trace_of

    check = "Run the compliance check of part {} and tell me whether it passes."
    turns = ((0.0, demo.TURNS[0][1]), (1.5, check.format(7)), (25.0, check.format(9)))
    monkeypatch.setattr(demo, "TURNS", turns)
    planned: list[bool] = []
    after_check: dict[float, tuple[float, ...]] = {}
    plan, keep_alives = CachePlanner.plan, CachePlanner.keep_alives

    def spy_plan(self: CachePlanner, request: object, **options: object) -> object:
        planned.append(bool(options.get("keep_warm")))
        return plan(self, request, **options)

    def spy_keep_alives(self: CachePlanner, p: object, usage: object, **kw: object) -> object:
        tools = list(kw.get("tools", ()))  # type: ignore[call-overload]
        if tools == ["run_compliance_check"]:
            trace = trace_of(p, "test")  # type: ignore[arg-type]
            now = trace.planned_at
            odds = gap_odds(self._store, trace.follow_key, tool_key(tools), now)
            after_check[round(now / 60, 1)] = survival(odds)
        return keep_alives(self, p, usage, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(CachePlanner, "plan", spy_plan)
    monkeypatch.setattr(CachePlanner, "keep_alives", spy_keep_alives)
    assert run_demo(out=io.StringIO()) == 0
    assert planned
    assert all(planned), planned  # before: the calls before the first wait were not
    s = after_check[25.0]
    assert s[1] - s[2] > 0.3, s  # the one 9-minute return seen: back between 5 and 10 minutes
