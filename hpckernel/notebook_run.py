"""Running a notebook headless with nbclient: the one path of ``hpckernel demo``,
``hpckernel submit`` and the notebook steps of workflows.

The kernel is a hub with ``ranks`` local ranks (or, with hub options, srun's ranks of a
Slurm allocation) from a kernelspec made for the run, or an installed kernel by name.
Either way the kernel manager offers CurveZMQ (``transport_encryption="auto"``), so
kernelspecs that support it get encrypted channels. A failing cell, a timeout or a dead
kernel end the run with the error kept, never raised: the caller still writes the
notebook, so the failure can be read in it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from .kernelspec import write_kernel_spec
from .timestamps import now

HUB_KERNEL = "hpckernel-run"
#: nbclient's ``on_cell_executed`` hook: called with cell=, cell_index=, execute_reply=.
CellHook = Callable[..., object]


@dataclass
class Outcome:
    """How a run went: when, how long, and the error that stopped it (None: every cell ran)."""

    started: str
    ended: str
    seconds: float
    error: Exception | None

    def first_lines(self, n: int = 12) -> str:
        """The error's first lines, for logs and records."""
        if self.error is None:
            return ""
        lines = str(self.error).strip().splitlines() or [type(self.error).__name__]
        return "\n".join(lines[:n])


async def _ranks_ready(client: NotebookClient) -> None:
    """Start the ranks before the first cell (nbclient's ``on_notebook_start``), so that
    the wait does not show in the first cell's output."""
    kc: Any = client.kc  # blocking or async, depending on the kernel manager
    msg_id = await ensure_async(kc.execute("pass", silent=True, store_history=False))
    while True:
        reply = await ensure_async(kc.get_shell_msg(timeout=600))
        if reply["parent_header"].get("msg_id") == msg_id:
            return  # a failed start shows in the first cell, as the hub's error


def execute(nb: NotebookNode, cwd: Path, *, kernel: str | None = None, ranks: int = 4,
            hub_options: Sequence[str] = (), timeout: float | None = None,
            env: Mapping[str, str] | None = None, on_cell_executed: CellHook | None = None
            ) -> Outcome:
    """Run every cell of ``nb`` (in place) with ``cwd`` as the working directory: on a hub
    kernel with ``ranks`` ranks and ``hub_options``, or on the installed ``kernel``."""
    started, t0 = now(), time.monotonic()
    error: Exception | None = None
    with tempfile.TemporaryDirectory() as kernels:
        if kernel is None:
            write_kernel_spec(Path(kernels) / HUB_KERNEL, ranks=ranks, extra=list(hub_options))
            ksm = KernelSpecManager(kernel_dirs=[kernels])
        else:
            ksm = KernelSpecManager()
        km = KernelManager(kernel_name=kernel or HUB_KERNEL, kernel_spec_manager=ksm,
                           transport_encryption="auto")
        # A kernel on a busy compute node may take longer than nbclient's 60 s to start.
        client = NotebookClient(nb, km=km, timeout=timeout, startup_timeout=300,
                                on_cell_executed=on_cell_executed,
                                resources={"metadata": {"path": str(cwd)}})
        if kernel is None:
            client.on_notebook_start = lambda **_: _ranks_ready(client)
        try:
            client.execute(**({"env": dict(env)} if env is not None else {}))
        except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as e:
            error = e
        finally:
            if km.has_kernel:  # nbclient leaves a manager it was given running
                km.shutdown_kernel()
    return Outcome(started, now(), round(time.monotonic() - t0, 1), error)


def record_papermill(nb: NotebookNode, parameters: Mapping[str, object], source: Path,
                     target: Path,
                     outcome: Outcome) -> None:
    """Put the run where papermill-aware tools (scrapbook, papermill's readers) look:
    ``metadata.papermill``, parameters first."""
    nb.metadata["papermill"] = {
        "parameters": json.loads(json.dumps(dict(parameters), default=repr)),
        "input_path": str(source), "output_path": str(target),
        "start_time": outcome.started, "end_time": outcome.ended,
        "duration": outcome.seconds, "exception": outcome.error is not None}


def write(nb: NotebookNode, target: Path) -> None:
    """Write the notebook whole or not at all (a reader never sees half a file)."""
    tmp = target.with_name(f".{target.name}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)
