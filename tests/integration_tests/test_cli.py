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
