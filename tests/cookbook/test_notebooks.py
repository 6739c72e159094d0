"""Every cookbook notebook runs top to bottom, offline, against the embedded relay emulator.

Each notebook is executed with ``nbclient`` in a temporary copy (the committed files, with their
saved outputs, are never rewritten), on a kernel that runs this interpreter: a kernel spec is
written to a temporary directory, so the test needs no registered ``python3`` kernel and always
uses the venv that ``make test`` installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell
KERNEL_NAME = "claude-relay-cookbook"
IPC_PATH_LIMIT = 90  # unix socket paths are limited to ~104 bytes (macOS), plus a "-N" suffix
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colors in IPython tracebacks
NOTEBOOK_BUDGET = 60  # seconds per notebook, kernel start included (each takes ~3-7 s)
MAX_NOTEBOOK_BYTES = 120_000  # committed outputs stay small (plots at figsize (6, 3), dpi 80)


def _kernel_manager(root: Path) -> KernelManager:
    """A kernel manager whose only kernel spec runs ``sys.executable`` (this venv's Python)."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "langchain-claude-relay cookbook",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
    ipc = root / "kernel-ipc"
    if os.name == "posix" and len(str(ipc)) < IPC_PATH_LIMIT:
        # Unix sockets in the temp dir rather than TCP: no port, nothing on the network.
        return KernelManager(
            kernel_name=KERNEL_NAME, kernel_spec_manager=specs, transport="ipc", ip=str(ipc)
        )
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)  # TCP on loopback


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def test_the_cookbook_has_its_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 7, names
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    copy = work / path.name
    shutil.copyfile(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=CELL_TIMEOUT,
        record_timing=False,
        resources={"metadata": {"path": str(work)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{ANSI.sub('', str(exc))}")
    elapsed = time.perf_counter() - start
    assert not _errors(nb), _errors(nb)
    assert elapsed < NOTEBOOK_BUDGET, f"{path.name} took {elapsed:.0f} s: keep notebooks fast"
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in executed), "every code cell ran"
