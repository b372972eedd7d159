"""M1 with node agents beside direct mode (issue 12): the same N ranks on this one node, one
kernel with ``HubKernel.fanin = direct`` and one with ``agents`` (one agent for the node),
their no-op cells taking turns (``metrics.cells``). The agents kernel's hub CPU counts its
agent's too. Writes ``results/fanin.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from . import metrics
from .systems import HpcKernel

RESULTS = Path(__file__).parent / "results"
MODES = ("direct", "agents")


def _agent_pids(hub: int) -> list[int]:
    return [p.pid for p in psutil.Process(hub).children(recursive=True)
            if "hpckernel.agent" in p.cmdline()]


def measure(n: int = 16, reps: int = 50) -> dict[str, Any]:
    group: metrics.Group = {}
    try:
        for mode in MODES:
            kernel = HpcKernel(n, env={"HPCKERNEL_FANIN": mode})
            group[mode] = kernel
            kernel.start()
            kernel.setup()
        pids = {}
        for mode, system in group.items():
            hubs = system.hub_pids()
            if mode == "agents":
                hubs = hubs + _agent_pids(hubs[0])
            pids[mode] = (system.rank_pids(), hubs)
        got = metrics.cells(group, "pass", reps, pids)
    finally:
        for system in group.values():
            system.stop()
    result = {"n": n, "reps": reps, **{mode: {k: v for k, v in got[mode].items()
                                              if k != "samples"} for mode in MODES}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fanin.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return result


def table(result: dict[str, Any]) -> str:
    rows = [f"M1 no-op cell on {result['n']} ranks of one node, {result['reps']} cells each, "
            "interleaved", "", "| fanin | median ms | p95 ms | hub CPU ms/cell | rank CPU "
            "ms/cell |", "|---|---|---|---|---|"]
    for mode in MODES:
        e = result[mode]
        if "error" in e:
            rows.append(f"| {mode} | failed: {e['error'][:80]} |")
            continue
        rows.append(f"| {mode} | {e['median'] * 1e3:.1f} | {e['p95'] * 1e3:.1f} | "
                    f"{e['hub_cpu_ms_per_cell']:.1f} | {e['rank_cpu_ms_per_cell']:.2f} |")
    return "\n".join(rows)
