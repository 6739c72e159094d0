"""Reaching the fleet's Redis, and noticing when it goes away and comes back.

The Redis backends (``store.redis.RedisStore``, ``ledger.redis.RedisLedger``,
``limiter.redis.RedisRateLimiter``) share this module (``CLAUDE_RELAY_STATE=redis://host:6379/0``
selects them; ``_env.redis_url`` reads it):
* ``redis_client``: a ``redis.Redis`` from a URL with short timeouts and one retry, so an outage
  costs a call at most about a second, never redis-py's default ten retries with backoff.
* ``RedisHealth``: one per Redis server and process, shared by every backend using it. While Redis
  is down the backends use local state; once per ``retry_after`` seconds one caller tries Redis
  again, and the first success switches every backend back. The first outage in a process warns
  once (``RedisStateWarning``); later outages and every recovery are logged.

Nothing here logs or raises a password: a server is named by ``server_location`` (scheme, host,
port and database only).

One Redis server (standalone, or the primary behind Sentinel: pass its client) is supported;
Redis Cluster is not (a store read touches two keys that a cluster may place apart).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_claude_relay._env import REDIS_SCHEMES, STATE_ENV, redis_url
from langchain_claude_relay._plumbing import warn_once
from langchain_claude_relay.errors import RedisStateWarning

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "RedisHealth",
    "redis_client",
    "server_location",
    "health_for",
    "is_outage",
    "check_namespace",
    "resolve_client",
]

logger = logging.getLogger("langchain_claude_relay.redis")

DEFAULT_RETRY_AFTER = 5.0
"""Seconds between attempts to reach Redis again while it is down."""

CONNECT_TIMEOUT = 0.5
"""Seconds to open a connection (a refused one fails at once; a silent host takes this long)."""

SOCKET_TIMEOUT = 1.0
"""Seconds to wait for a reply."""

_INSTALL_HINT = "pip install 'langchain-claude-relay[redis]'"

_T = TypeVar("_T")


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        msg = f"the Redis backend needs the redis client: {_INSTALL_HINT}"
        raise ImportError(msg) from exc
    return redis


def redis_client(url: str, **overrides: Any) -> redis.Redis:
    """A client for ``url`` with short timeouts and a single retry.

    The one retry lets a pooled connection that died with a Redis restart reconnect within the
    same call; a server that stays down fails the call at once (connection refused) or after
    ``CONNECT_TIMEOUT`` (no answer).

    Args:
        url: ``redis://[[user]:[password]@]host[:port][/db]``, ``rediss://...`` or
            ``unix://path?db=N``.
        **overrides: other ``redis.Redis.from_url`` arguments.

    Returns:
        The client (it connects on first use).

    Raises:
        ImportError: if the ``redis`` package is not installed.
        ValueError: if ``url`` is not a Redis URL.
    """
    module = _import_redis()
    if not isinstance(url, str) or not url.strip().lower().startswith(REDIS_SCHEMES):
        msg = "not a Redis URL: use redis://host:port/db, rediss://... or unix://path"
        raise ValueError(msg)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 0,
    }
    options.update(overrides)
    return module.Redis.from_url(url.strip(), **options)  # type: ignore[no-any-return]


def server_location(client: Any) -> str:
    """Name a client's server without credentials: ``redis://host:port/db`` or ``unix://path``.

    Args:
        client: a ``redis.Redis``.

    Returns:
        The name (``redis://?`` when the client does not say).
    """
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = dict(getattr(pool, "connection_kwargs", {}) or {})
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}"
    host = kwargs.get("host", "?")
    port = kwargs.get("port", 6379)
    scheme = "rediss" if "ssl" in str(getattr(pool, "connection_class", "")).lower() else "redis"
    return f"{scheme}://{host}:{port}/{db}"


def is_outage(exc: BaseException) -> bool:
    """Whether an exception means "Redis cannot serve us now" (rather than a bug here).

    Connection failures and timeouts, a server still loading its data, a read-only replica
    after a failover, a full memory or a failing disk (``OOM``, ``MISCONF``), refused
    credentials: all of them leave the fleet state to local fallbacks until Redis answers.
    """
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - the backends cannot exist without redis
        return isinstance(exc, OSError)
    return isinstance(exc, (RedisError, OSError))


def check_namespace(namespace: str) -> str:
    """Refuse a namespace that is not a short name (it becomes part of every key).

    Raises:
        ValueError: unless ``namespace`` is 1-32 characters of ``a-z``, ``0-9``, ``_``, ``-``.
    """
    if (
        not isinstance(namespace, str)
        or not 1 <= len(namespace) <= 32
        or not all(c.isascii() and (c.islower() or c.isdigit() or c in "_-") for c in namespace)
    ):
        msg = f"invalid Redis namespace {namespace!r}: use 1-32 characters a-z, 0-9, '_' or '-'"
        raise ValueError(msg)
    return namespace


class RedisHealth:
    """Whether one Redis server is usable, shared by every backend of the process that uses it.

    ``should_try()`` is ``True`` while Redis is up; while it is down, for one caller every
    ``retry_after`` seconds (that call is the probe). Backends report ``succeeded()`` or
    ``failed()``; the first failure of an outage starts it, the first success ends it.

    Args:
        location: the server's name (``server_location``), used in messages.
        retry_after: seconds between probes while down.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        location: str,
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.location = location
        self.retry_after = float(retry_after)
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_probe = 0.0
        self.outages = 0
        """Outages seen by this process."""
        self.failure: str | None = None
        """What the current outage's first failure was (``None`` while up)."""

    @property
    def up(self) -> bool:
        """Whether Redis is believed reachable."""
        return self._down_since is None

    def should_try(self) -> bool:
        """Whether this call should use Redis (always while up; one probe per interval if not)."""
        if self._down_since is None:
            return True
        with self._lock:
            if self._down_since is None:
                return True
            now = self._clock()
            if now >= self._next_probe:
                self._next_probe = now + self.retry_after
                return True
            return False

    def succeeded(self) -> None:
        """A Redis call worked: end an outage in progress."""
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            lasted = self._clock() - self._down_since
            self._down_since, self.failure = None, None
        logger.warning(
            "Redis at %s is reachable again after %.1f s; the fleet state is shared again",
            self.location,
            lasted,
        )

    def failed(self, exc: BaseException, what: str) -> None:
        """A Redis call failed with an outage error: start an outage (warn or log once).

        Args:
            exc: the exception.
            what: the component, e.g. ``"the rate limiter"``, for the message.
        """
        with self._lock:
            now = self._clock()
            self._next_probe = now + self.retry_after
            if self._down_since is not None:
                return
            self._down_since = now
            self.outages += 1
            self.failure = type(exc).__name__
        _announce_outage(self.location, type(exc).__name__, what, self.retry_after)

    def call(self, action: Callable[[], _T], what: str) -> tuple[_T] | None:
        """Run one Redis action unless Redis is down, and report how it went.

        Args:
            action: the Redis call(s) to make.
            what: the component, e.g. ``"the rate limiter"``, for an outage message.

        Returns:
            ``(result,)``, or ``None`` when Redis is down (not tried) or the action failed with
            an outage error (``is_outage``); the caller then uses its local state.

        Raises:
            Exception: whatever ``action`` raised that is not an outage (a bug, not Redis).
        """
        if not self.should_try():
            return None
        try:
            result = action()
        except Exception as exc:
            if not is_outage(exc):
                raise
            self.failed(exc, what)
            return None
        self.succeeded()
        return (result,)


def _announce_outage(location: str, error: str, what: str, retry_after: float) -> None:
    message = (
        f"langchain-claude-relay: Redis at {location} is unreachable ({error}, seen by {what}); "
        "planner statistics, the cost ledger and the rate limiter continue with local state in "
        f"this process, and Redis is tried again every {retry_after:g} s. Check that the server "
        f"is running and that ${STATE_ENV} names it."
    )
    warn_once(("redis_outage", location), message, RedisStateWarning, log=logger)


_health: dict[str, RedisHealth] = {}
_health_lock = threading.Lock()


def health_for(client: Any, retry_after: float | None = None) -> RedisHealth:
    """The process's ``RedisHealth`` for a client's server (created on first use).

    Args:
        client: a ``redis.Redis``.
        retry_after: if given, sets the probe interval of that server's health.

    Returns:
        The shared health.
    """
    location = server_location(client)
    with _health_lock:
        health = _health.get(location)
        if health is None:
            health = RedisHealth(location, retry_after=retry_after or DEFAULT_RETRY_AFTER)
            _health[location] = health
        elif retry_after is not None:
            health.retry_after = float(retry_after)
        return health


def resolve_client(redis_or_url: Any) -> Any:
    """A client from a URL, a client, or ``None`` (``$CLAUDE_RELAY_STATE``).

    Raises:
        ValueError: for ``None`` when the environment names no Redis, a string that is not a
            Redis URL, or a client that decodes responses to text.
        ImportError: if the ``redis`` package is not installed.
    """
    if redis_or_url is None:
        url = redis_url()
        if url is None:
            msg = f"no Redis given: pass a redis:// URL or a redis.Redis, or set ${STATE_ENV}"
            raise ValueError(msg)
        return redis_client(url)
    if isinstance(redis_or_url, str):
        return redis_client(redis_or_url)
    pool = getattr(redis_or_url, "connection_pool", None)
    if pool is None or not callable(getattr(redis_or_url, "register_script", None)):
        msg = f"expected a redis:// URL or a redis.Redis client, got {type(redis_or_url).__name__}"
        raise ValueError(msg)
    if getattr(pool, "connection_kwargs", {}).get("decode_responses"):
        msg = "pass a redis.Redis client with decode_responses=False (the backends read bytes)"
        raise ValueError(msg)
    return redis_or_url
