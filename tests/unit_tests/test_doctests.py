"""Every example in the package's docstrings runs (they are documentation users copy)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import langchain_claude_relay

# Modules whose import needs an optional extra that may be absent, or that start servers.
SKIP = {"langchain_claude_relay.cli"}

MODULES = sorted(
    name
    for _finder, name, _is_pkg in pkgutil.walk_packages(
        langchain_claude_relay.__path__, prefix="langchain_claude_relay."
    )
    if name not in SKIP
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
