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


@pytest.mark.parametrize("command", [[], ["demo"], ["emulator"], ["plan"], ["stats"], ["bench"]])
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


def test_plan_shows_a_table_and_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    request = {
        "model": "claude-sonnet-4-6",
        "messages": [
            {"role": "system", "content": "policy " * 3000},
            {"role": "user", "content": "What does the policy say?"},
        ],
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["plan", str(path), "--fresh"]) == 0
    table = capsys.readouterr().out
    assert "system[0]" in table
    assert "5m" in table
    assert main(["plan", str(path), "--fresh", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["breakpoints"][0]["position"] == "system[0]"


def test_plan_reports_a_bad_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert main(["plan", str(path)]) == 2
    assert "cannot read" in capsys.readouterr().err


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
