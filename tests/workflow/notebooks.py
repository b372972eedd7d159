"""Small notebooks and scripts the workflow tests run as steps."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient


def analysis_notebook(path: Path) -> Path:
    """A notebook with a "parameters" cell (defaults) and a cell that uses them."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('run = "default"\nscale = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Analysis"),
        params,
        nbformat.v4.new_code_cell(
            'import os\n'
            'print(f"run {run} scale {scale} job {os.environ.get(\'SLURM_JOB_ID\')}")\n'
            'with open(f"post-{run}.txt", "w") as f:\n'
            '    f.write(str(scale))'),
    ]
    nbformat.write(nb, path)
    return path


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/bash\n{body}\n")
    return path


def execute(path: Path, timeout: float = 600) -> nbformat.NotebookNode:
    """Run a notebook with nbclient on ipykernel (`python3`) in its own directory, as
    Jupyter would; the kernel inherits this process's environment (SLURM_CONF). Raises
    CellExecutionError on the first failing cell."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, path.with_suffix(".out.ipynb"))
    return nb
