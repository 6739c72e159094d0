"""Re-execute the cookbook notebooks and store their outputs (``make notebooks``).

``python tests/cookbook/refresh.py`` refreshes every notebook; name some to refresh only those
(``python tests/cookbook/refresh.py 03 05``). The stored outputs are what
``tests/cookbook/test_notebooks.py`` compares a fresh run to, so run this after any change that
moves a figure (the planner, the emulator, prices), and commit the notebooks.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from cookbook_runner import NOTEBOOKS, execute, missing_requirements


def _strip_volatile(nb: nbformat.NotebookNode) -> None:
    """Drop per-run metadata (timings, widget state) so a refresh diffs only real changes."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)


def refresh(path: Path) -> float:
    """Run ``path`` and write it back with its new outputs; returns the seconds it took."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cookbook-") as root:
        nb = execute(path, Path(root))
    _strip_volatile(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    chosen = [p for p in NOTEBOOKS if not argv or any(p.name.startswith(a) for a in argv)]
    if not chosen:
        print(f"no notebook matches {argv}", file=sys.stderr)
        return 2
    for path in chosen:
        missing = missing_requirements(nbformat.read(path, as_version=4))
        if missing:
            print(f"{path.name}: skipped, needs {', '.join(missing)} (its outputs are kept)")
            continue
        print(f"{path.name}: {refresh(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
