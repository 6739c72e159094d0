"""Per prefix node: what ours paid against what the oracle pays (``claude-relay bench --explain``).

The oracle's bound is a sum over the nodes of its relaxation (``oracle.py``): per model, each
prefix at or after a request's anchor, with the anchor's node weighing the whole prefix up to
it, plus plain input for the requests below the minimum. Ours' bills split over the same nodes
by token position: a bill's tokens are, in prefix order, read, then written 1h, then written 5m,
then plain (the emulator's billing), so each node's token range is priced at the rates of the
ranges it overlaps. Sorted by excess (ours minus the oracle), the rows show where ours loses
against the bound. Keep-alive requests are not split (they are not trace requests): the header
gives their count and spend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_claude_relay.bench.oracle import (
    RequestProfile,
    anchor_index,
    build_nodes,
    node_cost_per_token,
    prefix_charged_cost,
)
from langchain_claude_relay.bench.report import align_columns
from langchain_claude_relay.bench.runner import RequestBill, StrategyRun, run_metrics
from langchain_claude_relay.bench.workloads import Trace
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.planner.ttl import Rates

__all__ = ["NodeRow", "Explanation", "explain_nodes", "format_explanation"]

SHOWN_ARRIVALS = 8
"""How many of a node's first arrival times a row lists."""


@dataclass(frozen=True)
class NodeRow:
    """One node of the oracle's relaxation, with what each side pays for it.

    Attributes:
        model: the model whose cache holds it.
        key: the start of its prefix key.
        weight: its tokens (at an anchor: the whole prefix up to it).
        request: the trace index of the first request through it.
        block: its block index in that request.
        anchor: whether that block is the request's anchor.
        arrivals: how many trace requests pass through it.
        minutes: its distinct arrival times, in minutes since the trace began.
        ours_usd: what ours' trace requests paid for its tokens.
        oracle_usd: what the relaxation pays for it.
    """

    model: str
    key: str
    weight: int
    request: int
    block: int
    anchor: bool
    arrivals: int
    minutes: tuple[float, ...]
    ours_usd: float
    oracle_usd: float

    @property
    def excess_usd(self) -> float:
        """Ours minus the oracle."""
        return self.ours_usd - self.oracle_usd


@dataclass(frozen=True)
class Explanation:
    """One trace's nodes, sorted by excess (largest first), and the totals.

    Attributes:
        trace: the trace's name.
        day: the replayed day (1, or 2 on the same store).
        rows: one per node, by excess, descending.
        oracle_below_usd: the oracle's plain input for requests below the minimum.
        ours_below_usd: ours' input cost of the same requests.
        keep_alive_requests: ours' keep-alive requests that day.
        keep_alive_usd: what they cost (input and output).
        prefix_charged_usd: the relaxation with each of its keep-alives also paying for the
            prefix above its node (``oracle.prefix_charged_cost``: an estimate of how loose the
            bound is there, not a bound).
    """

    trace: str
    day: int
    rows: tuple[NodeRow, ...]
    oracle_below_usd: float
    ours_below_usd: float
    keep_alive_requests: int
    keep_alive_usd: float
    prefix_charged_usd: float = 0.0

    @property
    def oracle_usd(self) -> float:
        """The oracle's bound: its nodes plus the requests below the minimum."""
        return sum(r.oracle_usd for r in self.rows) + self.oracle_below_usd

    @property
    def ours_usd(self) -> float:
        """Ours' trace requests (input side): the nodes plus the requests below the minimum."""
        return sum(r.ours_usd for r in self.rows) + self.ours_below_usd


def _range_cost(bill: RequestBill, rates: Rates, low: int, high: int) -> float:
    """What ``bill`` paid for its tokens ``[low, high)`` (read, 1h, 5m, plain, in order)."""
    read_end = bill.cache_read
    write_1h_end = read_end + bill.cache_write_1h
    write_5m_end = write_1h_end + bill.cache_write_5m
    ranges = (
        (0, read_end, rates.read),
        (read_end, write_1h_end, rates.write_1h),
        (write_1h_end, write_5m_end, rates.write_5m),
        (write_5m_end, bill.prompt_total, rates.input),
    )
    return sum(max(0, min(high, b) - max(low, a)) * rate for a, b, rate in ranges)


def explain_nodes(
    trace: Trace,
    profiles: Sequence[RequestProfile],
    run: StrategyRun,
    *,
    day: int = 1,
    minimum: int | None = None,
) -> Explanation:
    """Split ours' bills and the oracle's bound over the relaxation's nodes.

    Args:
        trace: the trace replayed.
        profiles: its requests' profiles, in trace order.
        run: ours' replay of it (bills in trace order, keep-alives).
        day: the day replayed (for the header).
        minimum: the emulator's configured minimum, if any (default: each model's).

    Returns:
        The rows, sorted by excess, and the totals.
    """
    start = min(p.time for p in profiles)
    rows: list[NodeRow] = []
    oracle_below = ours_below = prefix_charged = 0.0
    for model in trace.models:
        rates = Rates.for_model(model)
        floor = minimum or lookup_model(model).min_cache_tokens
        indices = [i for i, r in enumerate(trace.requests) if trace.model_of(r) == model]
        mine = [profiles[i] for i in indices]
        built = build_nodes(mine, floor)
        prefix_charged += prefix_charged_cost(mine, rates, floor)
        oracle_below += built.plain_tokens * rates.input
        ours: dict[str, float] = {}
        for index in indices:
            profile, bill = profiles[index], run.bills[index]
            anchor = anchor_index(profile, floor)
            if anchor is None:
                ours_below += _range_cost(bill, rates, 0, bill.prompt_total)
                continue
            low = 0
            for i, key in enumerate(profile.keys):
                high = low + profile.tokens[i]
                if i >= anchor:
                    node_low = 0 if i == anchor else low
                    ours[key] = ours.get(key, 0.0) + _range_cost(bill, rates, node_low, high)
                low = high
        for key, node in built.nodes.items():
            per_token = node_cost_per_token(built.instants(node), rates, keep_alives=True)
            times = sorted({round((t - start) / 60, 2) for t, *_ in node.arrivals})
            rows.append(
                NodeRow(
                    model=model,
                    key=key[:10],
                    weight=node.weight,
                    request=indices[node.request],
                    block=node.block,
                    anchor=node.anchor,
                    arrivals=len(node.arrivals),
                    minutes=tuple(times),
                    ours_usd=ours[key],
                    oracle_usd=node.weight * per_token,
                )
            )
    rows.sort(key=lambda r: (-r.excess_usd, r.model, r.request, r.block))
    metrics = run_metrics(run)
    return Explanation(
        trace.name,
        day,
        tuple(rows),
        oracle_below,
        ours_below,
        metrics.keep_alive_requests,
        metrics.keep_alive_cost_usd,
        prefix_charged,
    )


def format_explanation(explanation: Explanation, top: int = 15) -> str:
    """A header with the totals, one line per model, and the ``top`` nodes by excess."""
    e = explanation
    lines = [
        f"{e.trace} day {e.day}: oracle ${e.oracle_usd:.4f} "
        f"(below minimum ${e.oracle_below_usd:.4f}); ours' trace requests ${e.ours_usd:.4f} "
        f"(below minimum ${e.ours_below_usd:.4f}); ours' keep-alives ${e.keep_alive_usd:.4f} "
        f"({e.keep_alive_requests}); {len(e.rows)} nodes",
        f"  the oracle with each of its keep-alives also paying for the prefix above its node "
        f"(an estimate of the bound's slack, not a bound): ${e.prefix_charged_usd:.4f}",
    ]
    for model in dict.fromkeys(r.model for r in e.rows):
        mine = [r for r in e.rows if r.model == model]
        lines.append(
            f"  {model}: oracle ${sum(r.oracle_usd for r in mine):.4f}, "
            f"ours ${sum(r.ours_usd for r in mine):.4f} on {len(mine)} nodes"
        )
    header = [
        "excess USD",
        "ours USD",
        "oracle USD",
        "model",
        "node",
        "tokens",
        "request",
        "block",
        "arrivals",
        "first arrivals (min)",
    ]
    cells = []
    for r in e.rows[:top]:
        minutes = ", ".join(f"{m:g}" for m in r.minutes[:SHOWN_ARRIVALS])
        more = ", ..." if len(r.minutes) > SHOWN_ARRIVALS else ""
        cells.append(
            [
                f"{r.excess_usd:+.4f}",
                f"{r.ours_usd:.4f}",
                f"{r.oracle_usd:.4f}",
                r.model,
                r.key,
                f"{r.weight:,}",
                f"#{r.request}",
                f"{r.block}{' (anchor)' if r.anchor else ''}",
                str(r.arrivals),
                minutes + more,
            ]
        )
    if cells:
        lines += ["", *align_columns(header, cells, {0, 1, 2, 5, 6, 8})]
    return "\n".join(lines)
