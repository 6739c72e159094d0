"""Data residency: ``usage.inference_geo == "us"`` costs 1.1x on every token kind (4.6 and later).

Sources (``models.json``'s ``inference_geo`` block): Anthropic's data-residency page (the usage
echoes ``inference_geo``), AWS "Claude Platform on AWS" data residency ("US: ... A 1.1x pricing
multiplier applies", "Global: ... Standard pricing applies") and Anthropic's help-center article
on US-only inference (1.1x on Opus 4.6, Sonnet 4.6 and later; 4.5 models and earlier: standard).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from langchain_claude_relay import ChatClaudeRelay, models
from langchain_claude_relay import cost as cost_module
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.cost import call_cost_usd, cost_breakdown, uncached_cost_usd
from langchain_claude_relay.ledger import DiskLedger, LedgerEntry, MemoryLedger, summarize
from langchain_claude_relay.ledger.codec import decode_entry, encode_entry
from langchain_claude_relay.ledger.summary import _premium
from langchain_claude_relay.ledger.waste import write_premium
from langchain_claude_relay.models import ModelPrices, lookup_model, register_model
from langchain_claude_relay.usage import NormalizedUsage, normalize_usage

SONNET = "claude-sonnet-4-6"  # $3 in, $15 out, reads $0.30, 5m $3.75, 1h $6


def usage(geo: str | None = "us", **counts: int) -> NormalizedUsage:
    base = {"plain": 1_000, "read": 100_000, "w5": 2_000, "w1h": 500, "out": 800}
    base.update(counts)
    return NormalizedUsage(
        base["plain"], base["read"], base["w5"], base["w1h"], base["out"], inference_geo=geo
    )


@pytest.fixture(autouse=True)
def _clean_overrides() -> Iterator[None]:
    saved = dict(models._overrides)
    models._overrides.clear()
    models.lookup_model.cache_clear()
    yield
    models._overrides.clear()
    models._overrides.update(saved)
    models.lookup_model.cache_clear()


# -- the facts, as data ----------------------------------------------------------------------


def test_the_multipliers_are_data_with_their_sources() -> None:
    geo = models.INFERENCE_GEO
    assert dict(geo.multipliers) == {"global": 1.0, "us": 1.1}
    assert len(geo.sources) >= 2
    for key in geo.sources:
        assert models.SOURCES[key].read_on.isoformat() == "2026-12-03"
    titles = " ".join(models.SOURCES[k].title for k in geo.sources)
    assert "1.1x" in titles
    assert "usage" in titles  # the response's usage.inference_geo
    raw = json.loads(Path(models.__file__).with_name("models.json").read_text(encoding="utf-8"))
    assert raw["inference_geo"]["multipliers"] == {"global": 1.0, "us": 1.1}


def test_it_applies_to_opus_4_6_sonnet_4_6_and_later_only() -> None:
    geo = models.INFERENCE_GEO
    for family in ("opus-4-6", "sonnet-4-6", "opus-4-7", "opus-5-5", "sonnet-5-5", "haiku-5-5"):
        assert family in geo.families
        assert models.MODEL_TABLE[family].price_multiplier("us") == 1.1
    for family in ("opus-4-5", "sonnet-4-5", "haiku-4-5", "opus-4-1", "sonnet-4", "haiku-3-5"):
        assert family not in geo.families
        assert models.MODEL_TABLE[family].price_multiplier("us") == 1.0


def test_every_priced_family_from_4_6_on_is_listed() -> None:
    """A new row of the table cannot be forgotten: "Opus 4.6 and all subsequent models"."""
    later = set()
    for family, spec in models.MODEL_TABLE.items():
        version = tuple(int(x) for x in family.split("-")[1:] if x.isdigit())
        if spec.prices is not None and version >= (4, 6):
            later.add(family)
    assert later == set(models.INFERENCE_GEO.families)


def test_the_model_table_prints_the_multipliers() -> None:
    rows = {r["family"]: r for r in models.table_rows()}
    assert rows["opus-5-5"]["inference_geo_multipliers"] == {"global": 1.0, "us": 1.1}
    assert rows["haiku-4-5"]["inference_geo_multipliers"] == {}


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        ({"multipliers": {"us": 1.1}, "families": ["opus-77"]}, "does not price"),
        ({"multipliers": {"us": -1}}, "multiplier of at least 1"),
        ({"multipliers": {"us": 0.5}}, "multiplier of at least 1"),
        ({"multipliers": {"us": "1.1"}}, "multiplier of at least 1"),
        ({"multipliers": {"U S": 1.1}}, "geo label"),
        ({"multipliers": {}}, "multipliers"),
        ({"multipliers": {"us": 1.1}, "unlisted_from_version": "4.6"}, "list of ints"),
    ],
)
def test_a_bad_block_in_the_table_is_refused(block: dict[str, Any], fragment: str) -> None:
    data = json.loads(models._TABLE_TEXT)
    data["inference_geo"] = {**data["inference_geo"], **block}
    with pytest.raises(ValueError, match=fragment):
        models.load_table(json.dumps(data))


def test_a_model_registered_later_takes_the_rule_of_its_version() -> None:
    newer = register_model(
        "claude-opus-9", min_cache_tokens=1024, prices=ModelPrices.standard(5, 25)
    )
    assert newer.price_multiplier("us") == 1.1
    listed = register_model(
        "claude-fable-5-2", min_cache_tokens=512, prices=ModelPrices.standard(8, 40)
    )
    assert listed.price_multiplier("us") == 1.1
    own = register_model("claude-opus-9", inference_geo_multipliers={"us": 1.25, "eu": 1.2})
    assert (own.price_multiplier("us"), own.price_multiplier("eu")) == (1.25, 1.2)
    with pytest.raises(TypeError, match="inference_geo_multipliers"):
        register_model("claude-opus-9", inference_geo_multipliers={"us": 0})
    with pytest.raises(TypeError, match="inference_geo_multipliers"):
        register_model("claude-opus-9", inference_geo_multipliers=1.1)


# -- the usage -------------------------------------------------------------------------------


def test_the_native_usage_reports_where_inference_ran() -> None:
    raw = {
        "input_tokens": 25,
        "output_tokens": 150,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "inference_geo": "us",
    }
    u = normalize_usage(raw)
    assert (u.inference_geo, u.input_tokens, u.output_tokens) == ("us", 25, 150)
    assert normalize_usage({**raw, "inference_geo": "global"}).inference_geo == "global"
    assert normalize_usage({**raw, "inference_geo": " US "}).inference_geo == "us"
    assert normalize_usage({"input_tokens": 25, "output_tokens": 150}).inference_geo is None


def test_an_openai_format_relay_passing_it_through_is_read_the_same() -> None:
    raw = {
        "prompt_tokens": 1200,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "inference_geo": "us",
    }
    u = normalize_usage(raw)
    assert (u.inference_geo, u.input_tokens, u.cache_read_tokens) == ("us", 200, 1000)
    assert u.to_dict()["inference_geo"] == "us"


@pytest.mark.parametrize(
    "junk",
    [1, 1.1, True, None, [], ["us"], {"geo": "us"}, "", "u s", "x" * 10_000, "üs", "us;rm", "mars"],
)
def test_a_bad_geo_is_ignored_and_the_counts_stand(junk: Any) -> None:
    raw = {"prompt_tokens": 1200, "completion_tokens": 50, "cache_read_input_tokens": 1000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a well-formed unknown geo is warned about
        got = normalize_usage({**raw, "inference_geo": junk})
    assert got == normalize_usage(raw)
    assert got.inference_geo is None
    assert "inference_geo" not in got.to_dict()


def test_a_well_formed_geo_the_table_does_not_price_is_warned_about_once() -> None:
    """One warning, one key, one message: a relay inventing labels grows no registry."""
    forget_warnings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(50):
            geo = "zz" + uuid.uuid4().hex[:8]
            assert normalize_usage({"input_tokens": 5, "inference_geo": geo}).inference_geo is None
    priced = [w for w in caught if "does not price" in str(w.message)]
    assert len(priced) == 1
    assert "1x" in str(priced[0].message)


def test_not_available_is_the_apis_own_label_and_quiet() -> None:
    """Anthropic's usage says ``not_available`` where no geo applies: 1x, no warning."""
    forget_warnings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        usage = normalize_usage({"input_tokens": 5, "inference_geo": "not_available"})
    assert usage.inference_geo is None
    assert not [w for w in caught if "inference_geo" in str(w.message)]


def test_normalized_usage_refuses_a_geo_it_cannot_price() -> None:
    with pytest.raises(ValueError, match="inference_geo"):
        NormalizedUsage(1, 0, 0, 0, 1, inference_geo="mars")


# -- the cost --------------------------------------------------------------------------------


def test_a_us_call_costs_1_1x_on_every_token_kind() -> None:
    us, plain = cost_breakdown(usage("us"), SONNET), cost_breakdown(usage(None), SONNET)
    assert us is not None
    assert plain is not None
    for kind in ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "total"):
        assert getattr(us, kind) == pytest.approx(1.1 * getattr(plain, kind))
    # 1000*3.3 + 100000*0.33 + 2000*4.125 + 500*6.6 + 800*16.5 = 61,050 micro-USD
    assert us.total == pytest.approx(0.06105)
    assert call_cost_usd(usage("us"), SONNET) == pytest.approx(0.06105)
    assert (us.price_multiplier, plain.price_multiplier) == (1.1, 1.0)


def test_the_uncached_counterfactual_is_at_the_same_multiplier() -> None:
    # (1000 + 100000 + 2000 + 500) * 3.3 + 800 * 16.5 = 354,750 micro-USD
    assert uncached_cost_usd(usage("us"), SONNET) == pytest.approx(0.35475)
    us, plain = cost_breakdown(usage("us"), SONNET), cost_breakdown(usage(None), SONNET)
    assert us is not None
    assert plain is not None
    assert us.savings_vs_uncached == pytest.approx(1.1 * plain.savings_vs_uncached)


def test_global_and_older_models_pay_standard_rates() -> None:
    assert call_cost_usd(usage("global"), SONNET) == call_cost_usd(usage(None), SONNET)
    haiku = "claude-haiku-4-5"
    assert call_cost_usd(usage("us"), haiku) == call_cost_usd(usage(None), haiku)
    assert cost_module.price_multiplier(usage("us"), haiku) == 1.0


def test_the_multiplier_stacks_on_the_long_context_tier() -> None:
    u = usage("us", plain=150_000, read=0, w5=0, w1h=0, out=1_000)
    # Haiku 5.5 past 100K: 5x ($0.50 in, $2.50 out), then 1.1x: 150000*0.55 + 1000*2.75
    assert call_cost_usd(u, "claude-haiku-5-5") == pytest.approx(0.08525)


def test_a_relays_published_prices_take_the_multiplier_too() -> None:
    spec = replace(lookup_model(SONNET), prices=ModelPrices.standard(2, 8))
    assert call_cost_usd(usage("us"), spec) == pytest.approx(1.1 * call_cost_usd(usage(None), spec))


# -- the ledger ------------------------------------------------------------------------------


def us_entry(call_id: str = "c-us", ts: float = 0.0, **kwargs: Any) -> LedgerEntry:
    return LedgerEntry.from_usage(
        usage("us"), model=SONNET, timestamp=ts, call_id=call_id, **kwargs
    )


def test_an_entry_carries_what_its_cost_was_computed_from() -> None:
    e = us_entry()
    assert (e.inference_geo, e.price_multiplier) == ("us", 1.1)
    assert e.cost_usd == call_cost_usd(usage("us"), SONNET)
    assert e.uncached_cost_usd == uncached_cost_usd(usage("us"), SONNET)
    prices = lookup_model(e.model).prices
    assert prices is not None
    again = prices.charges(
        e.input_tokens,
        e.cache_read_tokens,
        e.cache_write_5m_tokens,
        e.cache_write_1h_tokens,
        e.output_tokens,
        multiplier=e.price_multiplier,
    )
    assert sum(again) == e.cost_usd
    older = LedgerEntry.from_usage(usage("us"), model="claude-haiku-4-5", timestamp=0.0)
    assert (older.inference_geo, older.price_multiplier) == ("us", 1.0)


def test_an_entry_from_before_the_field_reads_as_1x() -> None:
    data = us_entry().to_dict()
    for key in ("inference_geo", "price_multiplier"):
        del data[key]
    old = LedgerEntry.from_dict(data)
    assert (old.inference_geo, old.price_multiplier) == (None, 1.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("inference_geo", "US"),
        ("inference_geo", "the whole prompt text"),
        ("inference_geo", 1),
        ("price_multiplier", 0),
        ("price_multiplier", -1.1),
        ("price_multiplier", float("nan")),
        ("price_multiplier", float("inf")),
        ("price_multiplier", 10**400),
        ("price_multiplier", True),
        ("price_multiplier", "1.1"),
    ],
)
def test_an_entry_refuses_a_bad_geo_or_multiplier(field: str, value: Any) -> None:
    data = us_entry().to_dict()
    data[field] = value
    with pytest.raises(ValueError, match=field):
        LedgerEntry.from_dict(data)


def test_the_stored_form_keeps_them_and_leaves_other_rows_as_they_were() -> None:
    us = us_entry()
    row = json.loads(encode_entry(us))
    assert (row[0], len(row), row[-2:]) == (3, 19, ["us", 1.1])
    assert decode_entry(encode_entry(us)) == us
    ping = replace(us, keep_alive=True, estimated=True)
    assert decode_entry(encode_entry(ping)) == ping
    plain = replace(us, inference_geo=None, price_multiplier=1.0)
    assert json.loads(encode_entry(plain))[0] == 1  # the version-1 form, for older readers
    assert len(json.loads(encode_entry(plain))) == 16
    flagged = replace(plain, keep_alive=True)
    assert json.loads(encode_entry(flagged))[0] == 2
    assert len(json.loads(encode_entry(flagged))) == 17


def test_a_1x_geo_is_stored_in_the_form_older_readers_take() -> None:
    """Every default-region call ("global", 1x) as a version-3 row vanished from older workers."""
    standard = replace(us_entry(), inference_geo="global", price_multiplier=1.0)
    row = json.loads(encode_entry(standard))
    assert (row[0], len(row)) == (1, 16)
    decoded = decode_entry(encode_entry(standard))
    assert decoded is not None
    assert (decoded.inference_geo, decoded.price_multiplier) == (None, 1.0)
    assert decoded.cost_usd == standard.cost_usd


@pytest.mark.parametrize("multiplier", [5e-324, 1e-300, 0.5, 0.999])
def test_a_stored_multiplier_below_1_is_a_damaged_row(multiplier: float) -> None:
    """A multiplier near 0 read back made the premium minus infinity (stats --json crashed)."""
    row = json.loads(encode_entry(us_entry()))
    row[-1] = multiplier
    assert decode_entry(json.dumps(row)) is None
    cost = us_entry().cost_usd
    assert summarize([us_entry()]).to_dict()  # a good row still sums
    assert _premium(cost, multiplier) == 0.0


def test_rows_written_before_version_3_read_as_1x() -> None:
    v1 = '[1,"old",5.0,"claude-sonnet-4-6",100,0,0,0,10,0.00045,0.00045,null,[],null,null,null]'
    v2 = '[2,"ka",6.0,"claude-sonnet-4-6",4,5000,0,0,1,0.001527,0.015027,null,[],null,null,null,1]'
    for text in (v1, v2):
        entry = decode_entry(text)
        assert entry is not None
        assert (entry.inference_geo, entry.price_multiplier) == (None, 1.0)


@pytest.mark.parametrize(
    ("geo", "multiplier"),
    [("US!", 1.1), (5, 1.1), ("us", "1.1"), ("us", 0), ("us", -1), ("us", 1e9), ("us", None)],
)
def test_a_damaged_version_3_row_is_not_read(geo: Any, multiplier: Any) -> None:
    row = json.loads(encode_entry(us_entry()))
    row[-2:] = [geo, multiplier]
    assert decode_entry(json.dumps(row)) is None


def test_a_version_3_row_of_the_wrong_length_is_not_read() -> None:
    row = json.loads(encode_entry(us_entry()))
    assert decode_entry(json.dumps(row[:-1])) is None
    assert decode_entry(json.dumps([*row, 1])) is None


def test_the_disk_ledger_keeps_them(tmp_path: Path) -> None:
    ledger = DiskLedger(tmp_path, background=False)
    try:
        entries = [
            us_entry("a", 1.0),
            replace(us_entry("b", 2.0), inference_geo=None, price_multiplier=1.0),
        ]
        for e in entries:
            ledger.record(e)
        assert ledger.entries() == entries
    finally:
        ledger.close()
    reopened = DiskLedger(tmp_path, background=False)
    try:
        assert [(e.inference_geo, e.price_multiplier) for e in reopened.entries()] == [
            ("us", 1.1),
            (None, 1.0),
        ]
    finally:
        reopened.close()


# -- summaries -------------------------------------------------------------------------------


def test_a_wasted_us_write_costs_its_premium_at_1_1x() -> None:
    writer = us_entry(written_prefixes=["ab" * 16])
    global_writer = replace(writer, inference_geo=None, price_multiplier=1.0)
    # 2000 * (3.75 - 3) + 500 * (6 - 3) = 3000 micro-USD at 1x
    assert write_premium(global_writer, {}) == pytest.approx(0.003)
    assert write_premium(writer, {}) == pytest.approx(0.0033)
    assert summarize([writer]).wasted_write_usd == pytest.approx(0.0033)


def test_the_summary_shows_the_geos_and_what_they_added() -> None:
    us = us_entry("a", 1.0)
    plain = LedgerEntry.from_usage(usage("global"), model=SONNET, timestamp=2.0, call_id="b")
    s = summarize([us, plain])
    assert s.inference_geo_calls == (("global", 1), ("us", 1))
    assert us.cost_usd is not None
    assert s.geo_premium_usd == pytest.approx(us.cost_usd / 11)  # 0.1 of 1.1
    assert s.saved_usd == pytest.approx(
        (us.uncached_cost_usd or 0)
        - us.cost_usd
        + (plain.uncached_cost_usd or 0)
        - (plain.cost_usd or 0)
    )
    data = s.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["inference_geo_calls"] == {"global": 1, "us": 1}
    line = next(x for x in s.to_table().splitlines() if x.startswith("Inference geo"))
    assert "global 1, us 1 calls" in line
    assert "above standard rates" in line
    no_geo = summarize([replace(plain, inference_geo=None)])
    assert not any(x.startswith("Inference geo") for x in no_geo.to_table().splitlines())


# -- end to end: a relay that passes usage.inference_geo through ----------------------------


def test_a_relays_us_call_is_costed_and_recorded_at_1_1x(
    relay: Any, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    from fake_relay import completion

    raw_usage = {
        "prompt_tokens": 101_000,
        "completion_tokens": 800,
        "prompt_tokens_details": {"cached_tokens": 100_000},
        "inference_geo": "us",
    }
    relay.queue(
        completion(usage=raw_usage), completion(usage={**raw_usage, "inference_geo": "global"})
    )
    ledger = MemoryLedger()
    llm = make_llm(model=SONNET, ledger=ledger)
    us = llm.invoke("hi").response_metadata
    standard = llm.invoke("hi").response_metadata
    assert us["cost_usd"] == pytest.approx(1.1 * standard["cost_usd"])
    assert us["uncached_cost_usd"] == pytest.approx(1.1 * standard["uncached_cost_usd"])
    # 1000*3.3 + 100000*0.33 + 800*16.5
    assert us["cost_usd"] == pytest.approx(0.0495)
    first, second = ledger.entries()
    assert (first.inference_geo, first.price_multiplier) == ("us", 1.1)
    assert (second.inference_geo, second.price_multiplier) == ("global", 1.0)
    assert first.cost_usd == pytest.approx(us["cost_usd"])
    assert (us["inference_geo"], us["price_multiplier"]) == ("us", 1.1)
    assert (standard["inference_geo"], standard["price_multiplier"]) == ("global", 1.0)


def test_a_cost_tracker_counts_the_us_premium_too(
    relay: Any, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    """usage_metadata has no place for the geo: the tracker reads it from the raw usage."""
    from fake_relay import completion

    from langchain_claude_relay.callbacks import track_costs

    raw_usage = {"prompt_tokens": 1000, "completion_tokens": 10, "inference_geo": "us"}
    relay.queue(completion(usage=raw_usage))
    with track_costs() as tracker:
        cost = make_llm(model=SONNET).invoke("hi").response_metadata["cost_usd"]
    (entry,) = tracker.entries()
    assert (entry.inference_geo, entry.price_multiplier) == ("us", 1.1)
    assert entry.cost_usd == pytest.approx(cost)


# -- Redis: the same stored form, read back by every worker ----------------------------------

_REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("redis")
    if _REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(  # noqa: S603 -- a fixed command line on loopback
        [_REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(500):  # until it answers (not a timed assertion: it must answer)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def test_the_redis_ledger_keeps_them_and_reads_old_rows_as_1x(redis_url: str) -> None:
    from langchain_claude_relay.ledger.redis import RedisLedger

    ledger = RedisLedger(redis_url, namespace="t" + uuid.uuid4().hex[:12], background=False)
    try:
        us = us_entry("a", 1.0)
        ledger.record(us)
        old = (
            '[1,"old",2.0,"claude-sonnet-4-6",100,0,0,0,10,0.00045,0.00045,null,[],null,null,null]'
        )
        ledger.client.xadd(ledger._entries_key, {"e": old})
        got = ledger.entries()
        assert got[0] == us
        assert (got[1].call_id, got[1].inference_geo, got[1].price_multiplier) == ("old", None, 1.0)
        assert ledger.totals()["cost_usd"] == pytest.approx(us.cost_usd)
    finally:
        ledger.clear()
        ledger.close()
