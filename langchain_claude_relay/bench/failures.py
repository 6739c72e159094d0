"""What failed in a benchmark run: one record per phase, and how an exception is told.

A phase that raises (or breaks an invariant) does not end the run: it is recorded as a
``PhaseFailure``, shown in its place in the report and in the JSON, and the command exits with
status 1. The console gets one line per failure; the traceback goes to the JSON only.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["PhaseFailure", "attempt", "describe_error"]

T = TypeVar("T")
_MAX_CAUSES = 4


def describe_error(exc: BaseException) -> str:
    """``Type: first line <- Cause: first line ...`` along the exception's causes.

    >>> try:
    ...     try:
    ...         raise OSError("connection reset")
    ...     except OSError as cause:
    ...         raise RuntimeError("cannot reach the relay") from cause
    ... except RuntimeError as exc:
    ...     print(describe_error(exc))
    RuntimeError: cannot reach the relay <- OSError: connection reset
    """
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < _MAX_CAUSES:
        lines = str(seen).strip().splitlines()
        parts.append(f"{type(seen).__name__}: {lines[0]}" if lines else type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


@dataclass(frozen=True)
class PhaseFailure:
    """A phase of the benchmark that failed.

    Attributes:
        phase: ``traces``, ``trace NAME``, ``overhead``, ``load`` or ``chart``.
        error: what went wrong, in one line.
        traceback: the traceback (JSON only; empty when an invariant, not an exception, failed).
    """

    phase: str
    error: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, phase: str, exc: BaseException) -> PhaseFailure:
        """The failure of ``phase`` that raised ``exc``."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(phase, describe_error(exc), text)


def attempt(phase: str, action: Callable[[], T], failures: list[PhaseFailure]) -> T | None:
    """Run ``action``; if it raises, append its failure to ``failures`` and return ``None``.

    ``KeyboardInterrupt`` and ``SystemExit`` are not failures of a phase: they propagate.
    """
    try:
        return action()
    except Exception as exc:  # a failed phase is reported; the other phases still run
        failures.append(PhaseFailure.from_exception(phase, exc))
        return None
