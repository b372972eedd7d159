"""Notebooks and command runs shared by the `hpckernel submit` tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

BIN = Path(sys.executable).parent


def write_notebook(path: Path, *cells: str, tags: dict[int, list[str]] | None = None) -> Path:
    """A notebook of code cells; ``tags`` maps a cell's index to its tags."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(src, metadata={"tags": (tags or {}).get(i, [])})
        for i, src in enumerate(cells)])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def parameterised(path: Path) -> Path:
    """Defaults in a cell tagged ``parameters``; later cells use them on the ranks and
    report where they ran."""
    return write_notebook(
        path, "import os\nprint('setup', flush=True)",
        "n = 1\nlabel = 'default'",
        "from mpi4py import MPI\ntotal = MPI.COMM_WORLD.allreduce(n * (rank + 1))\n"
        "print(label, total, os.environ.get('SLURMD_NODENAME', 'local'))",
        "%%local\nprint('hub done')", tags={1: ["parameters"]})


def hpckernel(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hpckernel"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def outputs(path: Path) -> list[str]:
    """Each code cell's stream text and errors, in cell order."""
    nb = nbformat.read(path, as_version=4)
    texts = []
    for cell in nb.cells:
        parts = []
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append(out["text"])
            elif out["output_type"] == "error":
                parts.append(f"{out['ename']}: {out['evalue']}")
        texts.append("".join(parts))
    return texts


def record(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))
