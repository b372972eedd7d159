"""The metrics M1 to M8, measured for all systems at one N with their samples interleaved.

The machine is shared and noisy, so the systems of one N run side by side (idle ones cost
next to nothing, see M7) and take turns: one cell on hpckernel, one on ipyparallel, one on
the reference ipykernel, again. A ratio then compares samples taken in the same seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

from .systems import ARRAY_BYTES, FLOOD_CODE, SYSTEMS, Cell, System

T = TypeVar("T")
#: name → a started system
Group = dict[str, System]
#: name → (rank pids, hub/controller pids)
Pids = dict[str, tuple[list[int], list[int]]]


def stats(samples: list[float]) -> dict[str, Any]:
    return {"samples": samples, "median": float(np.median(samples)),
            "p95": float(np.percentile(samples, 95))}


#: Table columns of one M1 result (``m1_row``), after the columns that name it.
M1_COLUMNS = "median ms | p95 ms | hub CPU ms/cell | rank CPU ms/cell |"


def m1_row(names: list[str], e: dict[str, Any]) -> str:
    """One markdown row of an M1 result of ``cells`` (fanin.py, mpis.py)."""
    head = "".join(f"| {name} " for name in names)
    if "error" in e:
        return f"{head}| failed: {e['error'][:80]} |"
    return (f"{head}| {e['median'] * 1e3:.1f} | {e['p95'] * 1e3:.1f} | "
            f"{e['hub_cpu_ms_per_cell']:.1f} | {e['rank_cpu_ms_per_cell']:.2f} |")


def summary(got: dict[str, Any]) -> dict[str, Any]:
    """A result of ``cells`` without its samples, as the small result files keep it."""
    return {k: v for k, v in got.items() if k != "samples"}


def save(name: str, result: dict[str, Any], table: str) -> None:
    """Write ``results/<name>.json`` and print the result's table."""
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            out[pid] = float("nan")
    return out


def rotate(group: Group, rounds: int, fn: Callable[[System], T]
           ) -> tuple[dict[str, list[T]], dict[str, str]]:
    """``fn`` on each system in turn for ``rounds`` rounds. A system that fails leaves the
    rotation; its error is returned instead of samples."""
    got: dict[str, list[T]] = {name: [] for name in group}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for name, system in group.items():
            if name in errors:
                continue
            try:
                got[name].append(fn(system))
            except Exception as e:  # a benchmark reports what broke and goes on
                errors[name] = f"{type(e).__name__}: {e}"
                print(f"    {name} failed: {errors[name]}", flush=True)
    return got, errors


def cells(group: Group, code: str, reps: int, pids: Pids) -> dict[str, dict[str, Any]]:
    """M1 (``pass``: reply and idle) or M2 (``print(rank)``: last output) of every system;
    with the CPU that each system's hub and ranks used per cell."""
    rotate(group, 1, lambda s: s.cell(code))  # warm-up
    every = [p for ranks, hubs in pids.values() for p in ranks + hubs]
    before = cpu_seconds(every)
    got, errors = rotate(group, reps, lambda s: s.cell(code))
    after = cpu_seconds(every)
    out: dict[str, dict[str, Any]] = {name: {"error": e} for name, e in errors.items()}
    for name, done in got.items():
        if name in errors:
            continue
        ranks, hubs = pids[name]
        timing = [c.seconds if code == "pass" else c.last_output for c in done]
        out[name] = {
            **stats(timing),
            "hub_cpu_ms_per_cell": sum(after[p] - before[p] for p in hubs) / reps * 1e3,
            "rank_cpu_ms_per_cell": sum(after[p] - before[p] for p in ranks)
            / max(1, len(ranks)) / reps * 1e3}
        if code != "pass":
            out[name]["complete"] = all(group[name].print_complete(c.text) for c in done)
    return out


def arrays(group: Group, kind: str, reps: int) -> dict[str, dict[str, Any]]:
    """M4 (``push``) or M5 (``pull``) of the systems that have ranks to move arrays to."""
    movers = {name: s for name, s in group.items() if getattr(s, kind)() is not None}
    got, errors = rotate(movers, reps, lambda s: getattr(s, kind)())
    out: dict[str, dict[str, Any]] = {name: {"error": e} for name, e in errors.items()}
    for name, times in got.items():
        if name in errors:
            continue
        out[name] = {**stats([t[0] for t in times]), "roundtrip": [t[1] for t in times],
                     "MB_per_s": movers[name].n * ARRAY_BYTES
                     / float(np.median([t[0] for t in times])) / 1e6}
    return out


def idle(pids: Pids, seconds: float) -> dict[str, dict[str, Any]]:
    """M7: CPU % of every idle rank and hub, all systems in the same window."""
    every = [p for ranks, hubs in pids.values() for p in ranks + hubs]
    before = cpu_seconds(every)
    time.sleep(seconds)
    after = cpu_seconds(every)
    out = {}
    for name, (ranks, hubs) in pids.items():
        per_rank = [(after[p] - before[p]) / seconds * 100 for p in ranks]
        out[name] = {"per_rank_pct": per_rank, "mean": float(np.mean(per_rank)),
                     "max": float(np.max(per_rank)),
                     "hub_pct": [(after[p] - before[p]) / seconds * 100 for p in hubs]}
    return out


def flood(system: System) -> dict[str, Any]:
    """M3: each rank prints 10 MB; what arrived, what was dropped, and with what notice."""
    cell = system.cell(FLOOD_CODE, timeout=900)
    check = system.flood_check(cell.text)
    return {**check, "seconds": cell.seconds, "status": cell.status,
            "delivered_MB_per_s": check["delivered"] / cell.seconds / 1e6}


def starts(names: list[str], n: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    """M6: fresh starts (and stops) of each system in turn."""
    def once(name: str) -> dict[str, float]:
        system = SYSTEMS[name](n)
        try:
            return system.start()
        finally:
            system.stop()

    out: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            try:
                out[name].append(once(name))
            except Exception as e:
                print(f"    {name} start failed: {type(e).__name__}: {e}", flush=True)
    return out


def single(system: System, code: str, reps: int) -> list[Cell]:
    """``reps`` cells on one system, after one warm-up (for benchmarks.whatif)."""
    system.cell(code)
    return [system.cell(code) for _ in range(reps)]
