"""Damaged rows in the state store: well-shaped but wrong numbers never stop planning.

Whatever the store hands back is untrusted: a row damaged on disk, or planted by someone with
write access to the state directory or the Redis. It must read as missing (or be used within
its bounds), never raise out of ``plan`` or ``observe``, never turn planning off.
"""

from __future__ import annotations

import copy
import json
import math
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_helpers import ESTIMATOR, MODEL, Clock, ToyClaude, conversation, prose, request, tool

from langchain_claude_relay import tokens
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.planner import CachePlanner, validate_user_markers
from langchain_claude_relay.planner.history import hex_key
from langchain_claude_relay.planner.reuse import LineageEntry, ReuseRecord
from langchain_claude_relay.planner.rules import MAX_CACHE_MARKERS, ttl_order_valid
from langchain_claude_relay.request import ClaudeRequest
from langchain_claude_relay.store import DiskStore, MemoryStore, StateStoreWarning, check_value
from langchain_claude_relay.tokens import (
    FEATURES,
    prior_calibration,
    solve_calibration,
    update_calibration,
)

SYSTEM = prose(1500, 7)
TOOLS = (tool("tool_0"), tool("tool_1"))
UNKNOWN_MODEL = "claude-mystery-9"  # learns its minimum (``m:`` rows)


def _request(turns: int, model: str = MODEL) -> ClaudeRequest:
    return request(
        system=SYSTEM, turns=conversation(turns, system=SYSTEM, seed=3), tools=TOOLS, model=model
    )


def _check(plan: Any) -> None:
    """What every plan must be, whatever the store said."""
    bps = plan.breakpoints
    assert len(bps) <= MAX_CACHE_MARKERS
    assert ttl_order_valid([b.ttl for b in bps])
    assert all(math.isfinite(b.estimated_prefix_tokens) for b in bps)
    assert math.isfinite(plan.total_estimated_tokens)
    validate_user_markers(plan.apply())


def _turn(planner: CachePlanner, claude: ToyClaude, clock: Clock, turns: int, model: str) -> Any:
    """One call: plan, send, observe, keep-alive advice; returns the plan."""
    plan = planner.plan(_request(turns, model), keep_warm=True)
    _check(plan)
    planner.sent(plan)
    planner.began(plan)
    usage = claude.send(plan.apply(), clock())
    planner.observe(plan, usage, tools=["tool_0"])
    planner.keep_alives(plan, usage, tools=["tool_0"])
    return plan


# ------------------------------------------------------------------------- calibration (k:)

K = len(FEATURES)
GOOD_STATE = {"a": [0.5] * (K * (K + 1) // 2), "b": [0.5] * K, "w": 3.0}


def _state(**change: Any) -> dict[str, Any]:
    state = copy.deepcopy(GOOD_STATE)
    for name, (index, value) in change.items():
        if index is None:
            state[name] = value
        else:
            state[name][index] = value
    return state


@pytest.mark.parametrize(
    "state",
    [
        _state(a=(0, -1.0)),  # a negative sum of squares: sqrt of it failed
        _state(a=(1, -1.0)),  # sums of non-negative features are never negative
        _state(b=(2, -0.5)),
        _state(a=(0, math.nan)),
        _state(a=(0, math.inf)),
        _state(b=(0, 1e300)),
        _state(w=(None, 0.0)),
        _state(w=(None, -3.0)),
        _state(w=(None, math.nan)),
        _state(w=(None, 1e300)),
        _state(w=(None, True)),
    ],
)
def test_a_damaged_calibration_reads_as_the_prior(state: dict[str, Any]) -> None:
    prior = prior_calibration(1.2)
    assert solve_calibration(state, prior) == prior
    features = (100.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0)
    fresh = update_calibration(None, features, 130.0, prior)
    assert update_calibration(state, features, 130.0, prior) == fresh  # replaced, not summed


def test_a_calibration_that_cannot_be_solved_is_the_prior(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> Any:
        raise ValueError("math domain error")

    monkeypatch.setattr(tokens, "_bounded_solve", broken)
    prior = prior_calibration(1.2)
    assert solve_calibration(GOOD_STATE, prior).coef == prior.coef


def test_a_damaged_calibration_row_does_not_stop_planning(store: MemoryStore, clock: Clock) -> None:
    family = lookup_model(MODEL).family
    store.set(hex_key("k", family), {"a": [-1.0] + [0.0] * 27, "b": [0.0] * 7, "w": 5.0})
    planner = CachePlanner(store, clock, encoding=ESTIMATOR)
    reference = CachePlanner(MemoryStore(), Clock(clock.now), encoding=ESTIMATOR)
    plan = _turn(planner, ToyClaude(), clock, 3, MODEL)
    assert plan.breakpoints  # planned, with the prior
    assert plan == reference.plan(_request(3), keep_warm=True)
    # the observation replaced the damaged row
    repaired = store.get(hex_key("k", family))
    assert repaired["w"] == 1.0
    assert min(repaired["a"]) >= 0.0


# ------------------------------------------------------------------ reuse records (p:, t:)


@pytest.mark.parametrize(
    ("change", "read"),
    [
        ({"lt": -5}, None),  # a tool id: its ``g:`` field name was built from it
        ({"lt": 1 << 48}, None),
        ({"h": -1}, None),
        ({"h": math.inf}, None),  # int() of an infinity
        ({"lt": -math.inf}, None),
        ({"ct": -300.0}, None),
        ({"ct": math.nan}, None),
        ({"ct": 1e300}, None),
        ({"cu": math.inf}, None),
        ({"cu": math.nan}, None),
        ({"last": math.inf}, None),
        ({"n": 1e300}, None),
        ({"b5": math.inf}, None),
        ({"tl": 10**400}, None),  # too large for a float
        ({"n": -1.0, "b5": math.nan}, "zero counts"),
        ({"last": -5.0}, "no last arrival"),
        ({"last": math.nan}, "no last arrival"),
    ],
)
def test_out_of_range_reuse_records_read_as_missing(change: dict[str, Any], read: Any) -> None:
    good = ReuseRecord(2.0, 1.0, 0.5, 100.0, 400.0, 300.0, 12345, False, 678, 0.5, 0.2)
    assert ReuseRecord.from_json(good.to_json()) == good
    record = ReuseRecord.from_json({**good.to_json(), **change})
    if read is None:
        assert record is None
    elif read == "zero counts":
        assert record == good._replace(arrivals=0.0, back_5m=0.0)
    else:
        assert record == good._replace(last_seen=None)


# --------------------------------------------------------------------- conversations (c:)

GOOD_ENTRY = [3, 239003866707345, 1300.0, 73566416976381, 1000.0, 0, 300.0, 5]


@pytest.mark.parametrize(
    ("position", "value"),
    [
        (0, -50),  # a block index: indexed the request's prefixes from the end, or past it
        (0, 1 << 40),
        (1, -1),  # prefix hash
        (1, 1 << 48),
        (2, math.inf),  # expiry
        (2, math.nan),
        (3, -5),  # template id: became the key 't:-00000000005'
        (3, 1 << 48),
        (3, math.inf),
        (4, math.nan),  # when seen
        (6, -300.0),  # TTL
        (6, 1e300),
        (6, math.nan),
        (7, -5),  # tool id: became a field name
        (7, -1e308),
        (7, 1 << 48),
    ],
)
def test_out_of_range_lineage_entries_read_as_missing(position: int, value: Any) -> None:
    assert LineageEntry.from_json(GOOD_ENTRY) is not None
    damaged = list(GOOD_ENTRY)
    damaged[position] = value
    assert LineageEntry.from_json(damaged) is None


def _lineage_key(planner: CachePlanner, turns: int) -> str:
    key = planner.plan(_request(turns)).trace.lineage_key  # type: ignore[attr-defined]
    assert key is not None
    return str(key)


def test_a_negative_index_in_a_conversation_does_not_stop_planning(
    store: MemoryStore, planner: CachePlanner, clock: Clock
) -> None:
    store.set(_lineage_key(planner, 4), [[-50, 0, 0, 0, 0, 0, 0], [-1, 0, 0, 0, 0, 0, 0, 0]])
    _turn(planner, ToyClaude(), clock, 4, MODEL)


@pytest.mark.parametrize(("position", "value"), [(3, -5), (7, -5), (7, -(10**20))])
def test_a_damaged_id_in_a_conversation_does_not_stop_observing(
    store: MemoryStore, planner: CachePlanner, clock: Clock, position: int, value: int
) -> None:
    claude = ToyClaude()
    _turn(planner, claude, clock, 3, MODEL)
    key = _lineage_key(planner, 3)
    entries = store.get(key)
    for entry in entries:
        entry[position] = value
    store.set(key, entries)
    clock.advance(60)
    for turns in (5, 7):  # the follow-ups match the damaged entries
        _turn(planner, claude, clock, turns, MODEL)
        clock.advance(60)


# ------------------------------------------------------------------ every row, any number

WRONG = st.one_of(
    st.sampled_from(
        [0, 0.0, -1, -1.0, -14, 5e-324, 1e300, -1e308, 2**48, 2**64, -(2**62), 10**400]
    ),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
)


RAW_KINDS = frozenset("kptcgsm")
"""Rows served even with numbers no backend hands out (NaN, infinities, integers too large
for a float: ``DiskStore`` and ``RedisStore`` refuse them on read, as missing rows): every kind
the planner reads."""


class DamagedStore(MemoryStore):
    """A store handing back rows as they were planted, even numbers no backend accepts (NaN).

    A planted row is served until the planner writes its key (then the write is checked as
    usual).
    """

    def __init__(self, rows: dict[str, Any]) -> None:
        super().__init__()
        self.planted: dict[str, Any] = {}
        for key, value in rows.items():
            try:
                super().set(key, value)
            except ValueError:  # not finite: only a damaged backend would hand it out
                if key[0] in RAW_KINDS:
                    self.planted[key] = value

    def get(self, key: str) -> Any:
        if key in self.planted:
            return copy.deepcopy(self.planted[key])
        return super().get(key)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        super().set(key, value, expire=expire)
        self.planted.pop(key, None)

    def delete(self, key: str) -> None:
        self.planted.pop(key, None)
        super().delete(key)


def _history() -> tuple[dict[str, Any], float]:
    """Rows of every kind the planner reads, learned from a few calls of two models."""
    store, clock, claude = MemoryStore(), Clock(), ToyClaude()
    planner = CachePlanner(store, clock, encoding=ESTIMATOR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unknown model's
        for turns in (1, 3, 5, 7):
            for model in (MODEL, UNKNOWN_MODEL):
                _turn(planner, claude, clock, turns, model)
            clock.advance(400)
    rows = {key: store.get(key) for key in store._data}
    assert {key[0] for key in rows} >= set("kmptcgs"), sorted({key[0] for key in rows})
    return rows, clock.now


ROWS, END = _history()


def _numbers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every number in a row."""
    if isinstance(value, dict):
        return [p for name, item in value.items() for p in _numbers(item, (*path, name))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _numbers(item, (*path, i))]
    return [path]


PATHS = [(key, path) for key in sorted(ROWS) for path in _numbers(ROWS[key])]


def _put(row: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    row[path[0]] = _put(row[path[0]], path[1:], value)
    return row


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.lists(st.tuples(st.sampled_from(PATHS), WRONG), min_size=1, max_size=6),
    model=st.sampled_from([MODEL, UNKNOWN_MODEL]),
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_wrong_numbers_in_any_row_never_stop_planning(
    changes: list[tuple[tuple[str, tuple[Any, ...]], Any]], model: str
) -> None:
    rows = copy.deepcopy(ROWS)
    for (key, path), value in changes:
        rows[key] = _put(rows[key], path, value)
    clock = Clock(END)
    planner = CachePlanner(DamagedStore(rows), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    for turns in (7, 9):  # the same conversation: every row of it is read again
        _turn(planner, claude, clock, turns, model)
        clock.advance(400)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("model", [MODEL, UNKNOWN_MODEL])
def test_an_integer_too_large_for_a_float_in_any_row_never_stops_planning(model: str) -> None:
    # ``math.isfinite(10**400)`` raises OverflowError: a stability history holding one stopped
    # every plan (found by the property test above on one CI run); every number, one by one
    for key, path in PATHS:
        rows = copy.deepcopy(ROWS)
        rows[key] = _put(rows[key], path, 10**400)
        clock = Clock(END)
        planner = CachePlanner(DamagedStore(rows), clock, encoding=ESTIMATOR)
        _turn(planner, ToyClaude(), clock, 7, model)


# ------------------------------------------------------------------ numbers no float holds


@pytest.mark.parametrize(
    "value",
    [10**400, [1, 10**400], [10**400, -(10**400)], {"above": -(10**400)}, [[10**400]]],
    ids=["number", "in a list", "summing to 0", "in a dict", "nested"],
)
def test_integers_too_large_for_a_float_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="finite"):
        check_value(value)
    with pytest.raises(ValueError, match="finite"):
        MemoryStore().set("m:01", value)


def test_an_integer_too_large_for_a_float_on_disk_reads_as_missing(
    tmp_path: Path, clock: Clock
) -> None:
    store = DiskStore(tmp_path, background=False)
    key = hex_key("m", lookup_model(UNKNOWN_MODEL).family)
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute(
            "INSERT INTO state (key, value, expires, last_used) VALUES (?, ?, NULL, 0)",
            (store._stored_key(key), json.dumps({"above": 10**400, "at_most": -1.0})),
        )
    planner = CachePlanner(store, clock, encoding=ESTIMATOR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _turn(planner, ToyClaude(), clock, 3, UNKNOWN_MODEL)  # read, then replaced
    assert any(issubclass(w.category, StateStoreWarning) for w in caught)  # the row's
    assert store.get(key)["above"] < 1e9
    store.close()


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, 2**64], ids=str)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_damaged_block_history_reads_as_never_seen(value: Any) -> None:
    rows = copy.deepcopy(ROWS)
    stability_rows = [key for key in rows if key[0] == "s"]
    assert stability_rows
    for key in stability_rows:
        for path in _numbers(rows[key]):
            rows[key] = _put(rows[key], path, value)
    clock = Clock(END)
    planner = CachePlanner(DamagedStore(rows), clock, encoding=ESTIMATOR)
    for turns in (7, 9):  # _turn checks each plan
        _turn(planner, ToyClaude(), clock, turns, MODEL)
        clock.advance(400)
