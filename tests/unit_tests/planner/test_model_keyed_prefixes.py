"""Claude caches per model: the planner's prefixes are keyed by the model as well as the content.

``default_planner()`` is one planner per process, shared by every chat model, so a prefix one
model wrote must not look cached (or in flight) to another. Two spellings of one model (an alias
and its dated id, a relay's ``anthropic/...`` form) are one model to Claude's cache: their
prefixes stay shared. ``ToyClaude`` keys its entries by model too, as Claude does.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from planner_helpers import ESTIMATOR, Clock, ToyClaude, prose, request, run

from langchain_claude_relay.models import MODEL_TABLE, lookup_model
from langchain_claude_relay.planner import CachePlan, CachePlanner
from langchain_claude_relay.request import cache_model_key
from langchain_claude_relay.store import MemoryStore

BIG = prose(3000, 21)  # ~3,600 tokens: above the 1,024 minimum of both models
SONNET = "claude-sonnet-4-6"
OPUS = "claude-opus-4-1"
OPUS_DATED = "claude-opus-4-1-20250805"
OPUS_RELAY = "anthropic/claude-opus-4.1"


def _planner(clock: Clock) -> CachePlanner:
    return CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)


def _ask(question: str) -> list[object]:
    return [SystemMessage(BIG), HumanMessage(question)]


def _predicted(plan: CachePlan) -> dict[str, str]:
    return {str(bp.position): bp.predicted for bp in plan.breakpoints}


# -- the model identity the chain is seeded with ------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_the_seed_is_the_model_family_of_the_model_table() -> None:
    spellings = (OPUS, OPUS_DATED, OPUS_RELAY, "us.anthropic.claude-opus-4-1-20250805-v1:0")
    assert {lookup_model(m).family for m in spellings} == {"opus-4-1"}
    assert {cache_model_key(m) for m in spellings} == {"opus-4-1"}
    # different versions of one tier are different models (Claude caches them apart)
    assert lookup_model("claude-opus-4").family != lookup_model(OPUS).family
    assert lookup_model("claude-sonnet-4-5").family != lookup_model(SONNET).family
    for family in MODEL_TABLE:  # the same key as the planner's other per-model state
        assert cache_model_key(family) == lookup_model(family).family
    for unknown in ("gpt-4o", "my-relay-alias", "Claude-Weird"):  # each its own model
        assert cache_model_key(unknown) == lookup_model(unknown).family == unknown


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_prefix_hashes_differ_across_models_and_match_across_spellings() -> None:
    base = request(system=BIG, turns=[("user", "Hi")])
    sonnet = base.prefix_hashes()
    opus = request(system=BIG, turns=[("user", "Hi")], model=OPUS).prefix_hashes()
    dated = request(system=BIG, turns=[("user", "Hi")], model=OPUS_DATED).prefix_hashes()
    older = request(system=BIG, turns=[("user", "Hi")], model="claude-sonnet-4-5").prefix_hashes()
    assert all(a != b for a, b in zip(sonnet, opus, strict=True))
    assert all(a != b for a, b in zip(sonnet, older, strict=True))
    assert opus == dated


@pytest.mark.parametrize("model", [SONNET, OPUS, OPUS_DATED])
def test_the_planners_prefix_hashes_are_the_requests_for_every_model(model: str) -> None:
    """Breakpoints, records and in-flight keys all come from the one seeded chain."""
    planner = _planner(Clock())
    plan = planner.plan(request(system=BIG, turns=[("user", "Hi")]), model=model)
    fresh = request(system=BIG, turns=[("user", "Hi")], model=model)  # nothing memoized
    by_position = dict(
        zip([f.position for f in fresh.flat_blocks()], fresh.prefix_hashes(), strict=True)
    )
    assert plan.breakpoints
    for bp in plan.breakpoints:
        assert bp.prefix_hash == by_position[bp.position]
    assert plan.request.prefix_hashes() == fresh.prefix_hashes()
    assert plan.trace is not None
    assert {s.prefix_hash for s in plan.trace.sites} <= set(fresh.prefix_hashes())


# -- the reviewer's repro: in flight, then observed ---------------------------------------------


def test_a_request_in_flight_on_one_model_does_not_hold_back_another_models_write() -> None:
    clock = Clock()
    planner = _planner(clock)
    a = planner.plan(_ask("Question A"), model=SONNET)
    assert _predicted(a)["system[0]"] == "write"
    planner.sent(a)
    b = planner.plan(_ask("Question B"), model=OPUS)
    assert _predicted(b)["system[0]"] == "write"  # its own write markers
    assert b.trace is not None
    assert not b.trace.concurrent
    c = planner.plan(_ask("Question C"), model=SONNET)  # the same model still waits for a
    assert "system[0]" not in _predicted(c)
    assert c.trace is not None
    assert a.breakpoints[0].prefix_hash in c.trace.concurrent
    # once a's response began, sonnet reads what it wrote; opus still does not
    planner.began(a)
    assert _predicted(planner.plan(_ask("Question D"), model=SONNET))["system[0]"] == "read"
    opus = planner.plan(_ask("Question E"), model=OPUS)
    assert _predicted(opus)["system[0]"] == "write"
    assert opus.predicted_read_tokens == 0


def test_after_one_models_observe_another_model_predicts_no_read() -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _planner(clock)
    a = planner.plan(_ask("Question A"), model=SONNET)
    planner.sent(a)
    usage = claude.send(a.apply(), clock())
    assert usage.cache_write_tokens > 0
    planner.observe(a, usage)
    clock.advance(30)
    b = planner.plan(_ask("Question B"), model=OPUS)
    assert "read" not in _predicted(b).values()
    assert b.predicted_read_tokens == 0
    assert _predicted(b)["system[0]"] == "write"
    usage_b = claude.send(b.apply(), clock())  # Claude's cache is per model: nothing to read
    assert usage_b.cache_read_tokens == 0
    planner.observe(b, usage_b)
    # each model now reads its own entry
    clock.advance(30)
    for model in (SONNET, OPUS):
        plan = planner.plan(_ask("Question C"), model=model)
        assert _predicted(plan)["system[0]"] == "read"
        assert claude.send(plan.apply(), clock()).cache_read_tokens > 0


def test_a_conversation_continued_on_another_model_predicts_no_read() -> None:
    """The conversation's recent prefixes (``c:`` lineage) are per model too."""
    clock, claude = Clock(), ToyClaude()
    planner = _planner(clock)
    first = [SystemMessage(prose(200, 4)), HumanMessage(prose(1500, 5))]
    _plan, usage, _obs = run(planner, claude, first, clock, model=SONNET)
    assert usage.cache_write_tokens > 0
    clock.advance(20)
    follow = [*first, AIMessage(prose(300, 6)), HumanMessage("And then?")]
    same = planner.plan(follow, model=SONNET)
    assert "read" in _predicted(same).values()  # the control: the lineage works on one model
    other = planner.plan(follow, model=OPUS)
    assert "read" not in _predicted(other).values()
    assert other.trace is not None
    assert other.trace.lineage_matches == ()
    assert claude.send(other.apply(), clock()).cache_read_tokens == 0


# -- one model under two spellings still shares -------------------------------------------------


@pytest.mark.parametrize("spelling", [OPUS_DATED, OPUS_RELAY])
def test_an_alias_and_a_dated_id_share_their_prefixes(spelling: str) -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _planner(clock)
    a = planner.plan(_ask("Question A"), model=OPUS)
    planner.sent(a)
    b = planner.plan(_ask("Question B"), model=spelling)  # the same model: a is writing it
    assert "system[0]" not in _predicted(b)
    assert b.trace is not None
    assert a.breakpoints[0].prefix_hash in b.trace.concurrent
    usage = claude.send(a.apply(), clock())
    planner.observe(a, usage)
    clock.advance(30)
    c = planner.plan(_ask("Question C"), model=spelling)
    assert _predicted(c)["system[0]"] == "read"
    assert claude.send(c.apply(), clock()).cache_read_tokens > 0


# -- the toy Claude is per model, as Claude is ---------------------------------------------------


def test_toy_claude_caches_per_model() -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _planner(clock)
    plan = planner.plan(_ask("Question A"), model=SONNET)
    sent = plan.apply()
    assert claude.send(sent, clock()).cache_write_tokens > 0
    assert claude.send(sent, clock()).cache_read_tokens > 0
    # the very same blocks and markers under another model: a write, no read
    other = replace(sent, model=OPUS)
    assert claude.send(other, clock()).cache_read_tokens == 0
    assert claude.send(replace(sent, model=OPUS_DATED), clock()).cache_read_tokens > 0


# -- property: whatever the models' order, a predicted read is a real read -------------------------

MODELS = st.sampled_from([SONNET, OPUS, OPUS_DATED, "claude-haiku-4-5"])


@settings(max_examples=25, deadline=None)
@given(
    calls=st.lists(
        st.tuples(MODELS, st.integers(0, 3), st.sampled_from([0.0, 20.0, 200.0, 400.0])),
        min_size=2,
        max_size=8,
    )
)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_interleaved_models_never_predict_a_read_another_model_wrote(
    calls: list[tuple[str, int, float]],
) -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _planner(clock)
    system = prose(4000, 8)  # above every one of these models' minimums (Haiku 4.5: 4,096)
    for model, question, gap in calls:
        req = request(system=system, turns=[("user", f"Q{question}: " + prose(20, question))])
        _plan, _usage, observation = run(planner, claude, req, clock, model=model)
        for outcome in observation.breakpoints:
            if outcome.predicted == "read":
                assert outcome.actual == "read", (model, outcome)
        clock.advance(gap)
