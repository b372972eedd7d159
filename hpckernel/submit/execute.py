"""Running a whole notebook headless: nbclient on a hub kernel, outputs and provenance kept.

In a Slurm job (``python -m hpckernel.submit.execute -``, the settings as JSON on stdin)
the hub starts its ranks with ``srun`` across the allocation; with ``--local`` it runs here,
on ranks started by ``mpiexec``. Either way the executed notebook is written — also when a
cell fails, so that the error can be read in it — and each cell keeps its provenance record.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from ..kernelspec import write_kernel_spec
from ..plane.private import make_private_dir
from ..provenance import keep_in_cell
from .spec import RunError, RunSpec, now, prepare

KERNEL_NAME = "hpckernel-run"


def _hub_options(spec: RunSpec) -> tuple[int, list[str]]:
    """Ranks and hub options: in a Slurm job, srun's ranks on every node of it."""
    if spec.local:
        return spec.ranks, []
    ranks = int(os.environ.get("SLURM_NTASKS") or spec.size)
    job_root = Path.home() / ".hpckernel" / "jobs"  # the compute nodes must see it
    make_private_dir(job_root)
    return ranks, ["--HubKernel.launcher_class=hpckernel.hub.launch.SrunLauncher",
                   "--HubKernel.plane_ip=auto", f"--HubKernel.job_dir_parent={job_root}"]


def _progress(cell: Any, cell_index: int, execute_reply: dict[str, Any] | None = None,
              **_: Any) -> None:
    keep_in_cell(cell, execute_reply)
    status = (execute_reply or {}).get("content", {}).get("status", "?")
    first = next((s for s in cell.source.splitlines() if s.strip()), "")[:60]
    print(f"[hpckernel] cell {cell_index + 1}: {status}: {first}", flush=True)


async def _ranks_ready(client: NotebookClient) -> None:
    """Start the ranks before the first cell (nbclient's ``on_notebook_start``), so that
    the wait does not show in the first cell's output."""
    kc: Any = client.kc  # blocking or async, depending on the kernel manager
    msg_id = await ensure_async(kc.execute("pass", silent=True, store_history=False))
    while True:
        reply = await ensure_async(kc.get_shell_msg(timeout=600))
        if reply["parent_header"].get("msg_id") == msg_id:
            return  # a failed start shows in the first cell, as the hub's error


def run(spec: RunSpec) -> int:
    """Execute the notebook of ``spec``; write the executed notebook; 0 if every cell ran."""
    nb = prepare(spec)
    source = Path(spec.notebook)
    target = spec.output_path()
    ranks, options = _hub_options(spec)
    meta: dict[str, Any] = {"run_id": spec.run_id, "source": str(source),
                            "parameters": spec.parameters, "ranks": ranks,
                            "started": now(), "status": "running"}
    print(f"[hpckernel] running {source} on {ranks} MPI ranks "
          f"({'local' if spec.local else 'Slurm job ' + spec.run_id})", flush=True)
    t0 = time.monotonic()
    failure: Exception | None = None
    with tempfile.TemporaryDirectory() as kernels:
        write_kernel_spec(Path(kernels) / KERNEL_NAME, ranks=ranks, extra=options)
        # CurveZMQ on the channels: other users of the node must not read the outputs.
        km = KernelManager(kernel_name=KERNEL_NAME, transport_encryption="auto",
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
        client = NotebookClient(nb, km=km, timeout=spec.timeout, startup_timeout=300,
                                on_cell_executed=_progress,
                                resources={"metadata": {"path": str(source.parent)}})
        client.on_notebook_start = lambda **_: _ranks_ready(client)
        try:
            # JPY_SESSION_NAME: the hub's provenance log goes beside the source notebook.
            client.execute(env={**os.environ, "JPY_SESSION_NAME": str(source)})
        except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as e:
            failure = e
        finally:
            if km.has_kernel:
                km.shutdown_kernel()
    meta.update(ended=now(), seconds=round(time.monotonic() - t0, 1),
                status="failed" if failure else "ok",
                error=_first_lines(failure) if failure else None)
    nb.metadata["hpckernel"] = {"run": meta}
    _write(nb, target)
    print(f"[hpckernel] {meta['status']} after {meta['seconds']} s; executed notebook: "
          f"{target}", flush=True)
    if failure is not None:
        print(f"[hpckernel] {meta['error']}", file=sys.stderr, flush=True)
        return 1
    return 0


def _first_lines(error: Exception, n: int = 12) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return "\n".join(lines[:n])


def _write(nb: Any, target: Path) -> None:
    """Write the notebook whole or not at all (a reader never sees half a file)."""
    tmp = target.with_name(f".{target.name}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    """``python -m hpckernel.submit.execute -``: the batch job's side; settings on stdin."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["-"]:
        print("usage: python -m hpckernel.submit.execute - < RUNSPEC.json", file=sys.stderr)
        return 2
    spec = RunSpec.from_dict(json.loads(sys.stdin.read()))
    spec.run_id = os.environ.get("SLURM_JOB_ID", spec.run_id)
    try:
        return run(spec)
    except RunError as e:  # the notebook changed or went away after submission
        print(f"hpckernel: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
