"""Run a cookbook notebook, and compare its text outputs with the stored ones.

Shared by the test (``test_notebooks.py``: every notebook runs, and its stored outputs are what a
fresh run prints) and the refresh script (``refresh.py``, ``make notebooks``: re-execute and
store). Notebooks run on a kernel of this interpreter (a kernel spec written to a temporary
directory), so neither needs a registered ``python3`` kernel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
NOTEBOOKS = sorted(COOKBOOK.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell
KERNEL_NAME = "claude-relay-cookbook"
IPC_PATH_LIMIT = 90  # unix socket paths are limited to ~104 bytes (macOS), plus a "-N" suffix
REQUIRES_KEY = "claude_relay_requires"
"""Notebook metadata: executables a notebook needs (e.g. ``["redis-server"]``); skipped without."""

# What may differ between two runs of the same notebook, and what it becomes when compared.
_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\x1b\[[0-9;]*m"), ""),  # colours in tracebacks
    # checkout and interpreter locations first (a checkout may itself live under /tmp)
    (re.compile(re.escape(str(Path(__file__).resolve().parents[2]))), "<repo>"),
    (re.compile(re.escape(sys.prefix)), "<venv>"),
    (re.compile(re.escape(sys.base_prefix)), "<python>"),
    (re.compile(r"(https?|redis)://(127\.0\.0\.1|localhost|\[::1\]):\d+"), r"\1://\2:<port>"),
    (re.compile(r"(?<![\w/])(/tmp|/var/folders|/private/var)/[^\s'\",)\]]*"), "<path>"),
    (re.compile(re.escape(tempfile.gettempdir()) + r"/[^\s'\",)\]]*"), "<path>"),
    (re.compile(r"\b0x[0-9a-f]{6,}\b"), "0x<addr>"),
    (re.compile(r"\b\d+(\.\d+)? ?(s|ms|µs|seconds)\b"), "<time>"),
    (re.compile(r"process \[?\d+\]?"), "process <pid>"),
    (re.compile(r"(probed: \S+ at )\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"), r"\1<wall clock>"),
    (re.compile(r"[ \t]+$", re.M), ""),
)


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes (IPython colours its tracebacks)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def normalise(text: str) -> str:
    """Text with timings, temporary paths, loopback ports and addresses made neutral.

    >>> normalise("20 calls at http://127.0.0.1:43151/v1 in 0.8 s, dir /tmp/abc-1/x")
    '20 calls at http://127.0.0.1:<port>/v1 in <time>, dir <path>'
    """
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    return text.strip("\n")


def _output_texts(outputs: list[Any]) -> list[str]:
    """A code cell's outputs as texts: consecutive stream chunks of one stream merged."""
    texts: list[str] = []
    last_stream: str | None = None
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            name = out.get("name", "stdout")
            if last_stream == name:
                texts[-1] += out.get("text", "")
            else:
                texts.append(f"[{name}] " + out.get("text", ""))
            last_stream = name
            continue
        last_stream = None
        if kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            images = sorted(k for k in data if k.startswith("image/"))
            texts.append(f"[{kind}{' ' + ','.join(images) if images else ''}] "
                         + str(data.get("text/plain", "")))  # fmt: skip
        elif kind == "error":
            texts.append(f"[error] {out.get('ename')}: {out.get('evalue')}")
    return [normalise(t) for t in texts]


def cell_outputs(nb: nbformat.NotebookNode) -> list[tuple[int, list[str]]]:
    """``(cell index, normalised output texts)`` for every code cell."""
    return [
        (i, _output_texts(cell.get("outputs", [])))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
    ]


def drift(stored: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
    """Where a fresh run's outputs differ from the stored ones, cell by cell (empty: none)."""
    problems = []
    for (i, old), (_j, new) in zip(cell_outputs(stored), cell_outputs(fresh), strict=True):
        if old != new:
            problems.append(
                f"cell {i}:\n--- stored\n" + "\n".join(old) + "\n+++ fresh run\n" + "\n".join(new)
            )
    return problems


def missing_requirements(nb: nbformat.NotebookNode) -> list[str]:
    """Executables the notebook says it needs that are not on ``PATH``."""
    needed = nb.metadata.get(REQUIRES_KEY, [])
    return [name for name in needed if shutil.which(name) is None]


def kernel_manager(root: Path) -> KernelManager:
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
    common = {
        "kernel_name": KERNEL_NAME,
        "kernel_spec_manager": specs,
        "connection_file": str(root / "kernel-connection.json"),  # not one more file in /tmp
    }
    if os.name == "posix" and len(str(ipc)) < IPC_PATH_LIMIT:
        # Unix sockets in the temp dir rather than TCP: no port, nothing on the network.
        return KernelManager(**common, transport="ipc", ip=str(ipc))
    return KernelManager(**common)  # TCP on loopback


def execute(path: Path, root: Path) -> nbformat.NotebookNode:
    """Run a copy of the notebook in ``root/work``; returns the executed notebook.

    Raises:
        nbclient.exceptions.CellExecutionError: when a cell fails.
    """
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / path.name
    shutil.copyfile(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb,
        km=kernel_manager(root),
        timeout=CELL_TIMEOUT,
        record_timing=False,
        resources={"metadata": {"path": str(work)}},
    )
    tmp = root / "tmp"  # the notebooks' own temporary dirs (state, ledger) go with ``root``
    tmp.mkdir(exist_ok=True)
    client.execute(env={**os.environ, "TMPDIR": str(tmp)})
    return nb
