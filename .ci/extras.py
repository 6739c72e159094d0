"""Say what ``make`` is about to install: the extras named and their packages, from pyproject.

Usage: ``python .ci/extras.py demo`` or ``python .ci/extras.py dev,cookbook,redis``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SELF = "langchain-claude-relay"


def _load() -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # Python 3.10: pip vendors the same parser
        from pip._vendor import tomli as tomllib  # type: ignore[import-not-found,no-redef]
    with PYPROJECT.open("rb") as handle:
        return dict(tomllib.load(handle))


def _expand(extra: str, table: dict[str, list[str]], seen: set[str]) -> list[str]:
    """The extra's packages, with ``langchain-claude-relay[other]`` expanded in place."""
    if extra in seen:
        return []
    seen.add(extra)
    out: list[str] = []
    for requirement in table.get(extra, []):
        nested = re.fullmatch(rf"{SELF}\[([\w,-]+)\]", requirement)
        if nested:
            for name in nested.group(1).split(","):
                out.extend(_expand(name, table, seen))
        else:
            out.append(requirement)
    return out


def main(argv: list[str]) -> int:
    extras = [e for arg in argv for e in arg.split(",") if e]
    table = _load()["project"]["optional-dependencies"]
    print(f"installing {SELF} (editable) into .venv with the extras [{','.join(extras)}]:")
    seen: set[str] = set()
    for extra in extras:
        packages = _expand(extra, table, seen)
        if packages:
            print(f"  {extra:<9} {', '.join(packages)}")
    print("  (and the package's own dependencies: langchain-core, openai, httpx, tiktoken, ...)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
