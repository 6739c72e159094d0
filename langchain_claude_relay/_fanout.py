"""Warm, then fan out: batch scheduling by shared prompt prefixes.

Claude makes a cache entry readable only once the response that wrote it has begun, so N
concurrent calls sharing a new prefix would each pay to write it. A batch is scheduled instead:
inputs whose requests share their first block form a group, one of them (the warm-up leader) is
sent first and the others are held by its :class:`WarmupGate`. When the leader is planned, the
inputs sharing none of the prefixes its plan writes go at once; the rest go when its response
begins, and then read those prefixes. Released inputs form groups again by their first block
past what is settled: warm (written by a warm-up, or read by its plan) or, for those released
at the plan, shared with the leader whose plan does not write it (theirs would not either). So a
deeper shared prefix is warmed too, and inputs sharing nothing more go at once, not in a chain
of leaders each waiting for the plan of the one before.

This module knows nothing of LangChain: a batch is a list of :data:`PrefixKey` (one per input)
and a callable that runs input ``i``. The chat model sets the running call's gate
(:func:`running_gate`) and reports the plan and the first response byte to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from langchain_claude_relay.planner.plan import CachePlan

__all__ = [
    "PrefixKey",
    "WarmupGate",
    "FanOut",
    "warmup_helps",
    "running_gate",
    "current_gate",
    "leads_warmup",
    "warmed_prefixes",
    "run_threaded",
    "run_tasks",
    "batch_results",
]

T = TypeVar("T")

PrefixKey = tuple[str, tuple[str, ...]]
"""A batch input's model and prefix hashes (``ClaudeRequest.prefix_hashes()``)."""


class WarmupGate:
    """One batch call's link to its batch: the prefixes already warm, and who waits on it.

    A leader's gate holds the inputs that share its first block. ``planned`` lets go at once
    those sharing none of the prefixes its plan writes, ``begun`` lets go the rest when its
    response begins (those prefixes are then readable), ``finish`` whatever is still held. Only
    the call's own thread or task uses a gate.

    Args:
        fanout: the batch's scheduler.
        followers: the inputs held until this call's prefixes are warm.
        warmed: prefix hashes known readable: written by earlier warm-ups of the batch, or
            predicted read by their plans (``planned`` adds this call's).
        leader: this call's input (``None``: not known; its followers are then grouped past
            what is warm only).
    """

    def __init__(
        self,
        fanout: FanOut,
        followers: Sequence[int],
        warmed: frozenset[str],
        leader: int | None = None,
    ) -> None:
        self._fanout = fanout
        self._leader = leader
        self._waiting = list(followers)
        self._writes: frozenset[str] = frozenset()
        self._planned = False
        self.warmed = warmed

    @property
    def leads(self) -> bool:
        """Whether other inputs wait on this call (it then streams, to release them early)."""
        return bool(self._waiting)

    def planned(self, plan: CachePlan | None) -> None:
        """The warm-up is planned: release the inputs that do not share a prefix it writes.

        Args:
            plan: the call's cache plan (``None``: no plan, nothing is written).
        """
        if self._planned or not self._waiting:
            return
        self._planned = True
        breakpoints = plan.breakpoints if plan is not None else ()
        writes = frozenset(bp.prefix_hash for bp in breakpoints if bp.predicted == "write")
        self.warmed |= frozenset(bp.prefix_hash for bp in breakpoints if bp.predicted == "read")
        self._writes = writes - self.warmed
        wait = [i for i in self._waiting if self._writes & self._fanout.hashes(i)]
        free = [i for i in self._waiting if i not in wait]
        self._waiting = wait
        # what they share with this call, its plan does not write: grouped by it again, each
        # would lead in turn, waiting for the plan of the one before
        passed = self._fanout.hashes(self._leader) if self._leader is not None else frozenset()
        self._fanout.schedule(free, self.warmed, passed)

    def begun(self) -> None:
        """The warm-up's response has begun: what it wrote is readable, release the rest."""
        waiting, self._waiting = self._waiting, []
        if waiting:
            self._fanout.schedule(waiting, self.warmed | self._writes)

    def finish(self) -> None:
        """The call is over: release anything still held.

        Before planning (its input was refused, or a response cache answered) the others form
        groups again; after planning (the relay failed) they go at once, unwarmed.
        """
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        if not self._planned:
            self._fanout.schedule(waiting, self.warmed)
            return
        for index in waiting:
            self._fanout.launch(index, WarmupGate(self._fanout, (), self.warmed))


class FanOut:
    """Schedules a batch by shared prefixes: per group, one warm-up leader, the rest held.

    Args:
        keys: per input, its model and prefix hashes (``None``: unknown, sent alone).
        launch: starts one input's call with its gate (thread-safe; never blocks).
    """

    def __init__(
        self, keys: Sequence[PrefixKey | None], launch: Callable[[int, WarmupGate], None]
    ) -> None:
        self._keys = keys
        self.launch = launch

    def hashes(self, index: int) -> frozenset[str]:
        """The prefix hashes of one input."""
        key = self._keys[index]
        return frozenset(key[1]) if key is not None else frozenset()

    def _group(self, index: int, warmed: frozenset[str]) -> tuple[str, str]:
        """Input ``index``'s model and its first prefix hash past the deepest warm one."""
        key = self._keys[index]
        if key is not None:
            model, hashes = key
            warm = max((i for i, h in enumerate(hashes) if h in warmed), default=-1)
            if warm + 1 < len(hashes):
                return model, hashes[warm + 1]
        return "", f"alone:{index}"

    def start(self) -> None:
        """Schedule every input."""
        self.schedule(range(len(self._keys)), frozenset())

    def schedule(
        self, indices: Iterable[int], warmed: frozenset[str], passed: frozenset[str] = frozenset()
    ) -> None:
        """Group ``indices`` by model and first block past what is settled; launch each leader.

        Args:
            indices: the inputs to launch.
            warmed: prefix hashes known readable (the new gates get them).
            passed: prefix hashes a leader planned without writing them: grouped past like
                warm ones, but not readable.
        """
        groups: dict[tuple[str, str], list[int]] = {}
        for index in indices:
            groups.setdefault(self._group(index, warmed | passed), []).append(index)
        ordered = sorted(groups.values(), key=lambda members: -len(members))  # leaders first
        for leader, *followers in ordered:
            self.launch(leader, WarmupGate(self, followers, warmed, leader))


def warmup_helps(keys: Sequence[PrefixKey | None]) -> bool:
    """Whether some two inputs share a model and a first block (a warm-up can then save writes).

    >>> warmup_helps([("m", ("a", "b")), ("m", ("a", "c")), None])
    True
    >>> warmup_helps([("m", ("a",)), ("n", ("a",))])
    False
    """
    firsts = Counter((key[0], key[1][0]) for key in keys if key is not None and key[1])
    return any(count > 1 for count in firsts.values())


# -- the gate of the running call ----------------------------------------------------------------

_GATE: contextvars.ContextVar[WarmupGate | None] = contextvars.ContextVar(
    "claude_relay_warmup", default=None
)
"""The gate of the batch call running in this thread or task (``None`` outside a batch)."""


@contextlib.contextmanager
def running_gate(gate: WarmupGate | None) -> Iterator[None]:
    """Make ``gate`` the current call's gate in this thread or task, then release what it holds.

    Args:
        gate: the gate (``None``: a call outside any warm-up group).

    Yields:
        Nothing; on exit the gate is unset and ``gate.finish()`` is called.
    """
    token = _GATE.set(gate)
    try:
        yield
    finally:
        _GATE.reset(token)
        if gate is not None:
            gate.finish()


def current_gate() -> WarmupGate | None:
    """The gate of the batch call running in this thread or task, if any."""
    return _GATE.get()


def leads_warmup() -> bool:
    """Whether the running call is a warm-up other inputs of its batch wait on."""
    gate = _GATE.get()
    return gate is not None and gate.leads


def warmed_prefixes() -> frozenset[str]:
    """Prefix hashes that earlier warm-ups of the running call's batch have written."""
    gate = _GATE.get()
    return gate.warmed if gate is not None else frozenset()


# -- running a batch -----------------------------------------------------------------------------


def run_threaded(
    keys: Sequence[PrefixKey | None],
    call: Callable[[int], T],
    *,
    max_workers: int | None = None,
) -> list[T | Exception]:
    """Run ``call(i)`` for every input in threads, scheduled by :class:`FanOut`.

    Each call runs in a copy of the caller's context with its gate set (:func:`running_gate`);
    an input that waits holds no thread.

    Args:
        keys: per input, its model and prefix hashes.
        call: runs input ``i``.
        max_workers: the most calls at once (``None``: the executor's default).

    Returns:
        Per input, in order, its result or the exception it raised.
    """
    outcomes: list[Any] = [None] * len(keys)
    finished = threading.Semaphore(0)
    context = contextvars.copy_context()  # each call starts from the caller's context

    def run(index: int, gate: WarmupGate) -> None:
        try:
            with running_gate(gate):  # releases its followers before the call counts as done
                outcomes[index] = call(index)
        except Exception as exc:
            outcomes[index] = exc
        finally:
            finished.release()

    with ThreadPoolExecutor(max_workers=max_workers) as executor:

        def launch(index: int, gate: WarmupGate) -> None:
            executor.submit(context.copy().run, run, index, gate)

        FanOut(keys, launch).start()
        for _ in keys:
            finished.acquire()
    return outcomes


async def run_tasks(
    keys: Sequence[PrefixKey | None],
    call: Callable[[int], Awaitable[T]],
    *,
    max_concurrency: int | None = None,
) -> list[T | Exception]:
    """Async :func:`run_threaded`: tasks on the running event loop.

    Args:
        keys: per input, its model and prefix hashes.
        call: runs input ``i``.
        max_concurrency: the most calls at once (``None``: no bound); an input that waits holds
            no slot.

    Returns:
        Per input, in order, its result or the exception it raised.

    Raises:
        BaseException: a non-``Exception`` failure of a call (cancellation and the like).
    """
    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    released = [asyncio.Event() for _ in keys]
    gates: list[WarmupGate | None] = [None] * len(keys)

    def launch(index: int, gate: WarmupGate) -> None:
        gates[index] = gate
        loop.call_soon_threadsafe(released[index].set)

    async def run(index: int) -> T:
        await released[index].wait()  # before the semaphore: a waiting input holds no slot
        with running_gate(gates[index]):
            async with semaphore if semaphore is not None else contextlib.nullcontext():
                return await call(index)

    FanOut(keys, launch).start()
    outcomes = await asyncio.gather(*(run(i) for i in range(len(keys))), return_exceptions=True)
    results: list[T | Exception] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancellation and the like are not results
        results.append(outcome)
    return results


def batch_results(outcomes: Sequence[Any], *, return_exceptions: bool) -> list[Any]:
    """The batch's results in order, raising the first exception unless ``return_exceptions``.

    Args:
        outcomes: per input, its result or exception.
        return_exceptions: keep exceptions in place of results.

    Returns:
        The outcomes (exceptions included when ``return_exceptions``).

    Raises:
        Exception: the first exception, in input order, unless ``return_exceptions``.
    """
    if not return_exceptions:
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
    return list(outcomes)
