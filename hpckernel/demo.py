"""``hpckernel demo``: run the example notebook headless on local MPI ranks with nbclient."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .kernelspec import write_kernel_spec
from .resources import template_dir

DEMO_KERNEL = "hpckernel-demo"


def cell_text(cell: Any) -> str:
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
    source = Path(notebook) if notebook else template_dir("examples") / "mpi_demo.ipynb"
    target = Path(output) if output else Path.cwd() / f"{source.stem}.out.ipynb"
    if not source.is_file():
        print(f"hpckernel demo: no notebook at {source}", file=sys.stderr)
        return 2
    nb = nbformat.read(source, as_version=4)
    with tempfile.TemporaryDirectory() as kernels:
        write_kernel_spec(Path(kernels) / DEMO_KERNEL, ranks=ranks)
        km = KernelManager(kernel_name=DEMO_KERNEL, transport_encryption="auto",
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
        client = NotebookClient(nb, km=km, timeout=timeout, resources={
            "metadata": {"path": str(source.parent)}})
        print(f"Running {source.name} on {ranks} local MPI ranks...", flush=True)
        t0 = time.monotonic()
        failed = None
        try:
            client.execute()
        except CellExecutionError as e:
            failed = e
        finally:
            km.shutdown_kernel()  # nbclient leaves a manager it was given running
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count = cell.get("execution_count") or " "
        print(f"\nIn [{count}]: " + cell.source.replace("\n", "\n         "))
        text = cell_text(cell)
        if text:
            print(text.rstrip("\n"))
    nbformat.write(nb, target)
    print(f"\nExecuted notebook written to {target} ({time.monotonic() - t0:.1f} s)")
    if failed is not None:
        print(f"A cell failed:\n{failed}", file=sys.stderr)
        return 1
    return 0
