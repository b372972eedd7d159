"""``hpckernel demo``: run the example notebook headless on local MPI ranks with nbclient."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from . import notebook_run
from .resources import template_dir


def cell_text(cell: NotebookNode) -> str:
    """A code cell's outputs as the text a reader sees: streams, text/plain results, and
    errors as `ename: evalue`."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out["data"].get("text/plain", "") + "\n")
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}\n")
    return "".join(parts)


def run_demo(ranks: int, notebook: str | None, output: str | None, timeout: float) -> int:
    """``hpckernel demo``: run the example notebook on ``ranks`` local ranks; its exit code."""
    source = Path(notebook) if notebook else template_dir("examples") / "mpi_demo.ipynb"
    target = Path(output) if output else Path.cwd() / f"{source.stem}.out.ipynb"
    if not source.is_file():
        print(f"hpckernel demo: no notebook at {source}", file=sys.stderr)
        return 2
    nb = nbformat.read(source, as_version=4)
    print(f"Running {source.name} on {ranks} local MPI ranks...", flush=True)
    outcome = notebook_run.execute(nb, source.parent, ranks=ranks, timeout=timeout)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count = cell.get("execution_count") or " "
        print(f"\nIn [{count}]: " + cell.source.replace("\n", "\n         "))
        text = cell_text(cell)
        if text:
            print(text.rstrip("\n"))
    notebook_run.write(nb, target)
    print(f"\nExecuted notebook written to {target} ({outcome.seconds:.1f} s)")
    if outcome.error is not None:
        print(f"The run failed:\n{outcome.error}", file=sys.stderr)
        return 1
    return 0
