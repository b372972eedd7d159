"""M1 with node agents beside direct mode (issue 12): the same N ranks on this one node, one
kernel with ``HubKernel.fanin = direct`` and one with ``agents`` (one agent for the node),
their no-op cells taking turns (``metrics.cells``). The agents kernel's hub CPU counts its
agent's too. Writes ``results/fanin.json``."""

from __future__ import annotations

from typing import Any

import psutil

from . import metrics
from .systems import HpcKernel

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
    result = {"n": n, "reps": reps, **{mode: metrics.summary(got[mode]) for mode in MODES}}
    metrics.save("fanin", result, table(result))
    return result


def table(result: dict[str, Any]) -> str:
    rows = [f"M1 no-op cell on {result['n']} ranks of one node, {result['reps']} cells each, "
            "interleaved", "", f"| fanin | {metrics.M1_COLUMNS}", "|---|---|---|---|---|"]
    rows += [metrics.m1_row([mode], result[mode]) for mode in MODES]
    return "\n".join(rows)
