"""``claude-relay stats --chart``: spend, savings and hit rate over time, as a real PNG."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_claude_relay.cli import main
from langchain_claude_relay.ledger import (
    DiskLedger,
    LedgerEntry,
    MemoryLedger,
    set_default_ledger,
)
from langchain_claude_relay.ledger.chart import NO_MATPLOTLIB, write_stats_chart
from langchain_claude_relay.ledger.summary import summarize_over_time

MODEL = "claude-sonnet-4-6"


def _calls(start: float = 0.0) -> list[LedgerEntry]:
    """A write, reads every minute for an hour, a quiet hour, then a miss and reads again."""
    out = []
    minutes = [*range(0, 60, 1), *range(120, 150, 2)]
    for n, minute in enumerate(minutes):
        write = minute in (0, 120)
        read = 0 if write else 10_000
        out.append(
            LedgerEntry(
                f"c{n}",
                start + 60.0 * minute,
                MODEL,
                200,
                read,
                10_000 if write else 0,
                0,
                50,
                cost_usd=0.0384 if write else 0.0044,
                uncached_cost_usd=0.0314,
            )
        )
    return out


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, checking the signature and the CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    assert length == 13
    crc = struct.unpack(">I", data[16 + length : 20 + length])[0]
    assert crc == zlib.crc32(data[12 : 16 + length]) & 0xFFFFFFFF
    assert data.endswith(b"IEND\xaeB`\x82"), "a complete PNG ends with IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_buckets_cut_the_span_and_keep_running_totals() -> None:
    calls = _calls()
    series = summarize_over_time(calls, 10)
    assert len(series) == 10
    assert sum(b.summary.calls for b in series) == len(calls)
    assert series[0].summary.hit_rate == pytest.approx(14 / 15)  # the first write, then reads
    # 148 minutes in 10 stretches of 14.8: the hour of reads, the quiet hour, the second burst
    assert [b.summary.calls for b in series] == [15, 15, 15, 15, 0, 0, 0, 0, 7, 8]
    quiet = [b for b in series if b.summary.calls == 0]
    assert all(b.summary.hit_rate is None for b in quiet)
    assert series[-1].cumulative_cost_usd == pytest.approx(sum(c.cost_usd or 0 for c in calls))
    assert series[-1].cumulative_saved_usd == pytest.approx(
        sum((c.uncached_cost_usd or 0) - (c.cost_usd or 0) for c in calls)
    )
    assert [b.start for b in series] == sorted(b.start for b in series)


def test_one_instant_is_one_bucket_and_no_calls_no_buckets() -> None:
    assert summarize_over_time([], 5) == ()
    (only,) = summarize_over_time(_calls()[:1], 5)
    assert only.summary.calls == 1
    with pytest.raises(ValueError, match="at least 1"):
        summarize_over_time(_calls(), 0)


def test_a_memory_ledger_chart_is_a_real_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    ledger = MemoryLedger()
    for call in _calls():
        ledger.record(call)
    path = tmp_path / "charts" / "stats.png"
    assert write_stats_chart(ledger.entries(), path) is None
    assert _png_size(path) == (900, 640)


def test_a_disk_ledger_chart_with_wall_clock_times(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    ledger = DiskLedger(tmp_path / "ledger", background=False)
    for call in _calls(start=1_780_000_000.0):  # 2026: shown as dates
        ledger.record(call)
    path = tmp_path / "stats.png"
    try:
        assert write_stats_chart(ledger.entries(), path) is None
    finally:
        ledger.close()
    assert _png_size(path) == (900, 640)


def test_no_calls_draw_nothing(tmp_path: Path) -> None:
    path = tmp_path / "stats.png"
    assert write_stats_chart([], path) == "no chart: the ledger has no calls"
    assert not path.exists()


def test_without_matplotlib_the_chart_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import langchain_claude_relay.ledger.chart as chart

    monkeypatch.setattr(chart, "pyplot", lambda: None)
    assert write_stats_chart(_calls(), tmp_path / "x.png") == NO_MATPLOTLIB


@pytest.fixture
def ledger_with_calls() -> Iterator[MemoryLedger]:
    ledger = MemoryLedger()
    for call in _calls():
        ledger.record(call)
    previous = set_default_ledger(ledger)
    try:
        yield ledger
    finally:
        set_default_ledger(previous)


def test_stats_chart_from_the_command_line(
    ledger_with_calls: MemoryLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "stats.png"
    assert main(["stats", "--chart", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Calls")
    assert captured.err == f"chart: {path}\n"
    assert _png_size(path) == (900, 640)


def test_stats_chart_with_no_calls_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = set_default_ledger(MemoryLedger())
    try:
        assert main(["stats", "--chart", str(tmp_path / "stats.png")]) == 1
    finally:
        set_default_ledger(previous)
    assert capsys.readouterr().err == "claude-relay stats: no chart: the ledger has no calls\n"
