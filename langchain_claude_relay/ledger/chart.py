"""The ledger over time as a PNG: spend against uncached, savings, and the hit rate.

What ``claude-relay stats --chart PATH`` draws, from ``summarize_over_time``: two panels on one
time axis. Above, the running cost with caching and what the same calls would have cost
uncached (the gap between them, shaded, is the saving; red where writes are not yet repaid).
Below, the hit rate of each stretch of time (calls that read from the cache) with its call
count. Timestamps that look like wall-clock epochs are shown as dates; smaller ones (a virtual
clock, as in the emulator) as minutes from the first call.

Needs matplotlib (the ``demo`` extra); without it ``write_stats_chart`` says so and draws
nothing.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langchain_claude_relay.ledger.entry import LedgerEntry
from langchain_claude_relay.ledger.summary import TimeBucket, summarize_over_time

__all__ = ["CHART_BUCKETS", "NO_MATPLOTLIB", "chart_path", "pyplot", "write_stats_chart"]

CHART_BUCKETS = 24
"""Stretches of time the span is cut into."""
NO_MATPLOTLIB = (
    "no chart: matplotlib is not installed "
    "(pip install 'langchain-claude-relay[charts]', or pip install matplotlib)"
)
_EPOCH_2001 = 978_307_200.0
"""Timestamps from here on are taken for wall-clock epochs (virtual clocks start at 0)."""


def pyplot() -> Any:
    """The pyplot module on the file-only Agg backend, or ``None`` without matplotlib."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return plt


def chart_path(path: str | Path) -> Path:
    """Where the chart for ``path`` is written: ``path``, ``.png`` added if it has no extension.

    matplotlib adds it too; naming it here lets ``--chart report`` say it wrote ``report.png``.
    """
    target = Path(path)
    return target if target.suffix else target.with_name(target.name + ".png")


def _time_axis(buckets: tuple[TimeBucket, ...]) -> tuple[list[Any], str]:
    """Bucket midpoints for the x axis, and its label."""
    mids = [(b.start + b.end) / 2 for b in buckets]
    if buckets[0].start >= _EPOCH_2001:
        return [_dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc) for t in mids], "time (UTC)"
    origin = buckets[0].start
    return [(t - origin) / 60 for t in mids], "minutes since the first call"


def write_stats_chart(
    entries: Iterable[LedgerEntry],
    path: str | Path,
    *,
    since: float | None = None,
    buckets: int = CHART_BUCKETS,
    title: str = "Prompt caching over time (ledger)",
) -> str | None:
    """Draw spend, savings and hit rate over time into a PNG.

    Args:
        entries: ledger entries, in any order.
        path: the PNG to write (parent directories are created).
        since: only entries with ``timestamp >= since``.
        buckets: stretches of time the span is cut into.
        title: the figure's title.

    Returns:
        ``None`` when the PNG was written (to ``chart_path(path)``), else why not (no calls, no
        matplotlib, a path that cannot be written or whose extension is no image format).
    """
    series = summarize_over_time(entries, buckets, since=since)
    if not series:
        return "no chart: the ledger has no calls" + (" in that period" if since else "")
    plt = pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    xs, xlabel = _time_axis(series)
    cost = [b.cumulative_cost_usd for b in series]
    uncached = [b.cumulative_uncached_usd for b in series]
    saved = [b.cumulative_saved_usd for b in series]
    figure, (spend, hits) = plt.subplots(
        2, 1, figsize=(9.0, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    spend.plot(
        xs, uncached, color="grey", linestyle="--", marker=".", label="uncached (same calls)"
    )
    spend.plot(xs, cost, color="tab:blue", marker=".", label="with caching (what you paid)")
    spend.fill_between(
        xs, cost, uncached, where=[s >= 0 for s in saved], color="tab:green", alpha=0.25,
        interpolate=True, label=f"saved: ${saved[-1]:,.4f} in all",
    )  # fmt: skip
    if any(s < 0 for s in saved):
        spend.fill_between(
            xs, cost, uncached, where=[s < 0 for s in saved], color="tab:red", alpha=0.25,
            interpolate=True, label="extra cost (writes not yet repaid)",
        )  # fmt: skip
    spend.set_ylabel("running cost (USD)")
    spend.set_title(title)
    spend.legend(loc="upper left", fontsize="small")
    spend.grid(alpha=0.3)
    rates = [b.summary.hit_rate for b in series]
    width = _bar_width(xs)
    hits.bar(
        [x for x, r in zip(xs, rates, strict=True) if r is not None],
        [100 * r for r in rates if r is not None],
        width=width,
        color="tab:orange",
        label="hit rate (calls that read from the cache)",
    )
    hits.set_ylim(0, 105)
    hits.set_ylabel("hit rate (%)")
    hits.set_xlabel(xlabel)
    calls = hits.twinx()
    calls.plot(xs, [b.summary.calls for b in series], color="black", marker=".", linewidth=0.8,
               label="calls")  # fmt: skip
    calls.set_ylabel("calls")
    calls.set_ylim(bottom=0)
    handles = [*hits.get_legend_handles_labels()[0], *calls.get_legend_handles_labels()[0]]
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize="small")
    hits.grid(alpha=0.3)
    if xlabel == "time (UTC)":
        from matplotlib.dates import DateFormatter  # type: ignore[import-not-found,unused-ignore]

        dates = DateFormatter("%m-%d %H:%M", tz=_dt.timezone.utc)  # type: ignore[no-untyped-call,unused-ignore]
        hits.xaxis.set_major_formatter(dates)
        figure.autofmt_xdate()
    figure.tight_layout(rect=(0, 0.04, 1, 1))  # room for the legend below the time axis
    target = chart_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, dpi=100)
    except (OSError, ValueError) as exc:  # unwritable place; .txt: "Format 'txt' is not ..."
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot write the chart to {target}: {reason} (give a writable .png path)"
    finally:
        plt.close(figure)
    return None


def _bar_width(xs: list[Any]) -> Any:
    """Bars as wide as 80% of a bucket (a fixed width for a single bucket)."""
    if len(xs) < 2:
        return 0.8 if not isinstance(xs[0], _dt.datetime) else _dt.timedelta(minutes=1)
    return (xs[1] - xs[0]) * 0.8
