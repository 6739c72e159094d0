"""Warnings that point at the caller's line, not into this package or the frameworks around it.

A warning raised deep in a call (the planner under ``ChatClaudeRelay.invoke``, under LangChain's
``BaseChatModel``, under a LangGraph agent) is only useful if Python reports the line the user
wrote. A fixed ``stacklevel`` cannot know how many frames lie between: it depends on the path
(sync or async, ``invoke`` or ``batch``, a ``cached_property`` on the way). ``warn_external``
walks the stack instead, to the first frame whose module belongs to none of
``FRAMEWORK_MODULES``: this package, LangChain and LangGraph, pydantic, and the standard-library
plumbing they call through (``functools``, ``contextlib``...).
"""

from __future__ import annotations

import sys
import warnings
from types import FrameType

__all__ = ["FRAMEWORK_MODULES", "external_stacklevel", "warn_external"]

FRAMEWORK_MODULES = frozenset(
    {
        "langchain_claude_relay",
        "langchain_core",
        "langchain",
        "langchain_classic",
        "langgraph",
        "pydantic",
        "functools",
        "contextlib",
        "concurrent",
        "asyncio",
        "threading",
    }
)
"""Top-level modules whose frames are never "the caller": this package and what calls into it."""


def _skipped_by_warnings(frame: FrameType) -> bool:
    """Frames ``warnings`` itself does not count in ``stacklevel`` (importlib's bootstrap)."""
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def _is_framework(frame: FrameType) -> bool:
    module = frame.f_globals.get("__name__")
    if not isinstance(module, str):
        return False
    return module.partition(".")[0] in FRAMEWORK_MODULES


def external_stacklevel(frame: FrameType | None) -> int:
    """The ``stacklevel`` (counted from ``frame``'s callee) of the first external frame.

    Args:
        frame: the frame that would call ``warnings.warn``.

    Returns:
        ``stacklevel`` for ``warnings.warn`` called from ``frame``: 1 is ``frame`` itself.
        With no external frame on the stack (a worker thread's), the outermost frame.
    """
    level = 1
    outermost = 1
    while frame is not None:
        if not _skipped_by_warnings(frame):
            if not _is_framework(frame):
                return level
            outermost = level
            level += 1
        frame = frame.f_back
    return outermost


def warn_external(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside this package and its frameworks.

    Args:
        message: the warning text.
        category: the warning class.
    """
    caller = sys._getframe(1)
    warnings.warn(message, category, stacklevel=external_stacklevel(caller) + 1)
