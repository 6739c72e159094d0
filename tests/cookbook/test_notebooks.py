"""Every cookbook notebook runs top to bottom, offline, and prints what it has stored.

Each notebook is executed with ``nbclient`` in a temporary copy (the committed files are never
rewritten here; ``make notebooks`` does that), on a kernel that runs this interpreter. Its text
outputs are then compared with the stored ones, cell by cell, after ``normalise`` (timings,
temporary paths, loopback ports): a figure in a notebook that no longer matches a fresh run
fails the test, naming the cell. A notebook that needs a program that is missing here (09 needs
``redis-server``) is skipped with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from cookbook_runner import (
    COOKBOOK,
    NOTEBOOKS,
    cell_outputs,
    drift,
    execute,
    missing_requirements,
    normalise,
    strip_ansi,
)
from nbclient.exceptions import CellExecutionError

NOTEBOOK_BUDGET = 60  # seconds per notebook, kernel start included (each takes ~3-15 s)
MAX_NOTEBOOK_BYTES = 200_000  # committed outputs stay small (plots at dpi 80)
IMAGE_NOTEBOOKS = ("03", "04", "05", "06")
"""Notebooks where a chart beats a table: each stores at least one picture."""


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def _images(nb: nbformat.NotebookNode) -> int:
    return sum(
        1
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if any(k.startswith("image/") for k in out.get("data", {}))
    )


def test_the_cookbook_has_its_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 9, names
    assert all(name[:2].isdigit() for name in names), names
    readme = (COOKBOOK / "README.md").read_text()
    assert all(name in readme for name in names), "cookbook/README.md lists every notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_small_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert any(c.outputs for c in code_cells), f"{path.name} is committed without outputs"
    assert not _errors(nb), f"{path.name} is committed with errors: {_errors(nb)}"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name} outputs are too large"
    if path.name[:2] in IMAGE_NOTEBOOKS:
        assert _images(nb) >= 1, f"{path.name} should show its chart"


def test_no_notebook_uses_the_deprecated_agent_api() -> None:
    for path in NOTEBOOKS:
        sources = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert "create_react_agent" not in sources, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_prints_what_it_stores(path: Path, tmp_path: Path) -> None:
    stored = nbformat.read(path, as_version=4)
    missing = missing_requirements(stored)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}, which is not installed")
    start = time.perf_counter()
    try:
        fresh = execute(path, tmp_path)
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{strip_ansi(str(exc))}")
    elapsed = time.perf_counter() - start
    assert not _errors(fresh), _errors(fresh)
    assert elapsed < NOTEBOOK_BUDGET, f"{path.name} took {elapsed:.0f} s: keep notebooks fast"
    assert all(c.get("execution_count") for c in fresh.cells if c.cell_type == "code")
    problems = drift(stored, fresh)
    assert not problems, (
        f"{path.name}: the stored outputs are not what a fresh run prints (run `make notebooks` "
        "and commit the notebook if the change is meant):\n\n" + "\n\n".join(problems)
    )


def test_the_drift_check_sees_a_changed_figure() -> None:
    """The comparison is not vacuous: one changed number in a stored output is drift."""
    path = next(p for p in NOTEBOOKS if p.name.startswith("06"))
    stored = nbformat.read(path, as_version=4)
    changed = nbformat.read(path, as_version=4)
    cell = next(c for c in changed.cells if c.cell_type == "code" and c.outputs
                and any(o.get("output_type") == "stream" for o in c.outputs))  # fmt: skip
    stream = next(o for o in cell.outputs if o.get("output_type") == "stream")
    digit = next(ch for ch in stream.text if ch.isdigit())
    stream.text = stream.text.replace(digit, str((int(digit) + 1) % 10), 1)
    assert drift(stored, stored) == []
    assert len(drift(stored, changed)) == 1


def test_the_normaliser_keeps_figures_and_drops_what_varies() -> None:
    assert normalise("20 calls, $0.0887, 0.8 s") == "20 calls, $0.0887, <time>"
    assert normalise("saved 12,962 tokens; TTL 5m or 1h") == "saved 12,962 tokens; TTL 5m or 1h"
    assert normalise("http://127.0.0.1:43151/v1 and redis://127.0.0.1:6390/0") == (
        "http://127.0.0.1:<port>/v1 and redis://127.0.0.1:<port>/0"
    )
    assert cell_outputs(nbformat.v4.new_notebook()) == []
