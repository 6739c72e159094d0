"""The relay capability probe against the emulator: verdicts, its requests, the cache, the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.caches import InMemoryCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.messages import HumanMessage
from socket_leaks import socket_warnings_on_collection

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.capabilities import (
    CAPABILITIES_FILE,
    Adaptation,
    RelayCapabilities,
    adaptation_for,
    capabilities_path,
    load_capabilities,
    relay_key,
    save_capabilities,
)
from langchain_claude_relay.cli import main
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator import dialects as emulator_dialects
from langchain_claude_relay.emulator import engine as emulator_engine
from langchain_claude_relay.emulator import server as emulator_server
from langchain_claude_relay.errors import (
    APIConnectionError,
    BadRequestError,
    InternalServerError,
    make_status_error,
)
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.probe import (
    PROBE_LENGTH_FACTOR,
    _Answer,
    _automatic_verdict,
    _Call,
    _Findings,
    _probe_steps,
    _refusal,
    aprobe_relay,
    probe_relay,
    probe_text_tokens,
)

MODEL = "claude-sonnet-4-6"
PROBED_AT = 1_800_000_000.0
SECRET = "sk-probe-secret-0123456789abcdef"


@pytest.fixture
def test_relays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two relays the emulator lacks: no cache usage fields at all; inject AND drop markers."""
    monkeypatch.setitem(emulator_dialects.DIALECT_FIELDS, "bare", {})
    monkeypatch.setattr(emulator_server, "DIALECTS", (*emulator_dialects.DIALECTS, "bare"))
    drop = emulator_engine.BAD_RELAY_MODES["drop_cache_control"]
    inject = emulator_engine.BAD_RELAY_MODES["inject_marker"]
    monkeypatch.setitem(
        emulator_engine.BAD_RELAY_MODES, "inject_and_drop", lambda r: inject(drop(r))
    )


def relay(emu: RelayEmulator, **kwargs: Any) -> ChatClaudeRelay:
    return ChatClaudeRelay(model=MODEL, base_url=emu.base_url, api_key=SECRET, **kwargs)


def verdicts(caps: RelayCapabilities) -> tuple[bool | None, ...]:
    return (
        caps.keeps_block_markers,
        caps.keeps_tool_markers,
        caps.keeps_ttl,
        caps.injects_markers,
        caps.reports_cache_usage,
        caps.reports_cache_writes,
        caps.keeps_response_format,
    )


def expected_fields(dialect: str) -> tuple[str, ...]:
    """The usage fields a dialect sends, from the emulator's own dialect table."""
    base = {"prompt_tokens", "completion_tokens", "total_tokens"}
    return tuple(sorted(base | set(emulator_dialects.DIALECT_FIELDS[dialect])))


T, F, N = True, False, None

# emulator settings -> (block, tool, ttl, injects, reports cache usage, reports cache writes,
# keeps response_format)
VERDICT_TABLE = [
    pytest.param({}, (T, T, T, F, T, T, T), id="default"),
    pytest.param(
        {"bad_relay": "drop_cache_control"}, (F, F, N, F, T, T, T), id="drop_cache_control"
    ),
    pytest.param({"bad_relay": "drop_ttl"}, (T, T, F, F, T, T, T), id="drop_ttl"),
    pytest.param({"bad_relay": "inject_marker"}, (T, T, T, T, T, T, T), id="inject_marker"),
    pytest.param({"dialect": "anthropic"}, (T, T, T, F, T, T, T), id="anthropic-dialect"),
    pytest.param({"dialect": "openrouter"}, (T, T, N, F, T, T, T), id="writes-without-split"),
    pytest.param({"dialect": "openai"}, (T, T, N, F, T, F, T), id="reads-only"),
    pytest.param(
        {"dialect": "openai", "bad_relay": "drop_ttl"},
        (T, T, N, F, T, F, T),
        id="reads-only-drop-ttl",
    ),
    pytest.param({"dialect": "bare"}, (N, N, N, N, F, N, T), id="no-cache-fields"),
    pytest.param(
        {"dialect": "bare", "bad_relay": "inject_marker"},
        (N, N, N, T, F, N, T),
        id="no-fields-inject",
    ),
    pytest.param({"bad_relay": "inject_and_drop"}, (F, F, N, T, T, T, T), id="inject-and-drop"),
    pytest.param({"drop_response_format": True}, (T, T, T, F, T, T, F), id="drops-format"),
]


@pytest.mark.usefixtures("test_relays")
@pytest.mark.parametrize(("settings", "expected"), VERDICT_TABLE)
def test_verdicts_against_the_emulator(
    settings: dict[str, Any], expected: tuple[bool | None, ...]
) -> None:
    with RelayEmulator(**settings) as emu:
        caps = probe_relay(relay(emu), clock=lambda: PROBED_AT)
    assert verdicts(caps) == expected
    assert caps.usage_fields == expected_fields(settings.get("dialect", "superset"))
    assert (caps.model, caps.probed_at) == (MODEL, PROBED_AT)


@pytest.mark.parametrize("dialect", emulator_dialects.DIALECTS)
def test_a_relay_that_reports_reads_but_no_writes_is_found(dialect: str) -> None:
    # OpenAI's own usage shape has cached_tokens and nothing for writes: Claude's writes are then
    # costed as plain input, which the adaptation says; every other dialect names its writes
    with RelayEmulator(dialect=dialect) as emu:
        caps = probe_relay(relay(emu), clock=lambda: PROBED_AT)
    hides = dialect == "openai"
    assert caps.reports_cache_writes is (not hides)
    notes = [n for n in adaptation_for(caps).warnings if "reports cache writes = no" in n]
    assert len(notes) == (1 if hides else 0)
    assert f"reports cache writes: {'no' if hides else 'yes'}" in caps.summary_lines()
    assert RelayCapabilities.from_dict(caps.to_dict()) == caps


def test_the_async_probe_agrees(test_relays: None) -> None:
    for settings in (
        {"bad_relay": "inject_marker"},
        {"bad_relay": "drop_ttl"},
        {"drop_response_format": True},
    ):
        with RelayEmulator(**settings) as emu:
            sync = probe_relay(relay(emu), clock=lambda: PROBED_AT)
            emu.reset()
            async_ = asyncio.run(aprobe_relay(relay(emu), clock=lambda: PROBED_AT))
        assert async_ == sync


def test_the_probe_sends_small_fresh_requests_with_exactly_its_markers() -> None:
    bodies: list[dict[str, Any]] = []

    def capture(request: httpx.Request) -> None:
        if request.method == "POST":  # the catalogue (GET /models) has no body
            bodies.append(json.loads(request.content))

    ledger = MemoryLedger()
    with (
        RelayEmulator() as emu,
        httpx.Client(event_hooks={"request": [capture]}) as client,
    ):
        llm = relay(emu, ledger=ledger, http_client=client)  # cache="auto": the probe turns it off
        probe_relay(llm)
        billed = emu.billing_log
    minimum = lookup_model(MODEL).min_cache_tokens
    # unmarked x2, block x2, ttl, tool x2, four markers, automatic x2, structured output: exactly
    # the markers the probe placed (the top-level one lands on the last block)
    assert [len(b.marker_indices) for b in billed] == [0, 0, 1, 1, 1, 1, 1, 4, 1, 1, 0]
    assert [("cache_control" in b) for b in bodies] == [False] * 8 + [True, True, False]
    assert all(b["max_tokens"] == 1 and "response_format" not in b for b in bodies[:-1])
    assert all(b.output_tokens <= 1 for b in billed[:-1])
    assert bodies[-1]["response_format"]["type"] == "json_schema"
    assert bodies[-1]["max_tokens"] == 24  # room for {"word": "ok"}
    # each long text reaches the minimum; of the four markers only the last one writes
    first_write = billed[2].cache_write
    assert first_write >= minimum * PROBE_LENGTH_FACTOR
    assert billed[7].write_indices == (billed[7].marker_indices[-1],)
    assert [b.cache_write_1h > 0 for b in billed] == [F, F, F, F, T, F, F, F, F, F, F]
    # a fresh nonce per long text, repeated only where a call repeats its prefix
    nonces = [re.findall(r"Probe ([0-9a-f]{16})\.", json.dumps(b)) for b in bodies]
    assert [len(n) for n in nonces] == [1] * 10 + [0]
    flat = [n[0] for n in nonces[:-1]]
    assert flat[0] == flat[1]
    assert flat[2] == flat[3]
    assert flat[5] == flat[6]
    assert flat[8] == flat[9]
    assert len({flat[0], flat[2], flat[4], flat[5], flat[7], flat[8]}) == 6
    # the user's model is untouched and its ledger saw nothing
    assert llm.prompt_cache == "auto"
    assert llm.max_tokens is None
    assert llm.ledger is ledger
    assert ledger.summary().calls == 0


@pytest.mark.parametrize("where", ["model", "global"])
def test_langchain_response_caches_do_not_answer_the_repeated_calls(where: str) -> None:
    previous = get_llm_cache()
    try:
        if where == "global":
            set_llm_cache(InMemoryCache())
        with RelayEmulator() as emu:
            extra = {"cache": InMemoryCache()} if where == "model" else {}
            probe_relay(relay(emu, **extra))
            assert len(emu.request_log) == 11
    finally:
        set_llm_cache(previous)


def test_a_broken_setup_raises_its_typed_error() -> None:
    with RelayEmulator() as emu:
        emu.fail_next("500")
        with pytest.raises(InternalServerError):
            probe_relay(relay(emu, max_retries=0))
        base_url = emu.base_url
    with pytest.raises(APIConnectionError):
        probe_relay(ChatClaudeRelay(model=MODEL, base_url=base_url, api_key=SECRET, max_retries=0))


# ------------------------------------------------------- the probe's logic, driven by hand


def answer(read: int = 0, write: int = 0, write_1h: int = 0, split: bool = True) -> _Answer:
    usage = {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": read}}
    return _Answer(usage, read, write, write_1h, split)


def refusal(message: str) -> _Answer:
    exc = make_status_error(400, {"error": {"type": "invalid_request_error", "message": message}})
    assert isinstance(exc, BadRequestError)
    return _Answer(refused=exc)


def drive(answers: Callable[[int, _Call], _Answer], *, shapes: bool = True) -> _Findings:
    steps: Generator[_Call, _Answer, _Findings] = _probe_steps(5, shapes=shapes)
    call, i = next(steps), 0
    try:
        while True:
            call = steps.send(answers(i, call))
            i += 1
    except StopIteration as done:
        findings: _Findings = done.value
        return findings


def test_a_5m_marker_injected_before_the_1h_one_is_an_injection() -> None:
    order = "Invalid cache_control TTL ordering: a ttl='1h' block must not come after ttl='5m'"
    found = drive(lambda i, call: refusal(order) if i == 4 else answer(read=5 * (i in (3, 6))))
    assert (found.injects_markers, found.keeps_ttl, found.keeps_block_markers) == (T, N, T)


@pytest.mark.parametrize("step", [4, 7])
def test_another_400_on_a_refusable_call_is_raised(step: int) -> None:
    with pytest.raises(BadRequestError, match="model"):
        drive(lambda i, call: refusal("unknown model 'x'") if i == step else answer())


def test_only_the_ttl_four_marker_automatic_and_format_calls_may_be_refused() -> None:
    calls: list[_Call] = []

    def record(i: int, call: _Call) -> _Answer:
        calls.append(call)
        return answer()

    drive(record)
    assert [c.may_be_refused for c in calls] == [F, F, F, F, T, F, F, T, T, T, T]
    assert [c.automatic for c in calls] == [F] * 8 + [T, T, F]
    assert [c.response_format is not None for c in calls] == [F] * 10 + [T]


def test_no_response_format_step_for_a_model_without_structured_outputs() -> None:
    """It would refuse the field whatever the relay does: no request, no verdict."""
    calls: list[_Call] = []

    def record(i: int, call: _Call) -> _Answer:
        calls.append(call)
        return answer()

    assert drive(record, shapes=False).keeps_response_format is None
    assert len(calls) == 10
    assert all(c.response_format is None for c in calls)
    with RelayEmulator() as emu:
        opus_4_1 = ChatClaudeRelay(model="claude-opus-4-1", base_url=emu.base_url, api_key=SECRET)
        caps = probe_relay(opus_4_1, clock=lambda: PROBED_AT)
        assert caps.keeps_response_format is None
        assert len(emu.request_log) == 10


def _status_error(status: int, message: str) -> Any:
    body = {"error": {"type": "invalid_request_error", "message": message}}
    return make_status_error(status, body)


@pytest.mark.parametrize(
    ("status", "message", "finding"),
    [
        (400, "response_format is not supported for this model", True),
        (422, "Extra inputs are not permitted: response_format", True),  # a strict relay
        (400, "Your credit balance is too low", False),  # a broken setup: raised
        (422, "model: field required", False),
    ],
)
def test_only_a_refusal_naming_the_feature_is_a_response_format_finding(
    status: int, message: str, finding: bool
) -> None:
    shaped = _Call((HumanMessage("q"),), may_be_refused=True, response_format={"type": "x"})
    exc = _status_error(status, message)
    if finding:
        assert _refusal(shaped, exc).refused is exc
    else:
        with pytest.raises(type(exc)):
            _refusal(shaped, exc)


def test_a_422_on_a_marker_step_is_raised() -> None:
    marker_step = _Call((HumanMessage("q"),), may_be_refused=True)
    exc = _status_error(422, "Extra inputs are not permitted: cache_control")
    with pytest.raises(type(exc)):
        _refusal(marker_step, exc)


def test_the_cli_says_what_changes_on_a_relay_that_drops_response_format(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RelayEmulator(drop_response_format=True) as emu:
        argv = ["probe", "--base-url", emu.base_url, "--api-key-env", "PROBE_TEST_KEY"]
        assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert "keeps response_format (structured outputs): no" in out
    assert "with_structured_output's default binds its schema as a tool" in out
    assert "none needed" not in out


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (_Answer(text='{"word": "ok"}'), T),  # the JSON object asked for
        (_Answer(text="ok"), F),  # free text: the relay dropped response_format
        (_Answer(text='["ok"]'), F),  # JSON, but not the shape asked for
        (_Answer(text=""), F),
        (refusal("response_format is not supported"), F),
    ],
)
def test_the_response_format_verdict(last: _Answer, expected: bool) -> None:
    found = drive(lambda i, call: last if call.response_format is not None else answer())
    assert found.keeps_response_format is expected


@pytest.mark.parametrize(
    ("first", "second", "injected", "expected"),
    [
        (answer(write=5), answer(read=5), False, T),  # written, then read: the field reached Claude
        (answer(), answer(), False, F),  # nothing cached: the relay dropped it
        (refusal("Unrecognized request argument: cache_control"), answer(), False, F),
        (answer(write=5), answer(read=5), True, N),  # the relay's own markers would do the same
    ],
)
def test_the_automatic_caching_verdict(
    first: _Answer, second: _Answer, injected: bool, expected: bool | None
) -> None:
    assert _automatic_verdict(first, second, injected=injected, reports=True) is expected


def test_writes_without_reads_count_unless_the_relay_injects() -> None:
    writes_only = drive(lambda i, call: answer(write=5 * (i in (2, 5))))
    assert (writes_only.keeps_block_markers, writes_only.keeps_tool_markers) == (T, T)
    injecting = drive(lambda i, call: answer(write=5 * (i in (0, 2, 5))))
    assert (injecting.keeps_block_markers, injecting.injects_markers) == (F, T)


# ----------------------------------------------------------------- capabilities and adaptation


def caps_with(**changes: Any) -> RelayCapabilities:
    base = RelayCapabilities(T, T, T, F, T, ("prompt_tokens",), MODEL, PROBED_AT)
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, (T, None, 4, T, ())),
        ({"keeps_block_markers": F, "keeps_ttl": N}, (F, None, 4, T, ("keeps block markers",))),
        ({"keeps_ttl": F}, (T, "5m", 4, T, ("keeps ttl",))),
        ({"injects_markers": T}, (T, None, 3, T, ("injects markers",))),
        ({"keeps_tool_markers": F}, (T, None, 4, F, ("keeps tool markers",))),
        (
            {"keeps_block_markers": F, "keeps_tool_markers": F, "injects_markers": T},
            (F, None, 3, F, ("keeps block markers", "injects markers", "keeps tool markers")),
        ),
        (  # a relay that reports no cache usage: nothing is known, nothing changes
            {"keeps_block_markers": N, "keeps_tool_markers": N, "keeps_ttl": N},
            (T, None, 4, T, ()),
        ),
        ({"reports_cache_writes": F}, (T, None, 4, T, ("reports cache writes",))),
        ({"reports_cache_writes": N}, (T, None, 4, T, ())),
        (  # nothing is cached through a relay that drops the markers: no writes to miss
            {"keeps_block_markers": F, "reports_cache_writes": F},
            (F, None, 4, T, ("keeps block markers",)),
        ),
    ],
)
def test_adaptation_table(changes: dict[str, Any], expected: tuple[Any, ...]) -> None:
    adaptation = adaptation_for(caps_with(**changes))
    *decisions, named = expected
    got = (adaptation.caching, adaptation.ttl_policy, adaptation.max_markers, adaptation.mark_tools)
    assert got == tuple(decisions)
    assert len(adaptation.warnings) == len(named)
    for sentence, verdict in zip(adaptation.warnings, named, strict=True):
        assert f"probe: {verdict} = " in sentence
        assert sentence.endswith(".")


def test_no_probe_means_no_adaptation() -> None:
    assert adaptation_for(None) == Adaptation(True, None, 4, True, ())


VERDICT = st.sampled_from([True, False, None])
CAPS = st.builds(
    RelayCapabilities,
    keeps_block_markers=VERDICT,
    keeps_tool_markers=VERDICT,
    keeps_ttl=VERDICT,
    injects_markers=VERDICT,
    reports_cache_usage=st.booleans(),
    usage_fields=st.lists(st.text(min_size=1, max_size=20)).map(tuple),
    model=st.text(max_size=30),
    probed_at=st.floats(0, 4e9),
    keeps_automatic_caching=VERDICT,
    reports_cache_writes=VERDICT,
)


@given(CAPS)
def test_capabilities_survive_json(caps: RelayCapabilities) -> None:
    assert RelayCapabilities.from_dict(json.loads(json.dumps(caps.to_dict()))) == caps


@given(CAPS)
def test_each_adaptation_has_one_warning(caps: RelayCapabilities) -> None:
    a = adaptation_for(caps)
    hidden_writes = caps.reports_cache_writes is False and (a.caching or a.automatic)
    changes = [
        not a.caching,
        a.ttl_policy is not None,
        a.max_markers != 4,
        not a.mark_tools,
        hidden_writes,
    ]
    assert len(a.warnings) == sum(changes)
    assert a.max_markers == (3 if caps.injects_markers else 4)


@pytest.mark.parametrize(
    "broken",
    [
        {"keeps_ttl": "yes"},
        {"injects_markers": 1},
        {"reports_cache_usage": None},
        {"usage_fields": "prompt_tokens"},
        {"usage_fields": [1]},
        {"model": None},
        {"probed_at": "now"},
        {"probed_at": True},
        {"probed_at": float("inf")},
    ],
)
def test_from_dict_rejects_wrong_types(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="relay capabilities"):
        RelayCapabilities.from_dict({**caps_with().to_dict(), **broken})
    data = caps_with().to_dict()
    del data[next(iter(broken))]
    with pytest.raises(ValueError, match="lack"):
        RelayCapabilities.from_dict(data)


def test_verdicts_saved_before_the_writes_verdict_still_load() -> None:
    data = caps_with(reports_cache_writes=F).to_dict()
    del data["reports_cache_writes"]
    assert RelayCapabilities.from_dict(data).reports_cache_writes is None
    with pytest.raises(ValueError, match="reports_cache_writes must be true, false or null"):
        RelayCapabilities.from_dict({**data, "reports_cache_writes": "no"})


def test_summary_lines() -> None:
    caps = caps_with(keeps_tool_markers=F, keeps_ttl=N, usage_fields=())
    assert caps.summary_lines() == [
        f"model probed: {MODEL} at 2027-01-15 08:00:00 UTC",
        "keeps block markers: yes",
        "keeps tool markers: no",
        "keeps ttl (1h stays 1h): unknown",
        "injects markers: no",
        "keeps automatic caching (top-level cache_control): unknown",
        "reports cache usage: yes",
        "reports cache writes: unknown",
        "keeps response_format (structured outputs): unknown",
        "usage fields: (none)",
        "published prices (/v1/models): none",
    ]


def test_long_texts_are_above_the_minimum_even_for_unknown_models() -> None:
    assert probe_text_tokens(MODEL) == 1536
    assert probe_text_tokens("claude-haiku-4-5") == 6144
    with pytest.warns(UserWarning, match="not in"):
        assert probe_text_tokens("claude-fable-9-9-probe-test") == 6144


# ----------------------------------------------------------------- the cache file


def test_cache_round_trip_per_relay(tmp_path: Path) -> None:
    one, two = caps_with(), caps_with(keeps_ttl=F, model="claude-haiku-4-5")
    save_capabilities("https://relay.example/v1", one, tmp_path)
    save_capabilities("https://other.example/v1", two, tmp_path)
    assert load_capabilities("https://relay.example/v1/", tmp_path, now=PROBED_AT) == one
    assert load_capabilities("https://other.example/v1", tmp_path, now=PROBED_AT) == two
    assert load_capabilities("https://third.example/v1", tmp_path, now=PROBED_AT) is None
    assert [p.name for p in tmp_path.iterdir()] == [CAPABILITIES_FILE]  # no temporary left


def test_the_state_dir_variable_is_honored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    save_capabilities("https://relay.example/v1", caps_with())
    assert capabilities_path() == tmp_path / "state" / CAPABILITIES_FILE
    assert capabilities_path().is_file()
    assert load_capabilities("https://relay.example/v1", now=PROBED_AT) == caps_with()


@pytest.mark.parametrize(
    ("age", "found"), [(0.0, True), (7 * 86400.0, True), (7 * 86400.0 + 1, False)]
)
def test_old_verdicts_expire(tmp_path: Path, age: float, found: bool) -> None:
    save_capabilities("https://relay.example/v1", caps_with(), tmp_path)
    loaded = load_capabilities("https://relay.example/v1", tmp_path, now=PROBED_AT + age)
    assert (loaded is not None) == found
    shorter = load_capabilities(
        "https://relay.example/v1", tmp_path, max_age_s=60, now=PROBED_AT + 61
    )
    assert shorter is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"KEY": {"keeps_ttl": true}}',
        '{"KEY": "yes"}',
        b"\xff\xfe garbage",
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_a_corrupt_cache_gives_none_and_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | bytes
) -> None:
    path = tmp_path / CAPABILITIES_FILE
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content.replace("KEY", relay_key("https://relay.example/v1")))
    with caplog.at_level(logging.WARNING, logger="langchain_claude_relay.probe"):
        assert load_capabilities("https://relay.example/v1", tmp_path, now=PROBED_AT) is None
    assert len(caplog.records) == 1
    assert "claude-relay probe" in caplog.records[0].getMessage()
    save_capabilities("https://relay.example/v1", caps_with(), tmp_path)  # replaced, no error
    assert load_capabilities("https://relay.example/v1", tmp_path, now=PROBED_AT) == caps_with()


def test_a_missing_cache_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_capabilities("https://relay.example/v1", tmp_path / "nowhere") is None
    assert caplog.records == []


def test_the_cache_holds_no_key_and_no_prompt_text(tmp_path: Path) -> None:
    bodies: list[bytes] = []
    with (
        RelayEmulator() as emu,
        httpx.Client(event_hooks={"request": [lambda r: bodies.append(r.content)]}) as client,
    ):
        caps = probe_relay(relay(emu, http_client=client))
        save_capabilities(emu.base_url, caps, tmp_path)
        base_url = emu.base_url
    text = (tmp_path / CAPABILITIES_FILE).read_text()
    nonces = {m for b in bodies for m in re.findall(rb"Probe ([0-9a-f]{16})\.", b)}
    assert len(nonces) == 6
    for secret in (SECRET, base_url, "river", "Reply with", *(n.decode() for n in nonces)):
        assert secret not in text
    assert list(json.loads(text)) == [relay_key(base_url)]


# ----------------------------------------------------------------- the command line


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    for name in ("CLAUDE_RELAY_BASE_URL", "OPENAI_BASE_URL", "CLAUDE_RELAY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("PROBE_TEST_KEY", SECRET)
    return tmp_path / "state"


def test_probe_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: claude-relay probe" in out
    assert "--api-key-env" in out


def test_cli_probe_prints_verdicts_and_adaptation_and_saves(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RelayEmulator(bad_relay="drop_ttl") as emu:
        argv = ["probe", "--base-url", emu.base_url, "--api-key-env", "PROBE_TEST_KEY"]
        assert main([*argv, "--json", str(tmp_path / "caps.json")]) == 0
        base_url = emu.base_url
    out, err = capsys.readouterr()
    assert "keeps block markers: yes" in out
    assert "keeps ttl (1h stays 1h): no" in out
    assert "only 5-minute markers are planned" in out
    assert SECRET not in out + err
    document = json.loads((tmp_path / "caps.json").read_text())
    assert document["capabilities"]["keeps_ttl"] is False
    assert document["adaptation"]["ttl_policy"] == "5m"
    saved = load_capabilities(base_url, state_dir)
    assert saved is not None
    assert saved.keeps_ttl is False


def test_cli_probe_json_to_stdout_without_saving(
    state_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with RelayEmulator() as emu:
        monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", emu.base_url)
        monkeypatch.setenv("CLAUDE_RELAY_API_KEY", SECRET)
        assert main(["probe", "--json", "-", "--no-cache"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["capabilities"]["keeps_block_markers"] is True
    assert document["adaptation"]["warnings"] == []
    assert not (state_dir / CAPABILITIES_FILE).exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "--api-key-env", "PROBE_TEST_KEY"], "no relay base URL"),
        (["probe", "--base-url", "http://127.0.0.1:9/v1"], "no API key"),
        (
            ["probe", "--base-url", "http://relay.example/v1", "--api-key-env", "PROBE_TEST_KEY"],
            "http",
        ),
    ],
)
def test_cli_probe_without_a_setup_exits_2(
    state_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert SECRET not in out + err


def test_cli_probe_reports_an_unreachable_relay(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RelayEmulator() as emu:
        base_url = emu.base_url
    assert main(["probe", "--base-url", base_url, "--api-key-env", "PROBE_TEST_KEY"]) == 1
    out, err = capsys.readouterr()
    assert "APIConnectionError" in err
    assert SECRET not in out + err
    assert not (state_dir / CAPABILITIES_FILE).exists()


# ------------------------------------------------------------- published prices are untrusted

HUGE_INTEGER = 10**400  # float() of it overflows


@pytest.mark.parametrize(
    "price",
    [HUGE_INTEGER, -HUGE_INTEGER, "1e400", "-1", "nan", "inf", "9" * 400, "abc", [1], None],
    ids=["10**400", "-10**400", "1e400", "-1", "nan", "inf", "400 nines", "abc", "list", "None"],
)
def test_a_published_price_that_is_not_a_plausible_number_is_no_price(price: Any) -> None:
    from langchain_claude_relay.capabilities import relay_prices

    body = {
        "data": [
            {
                "id": "anthropic/claude-sonnet-4.5",
                "pricing": {"prompt": price, "completion": "1e-6"},
            },
            {"id": "anthropic/claude-opus-4.1", "pricing": {"prompt": "1e-5", "completion": price}},
            {
                "id": "anthropic/claude-haiku-4.5",
                "pricing": {"prompt": "1e-6", "completion": "5e-6"},
            },
        ]
    }
    assert [p.model_id for p in relay_prices(body)] == ["anthropic/claude-haiku-4.5"]


def test_the_probe_survives_a_catalogue_with_an_overflowing_price(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langchain_claude_relay.transport.relay import RawResponse, RelayTransport

    catalogue = {
        "data": [
            {"id": "anthropic/claude-sonnet-4.5", "pricing": {"prompt": HUGE_INTEGER}},
            {
                "id": "anthropic/claude-haiku-4.5",
                "pricing": {"prompt": "1e-6", "completion": "5e-6"},
            },
        ]
    }
    monkeypatch.setattr(RelayTransport, "list_models", lambda self: RawResponse(catalogue, 200, {}))
    with RelayEmulator() as emu:
        caps = probe_relay(relay(emu), clock=lambda: PROBED_AT)
        emu.reset()
        async_caps = asyncio.run(aprobe_relay(relay(emu), clock=lambda: PROBED_AT))
    assert [p.model_id for p in caps.prices] == ["anthropic/claude-haiku-4.5"]
    assert async_caps.prices == caps.prices


def test_the_probe_leaves_no_socket_open_once_the_model_is_closed() -> None:
    """The probe calls through a copy of the model, with clients of its own: it closes them,
    since ``llm.close()`` (or ``aclose``) closes only the model's."""
    with RelayEmulator() as emu:
        socket_warnings_on_collection(emu.base_url)
        llm = relay(emu)
        probe_relay(llm, clock=lambda: PROBED_AT)
        llm.close()
        assert socket_warnings_on_collection(emu.base_url) == []

        async def probed() -> None:
            model = relay(emu)
            await aprobe_relay(model, clock=lambda: PROBED_AT)
            await model.aclose()

        asyncio.run(probed())
        assert socket_warnings_on_collection(emu.base_url) == []
