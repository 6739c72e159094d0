"""``claude-relay emulator``: usage errors for bad flags, a busy port, a banner that is true."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from langchain_claude_relay.cli import main
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import BAD_RELAY_MODES
from langchain_claude_relay.emulator.server import ADMIN_ROUTES
from langchain_claude_relay.emulator.server import banner as emulator_banner


def _choices(names: tuple[str, ...]) -> tuple[str, str]:
    """argparse's list of choices, quoted (Python < 3.12.8) or not (later)."""
    return ", ".join(repr(n) for n in names), ", ".join(names)


DIALECTS = (
    "superset",
    "openai",
    "openrouter",
    "litellm",
    "anthropic",
    "newapi",
    "axonhub",
    "oneapi",
)


@pytest.mark.parametrize(
    ("flags", "argument", "value", "names"),
    [
        (["--bad-relay", "drop_ttll"], "--bad-relay", "drop_ttll", tuple(BAD_RELAY_MODES)),
        (["--tier", "tier9"], "--tier", "tier9", ("tier1", "tier2", "tier3", "tier4")),
        (["--dialect", "x"], "--dialect", "x", DIALECTS),
        (["--clock", "sundial"], "--clock", "sundial", ("virtual", "wall")),
    ],
)  # fmt: skip
def test_a_wrong_name_is_a_usage_error_listing_the_real_ones(
    flags: list[str],
    argument: str,
    value: str,
    names: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: claude-relay emulator")
    last = err.strip().splitlines()[-1]
    assert last in {
        f"claude-relay emulator: error: argument {argument}: invalid choice: {value!r} "
        f"(choose from {listing})"
        for listing in _choices(names)
    }
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--fault-kinds", "500,boom"],
            "argument --fault-kinds: unknown fault kind(s) ['boom']: choose from 500, 502, 503, "
            "529, reset, malformed, html, cut",
        ),
        (["--fault-rate", "3"], "fault_rate=3.0 must be in [0, 1]"),
    ],
)
def test_other_bad_settings_are_usage_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", *flags])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"claude-relay emulator: error: {message}"
    )


def test_help_lists_the_dialects(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["emulator", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"usage dialect of /v1/chat/completions: one of {', '.join(DIALECTS)}" in help_text
    assert "DIALECTS" not in help_text


@pytest.fixture
def busy_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_a_busy_port_fails_before_the_banner(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--port", str(busy_port)])
    assert info.value.code == (
        f"claude-relay emulator: port {busy_port} on 127.0.0.1 is already in use (another "
        "emulator?): stop what holds it, or pick another port with --port N (--port 0 takes a "
        "free one)"
    )
    assert "relay emulator on" not in capsys.readouterr().err


def test_every_admin_route_the_banner_lists_exists() -> None:
    banner = emulator_banner("127.0.0.1", 8787)
    assert re.search(r"/admin(\s|,|$)", banner) is None, "no bare /admin page (it is a 404)"
    with RelayEmulator() as emu, httpx.Client(base_url=emu.root_url, timeout=10) as http:
        for route in ADMIN_ROUTES:
            methods, path = route.split()
            assert path in banner
            for method in methods.split("|"):
                body = {"kind": "500", "count": 1} if path == "/admin/faults" else {}
                response = http.get(path) if method == "GET" else http.post(path, json=body)
                assert response.status_code == 200, (route, method, response.text)


@contextlib.contextmanager
def _emulator_command(*flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``claude-relay emulator --port 0 FLAGS`` in a child process, and the root its banner names.

    The banner's first line is checked; the process is stopped on leaving (killed if it does
    not end within 30 s of SIGTERM).
    """
    server = subprocess.Popen(  # noqa: S603 -- our own interpreter, the tests' own flags
        [sys.executable, "-m", "langchain_claude_relay.cli", "emulator", "--port", "0", *flags],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stderr is not None
        first = server.stderr.readline()
        match = re.fullmatch(
            r"relay emulator on (http://127\.0\.0\.1:\d+)/v1 \(Ctrl-C to stop\)\n", first
        )
        assert match is not None, first
        yield server, match.group(1)
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)


def test_the_emulator_command_serves_what_its_banner_says() -> None:
    with _emulator_command() as (_server, root), httpx.Client(base_url=root, timeout=10) as http:
        assert http.get("/admin/clock").status_code == 200
        assert http.get("/v1/models").status_code == 200


def test_the_emulator_command_stops_at_once_with_an_answer_waiting() -> None:
    # Ctrl-C (or SIGTERM) waited out the first-byte delay of a request still open
    body = {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "hi"}]}
    with _emulator_command("--first-byte-delay", "60") as (server, root):
        timeout = httpx.Timeout(5.0, read=0.5)
        with (
            httpx.Client(base_url=root, timeout=timeout) as http,
            pytest.raises(httpx.ReadTimeout),
        ):
            http.post("/v1/chat/completions", json=body)
        server.terminate()
        server.wait(timeout=15)  # not the 60 s the answer would have waited


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_a_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", f"--port={port}"])
    assert info.value.code == 2
    assert "is not a TCP port: give 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["/proc/x.json", "directory"])
def test_probe_checks_its_json_path_before_sending_anything(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    target = str(tmp_path) if where == "directory" else where
    with RelayEmulator() as emu:
        monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", emu.base_url)
        monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-probe-test-123456")
        assert main(["probe", "--no-cache", "--json", target]) == 2
        assert emu.request_log == []  # refused before any probe request
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"claude-relay probe: cannot write --json {target}: ")
    assert "\n" not in err


def test_probe_writes_its_json_and_leaves_no_file_when_it_fails(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "verdicts.json"
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-probe-test-123456")
    with RelayEmulator() as emu:
        monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", emu.base_url)
        assert main(["probe", "--no-cache", "--json", str(out)]) == 0
    assert "capabilities" in json.loads(out.read_text())
    refused = tmp_path / "refused.json"
    monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", "http://127.0.0.1:1/v1")
    assert main(["probe", "--no-cache", "--json", str(refused)]) == 1
    assert not refused.exists()
    capsys.readouterr()


@pytest.mark.parametrize(
    ("userinfo", "query"), [("", "tenant=abc"), ("user:s3cret@", "key=abc"), ("", "key=abc")]
)
def test_demo_never_prints_the_relay_urls_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], userinfo: str, query: str
) -> None:
    """The header names the relay by ``redact_url``; a URL the chat model refuses (credentials
    before the host, a key in the query) is refused in one line, redacted too."""
    with RelayEmulator() as emu:
        where = emu.base_url.removeprefix("http://")
        monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", f"http://{userinfo}{where}?{query}")
        monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-demo-test-123456")
        main(["demo", "--relay", "--turns", "1"])  # no route with a query here: a 404
    captured = capsys.readouterr()
    out = captured.out + captured.err
    if query.startswith("tenant"):
        assert f"the relay at http://{where}?tenant=***" in out
    assert "s3cret" not in out
    assert "=abc" not in out
