"""The SQLite files of ``DiskStore`` and ``DiskLedger``: private, JSON only, nothing that runs.

Both keep plain ``sqlite3`` databases whose values are JSON text: nothing is ever unpickled, no
row names a file (so no row can make us read or delete one), and a value is read only when it
is text no longer than the reader's cap. A planted row that is not what we wrote is skipped with
one warning; it can neither run code nor touch a file.

* ``open_database(path)``: the database file created ``0600`` (its directory ``0700``), in WAL
  mode, with a busy timeout; files of an older version are tightened to the same modes.
* ``database_hash_key(db, given)``: the per-installation key that keys the hashes written to
  the database (``_plumbing.keyed_hash``): ``given`` (a setting, or ``$CLAUDE_RELAY_HASH_KEY``),
  else a random key created once and kept in the database's ``meta`` table.
* ``legacy_rows``: the rows of an older version's diskcache file (``cache.db``), read with SQL
  alone -- only the rows that hold plain JSON text or JSON bytes inline, never through
  diskcache, whose ``Disk.fetch`` unpickles any row whose ``mode`` column says so and whose
  expiry deletes any file a row names. ``remove_legacy_files`` deletes that database and
  nothing else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_claude_relay._env import hash_key as hash_key_from_env
from langchain_claude_relay._plumbing import (
    HASH_KEY_BYTES,
    new_hash_key,
    private_dir,
    private_file,
    warn_once,
)

__all__ = [
    "report_migration",
    "open_database",
    "database_hash_key",
    "file_identity",
    "check_header",
    "LEGACY_DATABASE",
    "legacy_rows",
    "inflate_json_bytes",
    "remove_legacy_files",
    "begin_immediate",
]

LEGACY_DATABASE = "cache.db"
"""The diskcache database older versions kept in the state and ledger directories."""

_LEGACY_MODE_RAW = 1  # diskcache's MODE_RAW: the value is inline (bytes or text), never a file
_SIDE_FILES = ("-wal", "-shm")


def _uri(path: Path) -> str:
    """A ``file:`` URI for a path, relative or not."""
    return Path(os.path.abspath(path)).as_uri()


def open_database(path: Path, *, timeout: float, create: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) a private SQLite database in WAL mode.

    The directory is made ``0700`` and the file ``0600`` before SQLite opens it, so the WAL
    and shared-memory files SQLite creates next to it get the same mode.

    Args:
        path: the database file.
        timeout: seconds a statement waits for a lock held by another connection.
        create: create the directory and file if missing (``False``: an existing one only,
            e.g. to read what is left after a failure without recreating a removed directory).

    Returns:
        An autocommit connection (``BEGIN``/``COMMIT`` are explicit) usable from any thread
        (the caller serializes its use).

    Raises:
        OSError: if the directory or file cannot be created.
        sqlite3.DatabaseError: if the file is not a SQLite database.
    """
    if create:
        private_dir(path.parent)
        private_file(path)
        target: str | Path = path
    else:
        target = f"{_uri(path)}?mode=rw"
    db = sqlite3.connect(
        target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=not create
    )
    try:
        check_header(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for suffix in _SIDE_FILES:
            side = Path(f"{path}{suffix}")
            if side.exists():
                private_file(side)
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def begin_immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken at once (``BEGIN IMMEDIATE``), committed or rolled back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def database_hash_key(db: sqlite3.Connection, given: bytes | None = None) -> bytes:
    """The key that keys the hashes written to this database.

    Args:
        db: the database (a ``meta`` table is created if missing).
        given: a key from a setting; else ``$CLAUDE_RELAY_HASH_KEY``; else the random key kept
            in the database (created by the first process to open it; every process sharing
            the file reads the same one).

    Returns:
        The key.
    """
    if given is not None:
        return given
    from_env = hash_key_from_env()
    if from_env is not None:
        return from_env
    with contextlib.suppress(sqlite3.OperationalError):  # no meta table yet
        found = db.execute("SELECT value FROM meta WHERE name = 'hash_key'").fetchone()
        if (
            found is not None
            and isinstance(found[0], bytes)
            and len(found[0]) >= HASH_KEY_BYTES // 2
        ):
            return found[0]  # a read: opening an existing database waits for no writer
    with begin_immediate(db):
        db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)")
        db.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('hash_key', ?)", (new_hash_key(),)
        )
        (key,) = db.execute("SELECT value FROM meta WHERE name = 'hash_key'").fetchone()
    if not isinstance(key, bytes) or len(key) < HASH_KEY_BYTES // 2:
        msg = "the state database's hash key is damaged (remove the database to start over)"
        raise sqlite3.DatabaseError(msg)
    return key


_HEADER = b"SQLite format 3\x00"

# Descriptors kept open to read database headers, per (device, inode), never closed: closing any
# descriptor of a file drops every POSIX lock this process holds on it, including SQLite's own
# (SQLite's documented "broken locks" hazard), so the header is read with ``pread`` on one that
# stays open for the life of the process.
_header_fds: dict[tuple[int, int], int] = {}
_header_lock = threading.Lock()


def check_header(path: Path) -> None:
    """Refuse a database file whose header was overwritten (SQLite's page cache hides it).

    Raises:
        sqlite3.DatabaseError: if the file is not empty and does not start as SQLite's do.
        FileNotFoundError: if the file is gone.
    """
    identity = file_identity(path)
    with _header_lock:
        fd = _header_fds.get(identity)
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != identity:  # replaced meanwhile
                _header_fds[(os.fstat(fd).st_dev, os.fstat(fd).st_ino)] = fd
                msg = f"the state database {path} was replaced while in use"
                raise OSError(msg)
            _header_fds[identity] = fd
    head = os.pread(fd, len(_HEADER), 0)
    if head and head != _HEADER:
        msg = f"file is not a database: {path} was overwritten"
        raise sqlite3.DatabaseError(msg)


def file_identity(path: Path) -> tuple[int, int]:
    """The file's device and inode (to notice a database replaced or removed while in use).

    Raises:
        FileNotFoundError: if the file is gone.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        msg = f"the state database {path} was removed while in use"
        raise FileNotFoundError(msg) from exc
    return info.st_dev, info.st_ino


# ---------------------------------------------------------------------------------- legacy


def legacy_rows(directory: Path, *, text: bool, max_value_bytes: int) -> tuple[list[Any], int]:
    """The inline rows of an older version's diskcache database, read with SQL only.

    Args:
        directory: where ``cache.db`` may be.
        text: the rows held text (the ledger: ``(value,)`` in key order) rather than zlib'd
            JSON bytes (the planner's store: ``(key bytes, expire time, value bytes)``).
        max_value_bytes: longer values are skipped.

    Returns:
        The readable rows, and how many rows were skipped (pickled, file-backed, too long, of
        another type). Nothing is read from a file a row names, and nothing is unpickled.

    Raises:
        sqlite3.Error: if the database cannot be read at all.
    """
    path = directory / LEGACY_DATABASE
    db = sqlite3.connect(f"{_uri(path)}?mode=ro", uri=True, isolation_level=None)
    try:
        (total,) = db.execute("SELECT count(*) FROM Cache").fetchone()
        if text:
            query = (
                "SELECT value FROM Cache WHERE raw = 1 AND mode = ? AND filename IS NULL "
                "AND typeof(key) = 'integer' AND typeof(value) = 'text' AND length(value) <= ? "
                "ORDER BY key"
            )
        else:
            query = (
                "SELECT key, expire_time, value FROM Cache WHERE raw = 1 AND mode = ? "
                "AND filename IS NULL AND typeof(key) = 'blob' AND length(key) <= 512 "
                "AND typeof(value) = 'blob' AND length(value) <= ?"
            )
        rows = db.execute(query, (_LEGACY_MODE_RAW, max_value_bytes)).fetchall()
    finally:
        db.close()
    return rows, int(total) - len(rows)


def inflate_json_bytes(data: bytes, max_bytes: int) -> Any:
    """Decode diskcache's ``JSONDisk`` bytes (zlib'd JSON), refusing to inflate past ``max_bytes``.

    Raises:
        ValueError: if the bytes are not zlib'd JSON or inflate past the cap.
    """
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, max_bytes)
    except zlib.error as exc:
        msg = "not zlib data"
        raise ValueError(msg) from exc
    if inflater.unconsumed_tail or not inflater.eof:
        msg = "inflates past the cap or is truncated"
        raise ValueError(msg)
    return json.loads(raw.decode("utf-8"))


def remove_legacy_files(directory: Path) -> None:
    """Delete an older version's ``cache.db`` (and its WAL files), and nothing else.

    Value files an older version may have written next to it are left where they are: no row
    decides what is deleted.
    """
    for suffix in ("", *_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / f"{LEGACY_DATABASE}{suffix}")


def report_migration(
    directory: Path,
    copied: int,
    dropped: int,
    *,
    what: str,
    unit: str,
    category: type[Warning],
    log: logging.Logger,
) -> None:
    """Say what moving ``what`` in ``directory`` from diskcache to SQLite kept and dropped.

    One warning when rows were dropped (pickled, file-backed or damaged: never read), else an
    info line; nothing when there was nothing to migrate (``copied < 0``).
    """
    if dropped > 0:
        warn_once(
            ("migration", what, str(directory)),
            f"{what} in {directory} moved from diskcache to plain SQLite: {copied} {unit} were "
            f"kept and {dropped} rows that were not plain JSON (pickled, file-backed or damaged) "
            "were dropped without being read.",
            category,
        )
    elif copied >= 0:
        log.info(
            "%s in %s migrated from diskcache to SQLite (%d %s)", what, directory, copied, unit
        )
