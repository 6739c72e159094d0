"""Plumbing written once: warnings at the caller's line, exit and fork hooks, write-behind.

* ``warn_external(message, category)``: a warning attributed to the user's line, not to this
  package or the frameworks around it. A warning raised deep in a call (the planner under
  ``ChatClaudeRelay.invoke``, under LangChain's ``BaseChatModel``, under a LangGraph agent) is
  only useful if Python reports the line the user wrote; a fixed ``stacklevel`` cannot know how
  many frames lie between (sync or async, ``invoke`` or ``batch``...), so the stack is walked to
  the first frame whose module belongs to none of ``FRAMEWORK_MODULES``.
* ``warn_once(key, message, category)``: ``warn_external`` the first time a key is seen in the
  process, a log line after that (the set of keys is bounded).
* ``on_exit_and_fork(obj)``: an object with ``_at_exit()`` and ``_after_fork_in_child()`` is
  called at interpreter exit and in a forked child. Objects are held weakly.
* ``WriteBehind``: one daemon thread that sends what an owner queued, in batches, off the
  caller's path. The disk and Redis stores and both persistent ledgers use it.
* ``private_dir(path)`` / ``private_file(path)``: state kept for this user only (``0700``
  directories, ``0600`` files), whatever the umask.
* ``new_hash_key()`` / ``keyed_hash(key, text)``: the per-installation secret that keys the
  hashes written to saved state, so a hash on disk or in Redis cannot be matched against a
  guessed prompt by anyone without the key.

A leaf module: it imports nothing from the package.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import secrets
import stat
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

__all__ = [
    "FRAMEWORK_MODULES",
    "external_stacklevel",
    "warn_external",
    "warn_once",
    "forget_warnings",
    "on_exit_and_fork",
    "WriteBehind",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "private_dir",
    "private_file",
    "HASH_KEY_BYTES",
    "new_hash_key",
    "keyed_hash",
]

logger = logging.getLogger("langchain_claude_relay")

# --------------------------------------------------------------------------------- warnings

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


_WARNED_CAP = 10_000
_warned: set[Hashable] = set()
_warned_lock = threading.Lock()


def warn_once(
    key: Hashable,
    message: str,
    category: type[Warning] = UserWarning,
    *,
    log: logging.Logger | None = None,
) -> bool:
    """Warn (at the user's line) the first time ``key`` is seen in this process; log after that.

    Args:
        key: what makes two warnings "the same" (e.g. ``("unknown_model", model_id)``).
        message: the warning text.
        category: the warning class.
        log: where repeats go (``None``: debug level on the package logger).

    Returns:
        Whether a warning was issued.
    """
    with _warned_lock:
        first = key not in _warned
        if first:
            if len(_warned) >= _WARNED_CAP:
                _warned.clear()
            _warned.add(key)
    if first:
        caller = sys._getframe(1)
        warnings.warn(message, category, stacklevel=external_stacklevel(caller) + 1)
    elif log is not None:
        log.warning("%s", message)
    else:
        logger.debug("%s", message)
    return first


def forget_warnings(predicate: Callable[[Hashable], bool] | None = None) -> None:
    """Forget warned keys (all, or those ``predicate`` accepts): for tests."""
    with _warned_lock:
        if predicate is None:
            _warned.clear()
        else:
            _warned.difference_update({key for key in _warned if predicate(key)})


# ------------------------------------------------------------------------- exit and fork


class ExitAndForkAware(Protocol):
    """What ``on_exit_and_fork`` calls."""

    def _at_exit(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_exited_in: int | None = None  # the process whose objects have been finished
_finished_by_multiprocessing_in: int | None = None
_after_fork_registered = False  # multiprocessing keeps (and forks inherit) the registration


class _ForkHook:
    """What ``multiprocessing.util.register_after_fork`` holds (weakly) for this module."""


_FORK_HOOK = _ForkHook()


def on_exit_and_fork(obj: ExitAndForkAware) -> None:
    """Call ``obj._at_exit()`` at interpreter exit and ``obj._after_fork_in_child()`` after a fork.

    The object is held weakly: one that is collected is forgotten. "Exit" includes the end of
    a ``multiprocessing`` worker, which leaves with ``os._exit`` (no ``atexit``): what it
    recorded last would be lost otherwise.
    """
    _live.add(obj)
    _finish_with_multiprocessing()


def _exit_all() -> None:
    global _exited_in
    if _exited_in == os.getpid():  # ``atexit`` and multiprocessing's exit: once is enough
        return
    _exited_in = os.getpid()
    for obj in list(_live):
        try:
            obj._at_exit()
        except Exception as exc:  # exit must go on
            logger.warning("%r could not finish at exit: %s", obj, type(exc).__name__)


def _finish_with_multiprocessing() -> None:
    """Have ``multiprocessing`` run ``_exit_all`` when this process ends, if it is loaded.

    Its workers (fork, forkserver or spawn) end with ``os._exit`` after running its exit
    function, which runs its finalizers; a forked worker starts with them cleared, so a fork
    registers them again (``register_after_fork``).
    """
    global _finished_by_multiprocessing_in, _after_fork_registered
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finished_by_multiprocessing_in == os.getpid():
        return
    _finished_by_multiprocessing_in = os.getpid()
    util.Finalize(None, _exit_all, exitpriority=10)
    if not _after_fork_registered:
        _after_fork_registered = True
        util.register_after_fork(_FORK_HOOK, _finish_in_forked_worker)


def _finish_in_forked_worker(_hook: object) -> None:
    global _finished_by_multiprocessing_in
    _finished_by_multiprocessing_in = None
    if _live:
        _finish_with_multiprocessing()


def _reset_all_in_child() -> None:
    for obj in list(_live):
        obj._after_fork_in_child()
    # A multiprocessing worker clears its finalizers after this; what this registers runs
    # again after that (``register_after_fork``).
    _finish_in_forked_worker(_FORK_HOOK)


atexit.register(_exit_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_in_child)


# ---------------------------------------------------------------------------- write-behind


class WriteBehind:
    """One daemon thread sending what its owner queued, in batches, in queueing order.

    The owner keeps its own queue (a list of entries, or a dict merging writes per key) under
    its own lock: it queues, then calls ``queued()``. The worker takes the queue with ``take()``
    and sends it with ``send(batch)``, one batch at a time under one send lock, so batches land
    in the order they were queued (a batch may be empty). Lock order: the send lock, then the
    owner's lock (in ``take``), then the worker's own condition; an owner may hold its lock
    when it calls ``queued()`` but not when it calls ``flush()``.

    ``flush()`` sends what is queued in the calling thread (so it works after a fork, at exit,
    or when the thread has ended) and returns once everything queued before the call is sent.

    Args:
        name: the thread's name.
        take: returns the queued writes and empties the queue (under the owner's own lock).
        send: sends a batch; an exception is logged by the thread and raised by ``flush``.
        linger: seconds the thread waits after the first queued write, so that writes made
            close together share one batch.
        full: returns whether enough is queued to send at once (no lingering); lock-free.
        idle_exit: seconds without work after which the thread ends (``None``: it stays); it
            restarts on the next write. An ended thread lets an unused owner be collected.
        retry_interval: returns seconds after which an idle thread calls ``send`` with an empty
            batch (e.g. to replay a backlog kept through an outage), or ``None``; lock-free.
    """

    def __init__(
        self,
        name: str,
        *,
        take: Callable[[], Any],
        send: Callable[[Any], None],
        linger: float = 0.0,
        full: Callable[[], bool] | None = None,
        idle_exit: float | None = None,
        retry_interval: Callable[[], float | None] | None = None,
    ) -> None:
        self.name = name
        self._take = take
        self._send = send
        self._linger = linger
        self._full = full
        self._idle_exit = idle_exit
        self._retry_interval = retry_interval
        self.reset()

    def reset(self) -> None:
        """Fresh locks and no thread (in a forked child; the owner resets its queue itself)."""
        self._cond = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._queued = 0  # writes ever queued
        self._sent = 0  # writes ever taken and sent (or failed)
        self._flushers = 0  # threads in flush(): the worker stops lingering
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def backlog(self) -> bool:
        """Whether writes are queued or being sent."""
        return self._sent < self._queued

    @property
    def pending(self) -> int:
        """How many writes are queued or being sent."""
        return self._queued - self._sent

    def queued(self, count: int = 1) -> None:
        """Note ``count`` more queued writes and wake (or start) the thread."""
        with self._cond:
            self._queued += count
            self._cond.notify_all()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _lingering(self) -> bool:
        if self._stopping or self._flushers:
            return False
        return not (self._full is not None and self._full())

    def _run(self) -> None:
        while True:
            with self._cond:
                retry = False
                while not self.backlog and not self._stopping:
                    interval = self._retry_interval() if self._retry_interval else None
                    wait = interval if interval is not None else self._idle_exit
                    if not self._cond.wait(wait) and not self.backlog:
                        if interval is not None:
                            retry = True
                            break
                        if self._idle_exit is not None:
                            self._thread = None  # idle: end (restarted by the next write)
                            return
                if self.backlog and self._linger > 0:
                    deadline = time.monotonic() + self._linger
                    while self._lingering() and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(left)
                if self._stopping:
                    return  # whoever stops the worker sends what is left, in its own thread
            try:
                self._drain(always=retry)
            except Exception as exc:
                logger.debug("%s: a write failed: %s", self.name, type(exc).__name__)

    def _drain(self, *, always: bool = False, timeout: float | None = None) -> bool:
        """Take and send what is queued, holding the send lock (``False``: lock timed out)."""
        if not self._send_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            with self._cond:
                mark = self._queued
                if mark == self._sent and not always:
                    return True
            try:  # everything counted in ``mark`` was queued before ``take``
                self._send(self._take())
            finally:
                with self._cond:
                    self._sent = max(self._sent, mark)
                    self._cond.notify_all()
        finally:
            self._send_lock.release()
        return True

    def flush(self, timeout: float | None = None, *, force: bool = False) -> bool:
        """Send everything queued so far, in this thread if it is still queued.

        Args:
            timeout: seconds to wait for a send in progress (``None``: no limit).
            force: call ``send`` even with nothing queued (an empty batch).

        Returns:
            Whether everything queued before the call was sent in time.

        Raises:
            Exception: what ``send`` raised for the batch sent here.
        """
        with self._cond:
            target = self._queued
            self._flushers += 1
            self._cond.notify_all()
        try:
            if not self._drain(always=force, timeout=timeout):
                return False
            with self._cond:
                return self._cond.wait_for(lambda: self._sent >= target, timeout)
        finally:
            with self._cond:
                self._flushers -= 1

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread (after the send in progress, if any) and wait for it.

        What is still queued stays queued: ``flush()`` sends it in the caller's thread.

        Returns:
            Whether the thread ended in time.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        ended = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            ended = not thread.is_alive()
        with self._cond:
            self._stopping = False
            if ended:
                self._thread = None
        return ended


# --------------------------------------------------------------------------- private state

PRIVATE_DIR_MODE = 0o700
"""State directories: this user only."""

PRIVATE_FILE_MODE = 0o600
"""State files (databases, the probe file): this user only."""


def _tighten(path: Path, mode: int) -> None:
    """``chmod`` a path we own to ``mode`` (a sticky shared directory such as /tmp is left alone).

    Raises:
        OSError: if the path cannot be read or changed.
    """
    info = os.stat(path)
    if info.st_uid != os.geteuid() or info.st_mode & stat.S_ISVTX:
        return
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create a directory (and missing parents) as ``0700``, or tighten one we own to ``0700``.

    Directories created here get ``0700`` whatever the umask; an existing directory owned by
    this user is changed to ``0700`` (from an older version's ``0755``), unless it is a sticky
    shared directory such as ``/tmp``. Parents that already exist are not changed.

    Args:
        path: the directory.

    Returns:
        The directory as a ``Path``.

    Raises:
        OSError: if it cannot be created (a file in the way, a read-only parent) or changed.
    """
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.mkdir(directory, PRIVATE_DIR_MODE)
        _tighten(directory, PRIVATE_DIR_MODE)
    if not path.is_dir():
        msg = f"{path} exists and is not a directory"
        raise FileExistsError(msg)
    _tighten(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create a file as ``0600`` if missing, or tighten one we own to ``0600``.

    An existing file is changed by path, never opened: closing a descriptor of a database
    would drop the locks SQLite holds on it in this process.

    Args:
        path: the file (its directory must exist).

    Returns:
        The file as a ``Path``.

    Raises:
        OSError: if it cannot be created or changed.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)  # a new file: no lock of this process is on it
    _tighten(path, PRIVATE_FILE_MODE)
    return path


HASH_KEY_BYTES = 32
"""Length of a per-installation hash key."""


def new_hash_key() -> bytes:
    """A fresh random hash key."""
    return secrets.token_bytes(HASH_KEY_BYTES)


def keyed_hash(key: bytes, text: str, hex_digits: int = 32) -> str:
    """A keyed hash of ``text`` (BLAKE2b with ``key``), ``hex_digits`` hex digits.

    Without the key, nobody can tell which text a keyed hash stands for, even by guessing the
    text: this is what keeps a guessed system prompt from being confirmed against saved state.

    >>> key, other = bytes(32), bytes(31) + b"x"
    >>> keyed_hash(key, "p:00ff") == keyed_hash(key, "p:00ff") != keyed_hash(other, "p:00ff")
    True
    >>> len(keyed_hash(key, "p:00ff", 24))
    24
    """
    digest = hashlib.blake2b(text.encode(), key=key[:64], digest_size=max(1, hex_digits // 2))
    return digest.hexdigest()[:hex_digits]
