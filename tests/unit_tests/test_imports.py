"""The public surface, pinned: what ``import langchain_claude_relay`` offers, and where."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import langchain_claude_relay
from langchain_claude_relay import errors
from langchain_claude_relay._compat import MOVED_MODULES

EXPECTED_ALL = [
    "ChatClaudeRelay",
    "CachePlanner",
    "CachePlan",
    "Breakpoint",
    "RelayEmulator",
    "NormalizedUsage",
    "normalize_usage",
    "track_costs",
    "ModelSpec",
    "ModelPrices",
    "lookup_model",
    "register_model",
    "RateLimiter",
    "RateLimits",
    "shared_limiter",
    "ResponseLimits",
    "response_cap_hooks",
    "ClaudeRelayError",
    "RequestValidationError",
    "LedgerUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseError",
    "CutResponseError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RequestTooLargeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "OverloadedError",
    "StateWarning",
    "StateStoreWarning",
    "LedgerWarning",
    "RedisStateWarning",
    "InsecureTransportWarning",
    "PrefixStabilityWarning",
    "TokenEstimateWarning",
    "__version__",
]

SUBPACKAGE_ALL = {
    "langchain_claude_relay.store": {
        "StateStore",
        "StoreValue",
        "MemoryStore",
        "DiskStore",
        "RedisStore",
        "ResilientStore",
        "WarmPrefixRegistry",
        "warm_registry",
        "default_store",
        "default_state_dir",
        "check_key",
        "check_value",
        "warn_state_failure",
        "StateWarning",
        "StateStoreWarning",
        "STATE_DIR_ENV",
    },
    "langchain_claude_relay.limiter": {
        "WINDOW_SECONDS",
        "MAX_PENDING",
        "RateLimits",
        "PRESETS",
        "Reservation",
        "RateLimiter",
        "RedisRateLimiter",
        "RedisReservation",
        "counted_input_tokens",
        "shared_limiter",
        "shared_redis_limiter",
        "clear_shared_limiters",
        "clear_shared_redis_limiters",
        "limiter_for",
    },
}


def test_all_is_pinned() -> None:
    assert langchain_claude_relay.__all__ == EXPECTED_ALL


def test_every_name_in_all_resolves() -> None:
    for name in langchain_claude_relay.__all__:
        assert getattr(langchain_claude_relay, name) is not None, name


def test_every_error_class_is_exported_at_the_top() -> None:
    classes = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), BaseException)
    }
    assert classes <= set(langchain_claude_relay.__all__)


@pytest.mark.parametrize("module", sorted(SUBPACKAGE_ALL))
def test_subpackage_surface_is_pinned(module: str) -> None:
    assert set(importlib.import_module(module).__all__) == SUBPACKAGE_ALL[module]


@pytest.mark.parametrize(
    ("ours", "core"),
    [
        ("APIConnectionError", "ModelConnectionError"),
        ("APITimeoutError", "ModelTimeoutError"),
        ("BadRequestError", "ModelInvalidRequestError"),
        ("AuthenticationError", "ModelAuthenticationError"),
        ("PermissionDeniedError", "ModelPermissionDeniedError"),
        ("NotFoundError", "ModelNotFoundError"),
        ("RateLimitError", "ModelRateLimitError"),
        ("InternalServerError", "ModelAPIError"),
        ("OverloadedError", "ModelAPIError"),
    ],
)
def test_errors_are_also_langchain_core_model_errors(ours: str, core: str) -> None:
    core_errors = pytest.importorskip("langchain_core.exceptions")
    if not hasattr(core_errors, core):
        pytest.skip(f"langchain-core {core} not in this version")
    assert issubclass(getattr(errors, ours), getattr(core_errors, core))


def test_a_rate_limit_error_is_caught_as_langchain_cores() -> None:
    core_errors = pytest.importorskip("langchain_core.exceptions")
    if not hasattr(core_errors, "ModelRateLimitError"):
        pytest.skip("langchain-core without ModelRateLimitError")
    with pytest.raises(core_errors.ModelRateLimitError):
        raise errors.make_status_error(429, '{"error": {"type": "rate_limit_error"}}')


OLD_PATHS = [
    ("langchain_claude_relay.redis_state", "RedisStore", "langchain_claude_relay.store.redis"),
    ("langchain_claude_relay.redis_state", "warm_registry", "langchain_claude_relay.store.warm"),
    ("langchain_claude_relay.redis_conn", "redis_url_from_env", "langchain_claude_relay._env"),
    ("langchain_claude_relay.redis_conn", "RedisStateWarning", "langchain_claude_relay.errors"),
    (
        "langchain_claude_relay.limiting",
        "relay_limiter_key",
        "langchain_claude_relay.limiter.booking",
    ),
    (
        "langchain_claude_relay.limiter_redis",
        "RedisRateLimiter",
        "langchain_claude_relay.limiter.redis",
    ),
    ("langchain_claude_relay.apis", "api_spec", "langchain_claude_relay.transport.apis"),
    ("langchain_claude_relay.retry", "RetryPolicy", "langchain_claude_relay.transport.retry"),
    ("langchain_claude_relay.convert", "to_claude_request", "langchain_claude_relay._convert"),
    ("langchain_claude_relay.fanout", "warmed_prefixes", "langchain_claude_relay._fanout"),
    ("langchain_claude_relay.ledger.location", "ledger_directory", "langchain_claude_relay._env"),
    ("langchain_claude_relay.probe", "load_capabilities", "langchain_claude_relay.capabilities"),
    (
        "langchain_claude_relay.chat_models",
        "relay_limiter_key",
        "langchain_claude_relay.limiter.booking",
    ),
]


_CHECK_OLD_PATHS = """
import importlib, json, sys, warnings
warnings.simplefilter("always")
renamed = {"redis_url_from_env": "redis_url", "ledger_directory": "ledger_dir"}
out = {}
for old, name, home in json.loads(sys.argv[1]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(f"from {old} import {name} as first", globals())
        exec(f"from {old} import {name} as second", globals())
    moved = [w for w in caught if issubclass(w.category, DeprecationWarning)
             and "moved to" in str(w.message)]
    target = getattr(importlib.import_module(home), renamed.get(name, name))
    out[f"{old}:{name}"] = {
        "same": first is target and second is target,
        "warnings": [str(w.message) for w in moved],
        "files": [w.filename for w in moved],
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def old_paths() -> dict[str, dict[str, object]]:
    """Every old path imported twice, in one fresh interpreter (``DeprecationWarning`` recorded)."""
    import json

    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _CHECK_OLD_PATHS, json.dumps(OLD_PATHS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("old", "name", "home"), OLD_PATHS)
def test_old_import_paths_still_work_and_warn_once(
    old_paths: dict[str, dict[str, object]], old: str, name: str, home: str
) -> None:
    seen = old_paths[f"{old}:{name}"]
    assert seen["same"]
    first_of_module = next(key for key in old_paths if key.startswith(f"{old}:")) == f"{old}:{name}"
    moved_name = old in ("langchain_claude_relay.probe", "langchain_claude_relay.chat_models")
    if first_of_module or moved_name:  # a module warns on its first import, a moved name on use
        assert len(seen["warnings"]) == 1, seen  # type: ignore[arg-type]
        new_home = home if moved_name else MOVED_MODULES[old][0]
        assert f"moved to {new_home}" in seen["warnings"][0]  # type: ignore[index]
        assert seen["files"] == ["<string>"]  # the caller's line, not the package's
    else:
        assert seen["warnings"] == []  # once per process


def test_the_package_itself_never_uses_an_old_path() -> None:
    """Importing every module of the package raises no 'moved to' deprecation."""
    script = (
        "import warnings, pkgutil, importlib\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "import langchain_claude_relay as p\n"
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    with warnings.catch_warnings():
        done = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
        )
    assert done.returncode == 0, done.stderr[-2000:]
