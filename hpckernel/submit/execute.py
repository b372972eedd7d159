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
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from .. import notebook_run
from ..plane.private import make_private_dir
from ..provenance import keep_in_cell
from .spec import RunError, RunSpec, prepare


def _hub_options(spec: RunSpec) -> tuple[int, list[str]]:
    """Ranks and hub options: in a Slurm job, srun's ranks on every node of it."""
    if spec.local:
        return spec.ranks, []
    ranks = int(os.environ.get("SLURM_NTASKS") or spec.size)
    job_root = Path.home() / ".hpckernel" / "jobs"  # the compute nodes must see it
    make_private_dir(job_root)
    return ranks, ["--HubKernel.launcher_class=hpckernel.hub.rank_launchers.SrunLauncher",
                   "--HubKernel.plane_ip=auto", f"--HubKernel.job_dir_parent={job_root}"]


def _progress(cell: NotebookNode, cell_index: int,
              execute_reply: dict[str, Any] | None = None, **_: object) -> None:
    """nbclient's ``on_cell_executed``: keep the cell's provenance record, print a line."""
    keep_in_cell(cell, execute_reply)
    status = (execute_reply or {}).get("content", {}).get("status", "?")
    first = next((s for s in cell.source.splitlines() if s.strip()), "")[:60]
    print(f"[hpckernel] cell {cell_index + 1}: {status}: {first}", flush=True)


def run(spec: RunSpec) -> int:
    """Execute the notebook of ``spec``; write the executed notebook; 0 if every cell ran."""
    nb = prepare(spec)
    source = Path(spec.notebook)
    target = spec.output_path()
    ranks, options = _hub_options(spec)
    print(f"[hpckernel] running {source} on {ranks} MPI ranks "
          f"({'local' if spec.local else 'Slurm job ' + spec.run_id})", flush=True)
    # JPY_SESSION_NAME: the hub's provenance log goes beside the source notebook.
    outcome = notebook_run.execute(nb, source.parent, ranks=ranks, hub_options=options,
                                   timeout=spec.timeout, on_cell_executed=_progress,
                                   env={**os.environ, "JPY_SESSION_NAME": str(source)})
    status = "failed" if outcome.error else "ok"
    nb.metadata["hpckernel"] = {"run": {
        "run_id": spec.run_id, "source": str(source), "parameters": spec.parameters,
        "ranks": ranks, "started": outcome.started, "status": status,
        "ended": outcome.ended, "seconds": outcome.seconds,
        "error": outcome.first_lines() or None}}
    notebook_run.record_papermill(nb, spec.parameter_values(), source, target, outcome)
    notebook_run.write(nb, target)
    print(f"[hpckernel] {status} after {outcome.seconds} s; executed notebook: {target}",
          flush=True)
    if outcome.error is not None:
        print(f"[hpckernel] {outcome.first_lines()}", file=sys.stderr, flush=True)
        return 1
    return 0


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
