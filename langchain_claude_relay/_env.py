"""The environment the package reads, in one place: variable names and where state lives.

A leaf module (standard library only; ``platformdirs`` and the package's leaf warning helpers on
first use), so every layer may import it. Each variable has one name here and one reader, and
every reader strips whitespace the same way: ``CLAUDE_RELAY_STATE_DIR=" /tmp/x "`` means
``/tmp/x`` to the planner's store and to the cost ledger alike.

>>> state_dir({"CLAUDE_RELAY_STATE_DIR": " /tmp/relay-state "}).as_posix()
'/tmp/relay-state'
>>> ledger_dir({"CLAUDE_RELAY_STATE_DIR": "/tmp/relay-state"}).as_posix()
'/tmp/relay-state/ledger'
>>> redis_url({"CLAUDE_RELAY_STATE": "redis://127.0.0.1:6379/0"})
'redis://127.0.0.1:6379/0'
>>> import warnings
>>> with warnings.catch_warnings():   # not a Redis URL: warned once per process, then ignored
...     warnings.simplefilter("ignore")
...     redis_url({"CLAUDE_RELAY_STATE": "/var/tmp/state"}) is None
True
>>> len(hash_key({"CLAUDE_RELAY_HASH_KEY": "a long shared secret"}))
32
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "APP_NAME",
    "STATE_DIR_ENV",
    "STATE_ENV",
    "REDIS_SCHEMES",
    "BASE_URL_ENV",
    "BASE_URL_ENVS",
    "API_KEY_ENV",
    "API_KEY_ENVS",
    "ENCODING_ENV",
    "HASH_KEY_ENV",
    "read",
    "first_set",
    "state_dir",
    "ledger_dir",
    "redis_url",
    "hash_key",
]

APP_NAME = "langchain-claude-relay"
"""The application name for ``platformdirs`` (the user cache directory)."""

STATE_DIR_ENV = "CLAUDE_RELAY_STATE_DIR"
"""The state directory: the planner's store lives in it, the cost ledger in its ``ledger/``."""

STATE_ENV = "CLAUDE_RELAY_STATE"
"""A Redis URL (``redis://``, ``rediss://``, ``unix://``) selecting the fleet backends."""

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""URL schemes that name a Redis server."""

BASE_URL_ENV = "CLAUDE_RELAY_BASE_URL"
"""The relay's base URL (then ``OPENAI_BASE_URL``)."""

BASE_URL_ENVS = (BASE_URL_ENV, "OPENAI_BASE_URL", "OPENAI_API_BASE")
"""Where a relay's base URL is read, in order: ours, then the OpenAI SDK's and ``ChatOpenAI``'s
(``OPENAI_API_BASE``), so existing ``ChatOpenAI`` setups keep working."""

API_KEY_ENV = "CLAUDE_RELAY_API_KEY"
"""The relay's key (then ``OPENAI_API_KEY``)."""

API_KEY_ENVS = (API_KEY_ENV, "OPENAI_API_KEY")
"""Where a relay's key is read, in order: ours, then the OpenAI SDK's."""

ENCODING_ENV = "CLAUDE_RELAY_TIKTOKEN_ENCODING"
"""The tiktoken encoding the token estimator loads (default: the bundled offline one)."""

HASH_KEY_ENV = "CLAUDE_RELAY_HASH_KEY"
"""A secret that keys the hashes in saved state (default: a random key kept with the state)."""


def read(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A variable's value, stripped; ``None`` when unset or blank.

    Args:
        name: the variable.
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        The stripped value, or ``None``.
    """
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


def first_set(names: Sequence[str]) -> str | None:
    """The value of the first of ``names`` set to a non-empty value in the environment."""
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _user_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$CLAUDE_RELAY_STATE_DIR``, else ``user_cache_dir("langchain-claude-relay")/state``.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        The planner store's directory (not created here).
    """
    configured = read(STATE_DIR_ENV, environ)
    if configured is not None:
        return Path(configured).expanduser()
    return _user_cache_dir() / "state"


def ledger_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$CLAUDE_RELAY_STATE_DIR/ledger``, else ``user_cache_dir("langchain-claude-relay")/ledger``.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        The on-disk ledger's directory (not created here).
    """
    configured = read(STATE_DIR_ENV, environ)
    if configured is not None:
        return Path(configured).expanduser() / "ledger"
    return _user_cache_dir() / "ledger"


def redis_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL in ``$CLAUDE_RELAY_STATE``, or ``None`` if it does not name Redis.

    A value that is set but names no Redis server (``127.0.0.1:6379/0`` without its scheme, a
    directory meant for ``$CLAUDE_RELAY_STATE_DIR``) is ignored, so state stays local: that is
    warned once per process (``StateStoreWarning``, the value shown without credentials), since
    a fleet would otherwise quietly stop sharing statistics, the ledger and rate limits.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        The URL, stripped, when it starts with ``redis://``, ``rediss://`` or ``unix://``.
    """
    value = read(STATE_ENV, environ)
    if value is None:
        return None
    if value.lower().startswith(REDIS_SCHEMES):
        return value
    _warn_not_redis(value)
    return None


def _redacted(value: str) -> str:
    """``value`` with any userinfo (``user:password@``) and query values replaced by ``***``.

    Local, not ``transport.checks.redact_url``: that module imports this one. A value without a
    scheme is not a URL a parser reads reliably, so everything before the last ``@`` goes.

    >>> _redacted("alice:s3cret@cache.internal:6379/0?password=s3cret")
    '***@cache.internal:6379/0?password=***'
    >>> _redacted("http://:s3#c?ret@redis:6379/1")
    'http://***@redis:6379/1'
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    if "@" in rest:  # first, so a password holding "?" or "#" goes whole
        rest = "***@" + rest.rpartition("@")[2]
    address, _, query = rest.partition("#")[0].partition("?")
    shown = f"{scheme}{sep}{address}"
    if query:
        shown += "?" + "&".join(
            f"{item.partition('=')[0]}=***" if "=" in item else "***"
            for item in query.split("&")
            if item
        )
    return shown


_HOST_PORT = re.compile(r"[\w.\-]+:\d+(/\d*)?")
"""``host:port`` or ``host:port/db``: a Redis address without its scheme."""


def _warn_not_redis(value: str) -> None:
    """Warn once per process that ``$CLAUDE_RELAY_STATE`` holds no Redis URL."""
    # Imported here, on the rare bad value: neither imports the package, and importing this
    # module stays standard library only.
    from langchain_claude_relay._plumbing import warn_once
    from langchain_claude_relay.errors import StateStoreWarning

    shown = _redacted(value)
    hint = ""
    if _HOST_PORT.fullmatch(value.rpartition("@")[2]):  # the scheme forgotten
        hint = f" (did you mean redis://{shown}?)"
    message = (
        f"langchain-claude-relay: ${STATE_ENV}={shown!r} is not a Redis URL, so it is ignored"
        f"{hint}: planner statistics, the cost ledger and the rate limiter use local state in "
        "this process and are not shared with other workers. To share them, set "
        f"{STATE_ENV} to a URL starting with redis://, rediss:// or unix:// (e.g. "
        f"redis://host:6379/0); to choose the local state directory, set {STATE_DIR_ENV} "
        f"instead and unset {STATE_ENV}."
    )
    warn_once(("state_env_not_redis",), message, StateStoreWarning)


def hash_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key in ``$CLAUDE_RELAY_HASH_KEY`` (any text, stretched to 32 bytes), or ``None``.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        32 bytes derived from the variable, or ``None`` when it is unset.
    """
    value = read(HASH_KEY_ENV, environ)
    return None if value is None else hashlib.sha256(value.encode()).digest()
