"""Every error this package raises survives pickling: a ``multiprocessing`` worker's error
reaches its parent whole (an error that could not be rebuilt killed the pool's result thread,
and ``pool.map`` waited forever)."""

from __future__ import annotations

import inspect
import multiprocessing
import pickle

import pytest

from langchain_claude_relay import errors

ERROR_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ClaudeRelayError)
    ),
    key=lambda cls: cls.__name__,
)


def _example(cls: type[errors.ClaudeRelayError]) -> errors.ClaudeRelayError:
    if issubclass(cls, errors.APIStatusError):
        return cls(
            "the relay said no", status_code=429, body="busy", request_id="req_1", retry_after=2.0
        )
    if issubclass(cls, errors.APIResponseError):
        return cls("not JSON", status_code=200, body="<html>")
    return cls("something went wrong")


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_an_error_pickles_whole(cls: type[errors.ClaudeRelayError]) -> None:
    error = _example(cls)
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert type(again) is cls
    assert str(again) == str(error)
    assert vars(again) == vars(error)


def _fails() -> None:
    raise errors.RateLimitError("slow down", status_code=429, retry_after=1.5)


def test_a_pool_workers_relay_error_reaches_the_parent() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply_async(_fails)
        with pytest.raises(errors.RateLimitError, match="slow down") as caught:
            result.get(timeout=60)
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 1.5
