"""What the chat model asks of a cache planner (``Planner``), and ``as_planner`` for any other.

``CachePlanner`` is a ``Planner``. A planner of the user's needs only ``plan`` (and usually
``observe``); ``as_planner`` wraps it once, at the start, in an adapter that forwards what it has
and fills in the rest: no-op ``sent`` / ``began`` / ``abandoned``, ``observe`` returning
``None``, the wall clock, a lock of its own, and ``calibrates = False`` (so no count is spent on
it). The caller then calls every method without asking what the planner has.

The call sequence for one request (the chat model's)::

    with planner.send_lock:               # plan and mark as sent together
        plan = planner.plan(request, ttl=..., max_markers=..., mark_tools=..., keep_warm=...,
                            learn_follow_ups=...)
        planner.sent(plan)
    ... planner.began(plan) when the response begins, or planner.abandoned(plan) if it fails
    planner.observe(plan, usage, tools=names)   # after the response: its usage, tools called
    keeps = planner.keep_alives(plan, usage, tools=names)  # keep_warm="auto": worth keeping?
    ... for each keep-alive request sent for one: planner.kept_alive(keep, at, read_tokens)

A user's planner gets no keep-alive: the adapter's ``keep_alives`` returns ``()`` (and its
``plan`` and ``observe`` are never given ``keep_warm``, ``learn_follow_ups`` or ``tools``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from langchain_claude_relay.planner.keepalive import KeepAlive
from langchain_claude_relay.planner.plan import CachePlan, UsageLike
from langchain_claude_relay.planner.planner import CachePlanner
from langchain_claude_relay.planner.rules import MAX_CACHE_MARKERS
from langchain_claude_relay.planner.ttl import TTLPolicy
from langchain_claude_relay.request import ClaudeRequest

__all__ = ["ObservationLike", "Planner", "as_planner"]

_OPTIONAL = ("observe", "sent", "began", "abandoned", "calibrate", "clock")


class ObservationLike(Protocol):
    """What ``observe`` may return: ``Observation``, or anything with a JSON-able ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for ``response_metadata["cache_observation"]``)."""
        ...


@runtime_checkable
class Planner(Protocol):
    """A cache planner as the chat model drives it (``CachePlanner``, or ``as_planner(obj)``)."""

    @property
    def clock(self) -> Callable[[], float]:
        """The planner's clock in seconds (``time.time`` unless one was injected)."""
        ...

    @property
    def send_lock(self) -> AbstractContextManager[Any]:
        """Held across ``plan()`` and ``sent()``, so concurrent plans see each other's writes."""
        ...

    @property
    def calibrates(self) -> bool:
        """Whether ``calibrate`` learns anything (``False``: do not spend a count on it)."""
        ...

    def plan(
        self,
        request: ClaudeRequest,
        /,
        *,
        ttl: TTLPolicy | None = None,
        max_markers: int = MAX_CACHE_MARKERS,
        mark_tools: bool = True,
        mark_messages: bool = True,
        keep_warm: bool = False,
        learn_follow_ups: bool = False,
    ) -> CachePlan:
        """Plan the request's cache markers (see ``CachePlanner.plan``)."""
        ...

    def sent(self, plan: CachePlan) -> None:
        """The plan's request was sent (see ``CachePlanner.sent``)."""
        ...

    def began(self, plan: CachePlan) -> None:
        """The plan's response began (see ``CachePlanner.began``)."""
        ...

    def abandoned(self, plan: CachePlan) -> None:
        """The plan's request failed before its response began (``CachePlanner.abandoned``)."""
        ...

    def observe(
        self, plan: CachePlan, usage: UsageLike, *, tools: Sequence[str] = ()
    ) -> ObservationLike | None:
        """Learn from the call's usage and the tools it called (``None``: nothing to report)."""
        ...

    def keep_alives(
        self, plan: CachePlan, usage: UsageLike, *, tools: Sequence[str] = ()
    ) -> tuple[KeepAlive, ...]:
        """The prefixes worth keeping warm after this call (``CachePlanner.keep_alives``)."""
        ...

    def kept_alive(self, keep: KeepAlive, at: float, read_tokens: int) -> None:
        """A keep-alive request was sent for ``keep`` (``CachePlanner.kept_alive``)."""
        ...

    def keep_alive_needed(self, keep: KeepAlive) -> bool:
        """Whether ``keep`` still waits for its follow-up (``CachePlanner.keep_alive_needed``)."""
        ...

    def calibrate(self, request: ClaudeRequest, total_tokens: int) -> bool:
        """Learn from an exact token count of a request; whether it was used."""
        ...


def as_planner(planner: object) -> Planner:
    """``planner`` as a ``Planner``: a ``CachePlanner`` as it is, any other adapted once.

    The adapter forwards the methods the object has (``plan``, and any of ``observe``,
    ``sent``, ``began``, ``abandoned``, ``calibrate``, ``clock``, ``send_lock``) and supplies
    the others: no-op lifecycle methods, ``observe`` returning ``None``, ``time.time``, a lock
    of its own, ``calibrates = False``. ``plan`` gets ``ttl``, ``max_markers`` and
    ``mark_tools`` only when they differ from their defaults, so a planner that does not know
    them still works.

    Args:
        planner: a ``CachePlanner``, or an object with a ``plan(request, *, ttl=...)`` method.

    Returns:
        The planner itself if it is a ``CachePlanner`` (or already adapted), else the adapter.

    Raises:
        TypeError: if ``planner`` has no callable ``plan``, or one of the optional members is
            there but unusable (a method or ``clock`` that is not callable, a ``send_lock`` that
            is not a context manager).

    >>> class Fixed:
    ...     def plan(self, request, *, ttl=None):
    ...         return None
    >>> adapted = as_planner(Fixed())
    >>> adapted.calibrates, adapted.observe(None, None)
    (False, None)
    """
    if isinstance(planner, (CachePlanner, _AdaptedPlanner)):
        return planner
    try:  # one adapter per object, so that its own send_lock is shared by every call
        adapted = _ADAPTERS.get(planner)
    except TypeError:  # not weakly referenceable (nor hashable): adapt afresh
        return _AdaptedPlanner(planner)
    if adapted is None:
        adapted = _ADAPTERS.setdefault(planner, _AdaptedPlanner(planner))
    return adapted


_ADAPTERS: weakref.WeakKeyDictionary[object, _AdaptedPlanner] = weakref.WeakKeyDictionary()


class _AdaptedPlanner:
    """A user's planner with the ``Planner`` members it lacks supplied (decided at wrap time)."""

    def __init__(self, planner: object) -> None:
        plan = getattr(planner, "plan", None)
        if not callable(plan):
            msg = (
                f"{type(planner).__name__} is not a cache planner: it has no plan() method "
                "(missing: plan). Pass cache='auto', cache='off', a CachePlanner, or an object "
                "with plan(request, *, ttl=...) returning a CachePlan (observe(plan, usage), "
                "sent/began/abandoned(plan), calibrate(request, total_tokens), clock and "
                "send_lock are optional)."
            )
            raise TypeError(msg)
        found = {name: getattr(planner, name, None) for name in _OPTIONAL}
        unusable = [
            name for name, value in found.items() if value is not None and not callable(value)
        ]
        lock = getattr(planner, "send_lock", None)
        if lock is not None and not isinstance(lock, AbstractContextManager):
            unusable.append("send_lock")  # no __enter__ / __exit__
        if unusable:
            msg = (
                f"{type(planner).__name__} has {', '.join(unusable)} but cannot be used as a "
                "cache planner with it: methods and clock must be callable, send_lock a context "
                "manager (a threading lock)"
            )
            raise TypeError(msg)
        self.wrapped = planner
        self._plan: Callable[..., Any] = plan
        self._observe: Callable[..., Any] | None = found["observe"]
        self._sent: Callable[..., Any] | None = found["sent"]
        self._began: Callable[..., Any] | None = found["began"]
        self._abandoned: Callable[..., Any] | None = found["abandoned"]
        self._calibrate: Callable[..., Any] | None = found["calibrate"]
        clock = found["clock"]
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._send_lock: AbstractContextManager[Any] = (
            lock if lock is not None else threading.RLock()
        )

    def __repr__(self) -> str:
        return f"as_planner({self.wrapped!r})"

    @property
    def clock(self) -> Callable[[], float]:
        """The wrapped planner's ``clock``, else ``time.time``."""
        return self._clock

    @property
    def send_lock(self) -> AbstractContextManager[Any]:
        """The wrapped planner's ``send_lock``, else a lock of the adapter's own."""
        return self._send_lock

    @property
    def calibrates(self) -> bool:
        """Whether the wrapped planner has ``calibrate``."""
        return self._calibrate is not None

    def plan(
        self,
        request: ClaudeRequest,
        /,
        *,
        ttl: TTLPolicy | None = None,
        max_markers: int = MAX_CACHE_MARKERS,
        mark_tools: bool = True,
        mark_messages: bool = True,
        keep_warm: bool = False,
        learn_follow_ups: bool = False,
    ) -> CachePlan:
        """The wrapped planner's plan (passed only the options that differ from defaults).

        ``keep_warm`` and ``learn_follow_ups`` are not passed: a user's planner advises no
        keep-alive. Nor is ``mark_messages``: such a planner's markers stay as it places them.
        """
        options: dict[str, Any] = {"ttl": ttl} if ttl is not None else {}
        if max_markers < MAX_CACHE_MARKERS:
            options["max_markers"] = max_markers
        if not mark_tools:
            options["mark_tools"] = False
        plan: CachePlan = self._plan(request, **options)
        return plan

    def sent(self, plan: CachePlan) -> None:
        """Forwarded if the wrapped planner has ``sent``."""
        if self._sent is not None:
            self._sent(plan)

    def began(self, plan: CachePlan) -> None:
        """Forwarded if the wrapped planner has ``began``."""
        if self._began is not None:
            self._began(plan)

    def abandoned(self, plan: CachePlan) -> None:
        """Forwarded if the wrapped planner has ``abandoned``."""
        if self._abandoned is not None:
            self._abandoned(plan)

    def observe(
        self, plan: CachePlan, usage: UsageLike, *, tools: Sequence[str] = ()
    ) -> ObservationLike | None:
        """The wrapped planner's observation if it has ``to_dict`` (else ``None``).

        ``tools`` is not passed on (``observe(plan, usage)`` is what a user's planner takes).
        """
        if self._observe is None:
            return None
        observation = self._observe(plan, usage)
        return observation if callable(getattr(observation, "to_dict", None)) else None

    def keep_alives(
        self, plan: CachePlan, usage: UsageLike, *, tools: Sequence[str] = ()
    ) -> tuple[KeepAlive, ...]:
        """Always empty: a user's planner advises no keep-alive."""
        return ()

    def kept_alive(self, keep: KeepAlive, at: float, read_tokens: int) -> None:
        """Nothing to do (no keep-alive is ever advised)."""

    def keep_alive_needed(self, keep: KeepAlive) -> bool:
        """Always: no keep-alive is ever advised."""
        return True

    def calibrate(self, request: ClaudeRequest, total_tokens: int) -> bool:
        """Forwarded if the wrapped planner has ``calibrate`` (else ``False``)."""
        if self._calibrate is None:
            return False
        return bool(self._calibrate(request, total_tokens))
