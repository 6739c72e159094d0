"""Selecting Redis, naming a server without its password, and the shared health."""

from __future__ import annotations

import warnings

import pytest
import redis

from langchain_claude_relay._env import redis_url
from langchain_claude_relay._redis import (
    RedisHealth,
    check_namespace,
    is_outage,
    redis_client,
    resolve_client,
    server_location,
)
from langchain_claude_relay.errors import RedisStateWarning


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("  rediss://h:6380/2 ", "rediss://h:6380/2"),
        ("REDIS://H/1", "REDIS://H/1"),
        ("unix:///tmp/redis.sock?db=3", "unix:///tmp/redis.sock?db=3"),
        ("/var/lib/state", None),
        ("", None),
        ("http://redis:6379", None),
    ],
)
def test_redis_url_from_env(value: str, expected: str | None) -> None:
    assert redis_url({"CLAUDE_RELAY_STATE": value}) == expected


def test_a_server_is_named_without_credentials() -> None:
    client = redis_client("redis://alice:s3cret-pass@cache.internal:6390/4")
    assert server_location(client) == "redis://cache.internal:6390/4"
    assert "s3cret" not in repr(server_location(client))


def test_clients_are_checked() -> None:
    with pytest.raises(ValueError, match="not a Redis URL"):
        redis_client("http://localhost:6379")
    with pytest.raises(ValueError, match="decode_responses=False"):
        resolve_client(redis.Redis(decode_responses=True))
    with pytest.raises(ValueError, match=r"redis\.Redis client"):
        resolve_client(42)
    assert resolve_client(redis.Redis()) is not None


@pytest.mark.parametrize("name", ["", "UPPER", "a" * 33, "bad:colon", "with space"])
def test_namespaces_are_short_names(name: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        check_namespace(name)


def test_outage_errors() -> None:
    assert is_outage(redis.exceptions.ConnectionError("refused"))
    assert is_outage(redis.exceptions.BusyLoadingError("loading"))
    assert is_outage(ConnectionRefusedError())
    assert not is_outage(ValueError("a bug"))


def test_health_probes_once_per_interval_and_warns_once_per_server() -> None:
    now = [0.0]
    health = RedisHealth("redis://test-health:1/0", retry_after=5.0, clock=lambda: now[0])
    assert health.should_try()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        health.failed(ConnectionError("down"), "a test")
        health.failed(ConnectionError("down"), "a test")
        assert not health.up
        assert not health.should_try()
        now[0] = 5.0
        assert health.should_try()  # one probe...
        assert not health.should_try()  # ...per interval
        health.succeeded()
        assert health.up
        assert health.should_try()
        health.failed(ConnectionError("down again"), "a test")  # a second outage: logged only
    assert [w.category for w in caught] == [RedisStateWarning]
    assert health.outages == 2
