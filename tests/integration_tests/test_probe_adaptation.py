"""The chat model adapts to what a stored probe found out about its relay (emulator bad modes)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.callbacks import track_costs
from langchain_claude_relay.capabilities import save_capabilities
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.probe import probe_relay
from langchain_claude_relay.store import MemoryStore

DOCUMENT = "The relay forwards requests to Claude and reports usage in its own dialect. " * 150


def _llm(emu: RelayEmulator, **extra: object) -> ChatClaudeRelay:
    return ChatClaudeRelay(
        base_url=emu.base_url, api_key="test-key-0123456789", ledger=False, **extra
    )


@pytest.fixture(autouse=True)
def _private_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Probe results live in this test's own state dir (ports are reused between tests)."""
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    forget_warnings()  # "once" is per process: start afresh


def _probed(emu: RelayEmulator, bad_relay: str | None) -> None:
    emu.configure(bad_relay=bad_relay)
    save_capabilities(emu.base_url, probe_relay(_llm(emu)))
    emu.reset()


def _ask(llm: ChatClaudeRelay, tag: str) -> tuple[list[dict[str, object]], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reply = llm.invoke([SystemMessage(f"[{tag}] {DOCUMENT}"), HumanMessage("Q?")])
    plan = reply.response_metadata["cache_plan"]
    return (plan["breakpoints"] if plan else []), [str(w.message) for w in caught]


@pytest.mark.parametrize(
    ("bad_relay", "expect"),
    [
        (None, "as planned"),
        ("drop_cache_control", "no plan"),
        ("drop_ttl", "5m only"),
        ("inject_marker", "three slots"),
    ],
)
def test_the_model_adapts_to_the_stored_probe(bad_relay: str | None, expect: str) -> None:
    with RelayEmulator() as emu:
        _probed(emu, bad_relay)
        llm = _llm(emu, cache_ttl="1h")
        breakpoints, notes = _ask(llm, "first")
        probe_notes = [n for n in notes if "probe:" in n]
        if expect == "as planned":
            assert breakpoints
            assert {b["ttl"] for b in breakpoints} == {"1h"}
            assert probe_notes == []
        elif expect == "no plan":
            assert breakpoints == []
            assert emu.request_log[-1].endpoint == "chat.completions"
            assert any("drops cache_control" in n for n in probe_notes)
        elif expect == "5m only":
            assert breakpoints
            assert {b["ttl"] for b in breakpoints} == {"5m"}
            assert any("drops the cache_control ttl" in n for n in probe_notes)
        else:
            assert any("adds a cache marker" in n for n in probe_notes)
        # the same model again, and a second one on the same relay: warned once per process
        _, again = _ask(_llm(emu, cache_ttl="1h"), "second")
        assert [n for n in again if "probe:" in n] == []


def test_inject_marker_leaves_a_slot_for_the_relay() -> None:
    """Three markers of the user's and a large turn: four planned, or three on such a relay.

    Without the probe's verdict (``relay_probe="off"``) all four slots may be used, and a relay
    that adds its own marker then makes five: Claude's 400 (typed, saying the relay may have
    added one) whenever the planner's fourth is not on the block the relay marks.
    """
    marker = {"type": "ephemeral"}
    system = SystemMessage(
        [{"type": "text", "text": f"part {i}", "cache_control": marker} for i in range(3)]
    )
    turns = [system, HumanMessage(f"doc {DOCUMENT}"), HumanMessage("Q?")]
    with RelayEmulator() as emu, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _probed(emu, "inject_marker")
        cached = _llm(emu, relay_probe="cached").invoke(turns)  # on the injecting relay
        emu.configure(bad_relay=None)
        off = _llm(emu, relay_probe="off").invoke(turns)
    assert len(off.response_metadata["cache_plan"]["breakpoints"]) == 4
    assert len(cached.response_metadata["cache_plan"]["breakpoints"]) == 3


def test_relay_probe_off_ignores_the_stored_result() -> None:
    """A planner of its own: what the process's planner learned in other tests (that new system
    prompts on a new relay do not come back) could leave a first sight unmarked."""
    with RelayEmulator() as emu:
        _probed(emu, "drop_cache_control")
        llm = _llm(emu, relay_probe="off", cache=CachePlanner(MemoryStore()))
        breakpoints, notes = _ask(llm, "off")
        assert breakpoints
        assert [n for n in notes if "probe:" in n] == []


def test_a_relay_that_drops_markers_still_gives_a_plan_to_read() -> None:
    """The README's pattern works on every relay: ``cache_plan`` is a dict that says why."""
    with RelayEmulator() as emu:
        _probed(emu, "drop_cache_control")
        reply = _llm(emu).invoke([SystemMessage(f"[why] {DOCUMENT}"), HumanMessage("Q?")])
    plan = reply.response_metadata["cache_plan"]
    assert plan["planned"] is False
    assert plan["breakpoints"] == []
    assert "drops cache_control markers" in plan["reason"]


def test_a_relay_hiding_writes_is_named_at_the_first_call() -> None:
    """A stored probe that saw reads but no write field warns at the first call, not the third.

    Without it the chat model needs three calls in a row that read where their plans wrote
    (``test_dropped_markers_warning``); with it, that streak's second warning is not given.
    """
    with RelayEmulator(dialect="openai") as emu:
        save_capabilities(emu.base_url, probe_relay(_llm(emu)))
        emu.reset()
        llm = _llm(emu, cache=CachePlanner(MemoryStore(), clock=lambda: emu.now))
        conversation: list[BaseMessage] = [SystemMessage(f"[hidden] {DOCUMENT}")]
        per_call: list[list[str]] = []
        for turn in range(5):  # each turn reads the last one's and writes its own
            conversation.append(HumanMessage(f"Question {turn}? " * 300))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                conversation.append(llm.invoke(conversation))
            per_call.append([str(w.message) for w in caught])
    notes = [n for call in per_call for n in call if "cache writes" in n or "write field" in n]
    assert len(notes) == 1, notes
    assert "probe: reports cache writes = no" in notes[0]
    assert notes[0] in per_call[0]


@pytest.mark.parametrize(
    ("bad_relay", "keeps"),
    [(None, True), ("drop_automatic", False), ("drop_cache_control", False)],
)
def test_the_probe_tells_whether_a_relay_keeps_automatic_caching(
    bad_relay: str | None, keeps: bool
) -> None:
    with RelayEmulator() as emu:
        emu.configure(bad_relay=bad_relay)
        caps = probe_relay(_llm(emu))
    assert caps.keeps_automatic_caching is keeps


def test_a_relay_that_keeps_only_automatic_caching_gets_it_instead_of_markers() -> None:
    """Block markers dropped, the top-level field kept: the only caching that reaches Claude."""
    with RelayEmulator() as emu:
        _probed(emu, "drop_block_markers")
        emu.configure(bad_relay="drop_block_markers")
        llm = _llm(emu)
        first = llm.invoke([SystemMessage(f"[auto] {DOCUMENT}"), HumanMessage("Q1?")])
        llm.invoke(
            [
                SystemMessage(f"[auto] {DOCUMENT}"),
                HumanMessage("Q1?"),
                first,
                HumanMessage("And Q2?"),
            ]
        )
        billed = emu.billing_log
    assert first.response_metadata["cache_plan"]["planned"] is False
    assert "automatic caching sent" in first.response_metadata["cache_plan"]["reason"]
    assert billed[-2].cache_write > 0  # the top-level marker wrote the conversation
    assert billed[-1].cache_read > 0  # and the next turn read it (lookback)


def test_published_relay_prices_are_recorded_and_used_for_cost() -> None:
    with RelayEmulator() as emu:
        emu.configure(published_price_multiplier=1.25)  # the relay's 25% markup
        llm = _llm(emu)
        caps = probe_relay(llm)
        save_capabilities(emu.base_url, caps)
        emu.reset()
        reply = _llm(emu).invoke([SystemMessage(f"[price] {DOCUMENT}"), HumanMessage("Q?")])
        billed = emu.billing_log[-1]
    published = {p.model_id for p in caps.prices}
    assert "claude-sonnet-5-5" in published
    assert reply.response_metadata["cost_usd"] == pytest.approx(billed.cost_usd * 1.25)
    assert reply.response_metadata["cost_source"].startswith("relay /v1/models prices")


def test_track_costs_and_the_ledger_save_the_same_at_a_relays_prices() -> None:
    """Both price cost and the uncached counterfactual at the prices the call was costed at."""
    with RelayEmulator() as emu:
        emu.configure(published_price_multiplier=1.25)
        save_capabilities(emu.base_url, probe_relay(_llm(emu)))
        emu.reset()
        ledger = MemoryLedger()
        llm = ChatClaudeRelay(base_url=emu.base_url, api_key="test-key-0123456789", ledger=ledger)
        with track_costs() as tracked:
            for question in ("Q1?", "Q2?", "Q3?"):
                llm.invoke([SystemMessage(f"[saved] {DOCUMENT * 4}"), HumanMessage(question)])
    summary = ledger.summary()
    assert tracked.saved_usd > 0
    assert tracked.cost_usd == pytest.approx(summary.cost_usd)
    assert tracked.uncached_cost_usd == pytest.approx(summary.uncached_cost_usd)
    assert tracked.saved_usd == pytest.approx(summary.saved_usd)


def test_without_published_prices_cost_comes_from_the_model_table() -> None:
    with RelayEmulator() as emu:
        _probed(emu, None)
        reply = _llm(emu).invoke([SystemMessage(f"[table] {DOCUMENT}"), HumanMessage("Q?")])
        billed = emu.billing_log[-1]
    assert reply.response_metadata["cost_usd"] == pytest.approx(billed.cost_usd)
    assert reply.response_metadata["cost_source"].startswith("model table")


@pytest.mark.parametrize("drops", [True, False])
def test_structured_output_keeps_the_tool_on_a_relay_probed_to_drop_response_format(
    drops: bool,
) -> None:
    """A stored probe found the relay drops ``response_format``: the default keeps the tool.

    On Sonnet 5.5 (no forced tool) the default is Claude's structured outputs, which such a
    relay turns into free text (a parse error); with the verdict stored it binds the tool, and
    the answer parses. A relay that keeps it still gets structured outputs.
    """
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    with RelayEmulator() as emu:
        emu.configure(drop_response_format=drops)
        save_capabilities(emu.base_url, probe_relay(_llm(emu, model="claude-sonnet-5-5")))
        llm = _llm(emu, model="claude-sonnet-5-5")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            structured = llm.with_structured_output(City, include_raw=True)
        result = structured.invoke("Which city is the Louvre in?")
    dropped_note = [w for w in caught if "keeps response_format = no" in str(w.message)]
    assert len(dropped_note) == (1 if drops else 0)
    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], City)
    assert bool(result["raw"].tool_calls) is drops  # the tool when dropped, else the format
