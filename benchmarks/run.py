"""``python -m benchmarks.run [--quick]``: every system, every N, one table.

Runs hpckernel, plain ipykernel and ipyparallel one after the other on this machine, prints
one table of medians, p95 and ratios from this run, and writes
``benchmarks/results/{full,quick}.json`` and ``.png``. It reports; it asserts no timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from . import report, simranks
from .systems import ARRAY_BYTES, SYSTEMS, Cell, IPyKernel, System, mpich_env

RESULTS = Path(__file__).parent / "results"


@dataclass
class Plan:
    ns: list[int]
    scale_ns: list[int]  # M1, M2 (and the start) only
    systems: list[str]
    noop_reps: int = 50
    print_reps: int = 30
    array_reps: int = 10
    interrupt_reps: int = 3
    start_reps: int = 3
    idle_seconds: float = 10.0
    sim_ns: list[int] = field(default_factory=list)
    sim_reps: int = 20


def plan_from_args(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(ns=[1, 4], scale_ns=[], systems=args.systems, noop_reps=10, print_reps=5,
                    array_reps=3, interrupt_reps=1, start_reps=1, idle_seconds=3.0)
    else:
        plan = Plan(ns=[1, 2, 4, 8, 16], scale_ns=[32, 64], systems=args.systems,
                    sim_ns=[256, 1024, 4096])
    if args.ns:
        plan.ns = args.ns
    if args.scale is not None:
        plan.scale_ns = args.scale
    if args.sim is not None:
        plan.sim_ns = args.sim
    return plan


def stats(samples: list[float]) -> dict[str, Any]:
    return {"samples": samples, "median": float(np.median(samples)),
            "p95": float(np.percentile(samples, 95))}


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            out[pid] = float("nan")
    return out


def guarded(result: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    """Run one metric; a failure is recorded, not fatal."""
    try:
        result[key] = fn()
    except Exception as e:  # a benchmark reports what broke and goes on
        result[key] = {"error": f"{type(e).__name__}: {e}"}
        print(f"    {key} failed: {type(e).__name__}: {e}", flush=True)


def measure(name: str, n: int, plan: Plan, full: bool, ref: System | None = None
            ) -> dict[str, Any]:
    """All metrics of one system at one N (only M1, M2, M6 when not ``full``). With
    ``ref`` (a running ipykernel), M1 and M2 cells alternate with the same cell on it."""
    res: dict[str, Any] = {}
    system = SYSTEMS[name](n)
    print(f"  {name} N={n}", flush=True)
    starts = []
    try:
        starts.append(system.start())
        system.setup()
        ranks, hubs = system.rank_pids(), system.hub_pids()
        res["pids"] = {"ranks": ranks, "hub": hubs}
        guarded(res, "M1", lambda: noop(system, plan.noop_reps, ranks, hubs, ref))
        guarded(res, "M2", lambda: print_rank(system, plan.print_reps, ref))
        if full:
            guarded(res, "M4", lambda: array(system, system.push, plan.array_reps))
            guarded(res, "M5", lambda: array(system, system.pull, plan.array_reps))
            guarded(res, "M7", lambda: idle_cpu(ranks, hubs, plan.idle_seconds))
            guarded(res, "M3", lambda: flood(system))
            guarded(res, "M8", lambda: stats([system.interrupt_loop()
                                              for _ in range(plan.interrupt_reps)]))
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        print(f"    failed: {res['error']}", flush=True)
    finally:
        system.stop()
    for _ in range(plan.start_reps - 1 if starts else 0):
        again = SYSTEMS[name](n)
        try:
            starts.append(again.start())
        finally:
            again.stop()
    if starts:
        res["M6"] = {**stats([s["first_cell"] for s in starts]),
                     "ready": [s["ready"] for s in starts]}
    return res


def paired(system: System, code: str, reps: int, ref: System | None
           ) -> tuple[list[Cell], dict[str, Any]]:
    """``reps`` cells on ``system``, each followed by the same cell on ``ref``."""
    system.cell(code)  # warm-up
    cells, reference = [], []
    for _ in range(reps):
        cells.append(system.cell(code))
        if ref is not None:
            cell = ref.cell(code)
            reference.append(cell.last_output if code != "pass" else cell.seconds)
    return cells, ({"ipk_paired": stats(reference)} if reference else {})


def noop(system: System, reps: int, ranks: list[int], hubs: list[int],
         ref: System | None = None) -> dict[str, Any]:
    before = cpu_seconds(ranks + hubs)
    cells, reference = paired(system, "pass", reps, ref)
    after = cpu_seconds(ranks + hubs)
    used = {pid: after[pid] - before[pid] for pid in before}
    return {**stats([c.seconds for c in cells]), **reference,
            "hub_cpu_ms_per_cell": sum(used[p] for p in hubs) / reps * 1e3,
            "rank_cpu_ms_per_cell": sum(used[p] for p in ranks) / len(ranks) / reps * 1e3}


def print_rank(system: System, reps: int, ref: System | None = None) -> dict[str, Any]:
    cells, reference = paired(system, "print(rank)", reps, ref)
    return {**stats([c.last_output for c in cells]), **reference,
            "complete": all(system.print_complete(c.text) for c in cells)}


def array(system: System, op: Callable[[], tuple[float, float] | None], reps: int
          ) -> dict[str, Any] | None:
    if op() is None:  # warm-up; None: the system has no ranks to move data to
        return None
    times = [op() for _ in range(reps)]
    api = [t[0] for t in times if t is not None]
    result = stats(api)
    result["roundtrip"] = [t[1] for t in times if t is not None]
    result["MB_per_s"] = system.n * ARRAY_BYTES / result["median"] / 1e6
    return result


def idle_cpu(ranks: list[int], hubs: list[int], seconds: float) -> dict[str, Any]:
    time.sleep(1.0)
    before = cpu_seconds(ranks + hubs)
    time.sleep(seconds)
    after = cpu_seconds(ranks + hubs)
    pct = {pid: (after[pid] - before[pid]) / seconds * 100 for pid in before}
    per_rank = [pct[p] for p in ranks]
    return {"per_rank_pct": per_rank, "mean": float(np.mean(per_rank)),
            "max": float(np.max(per_rank)), "hub_pct": [pct[p] for p in hubs]}


def flood(system: System) -> dict[str, Any]:
    from .systems import FLOOD_CODE

    cell = system.cell(FLOOD_CODE, timeout=900)
    check = system.flood_check(cell.text)
    return {**check, "seconds": cell.seconds, "status": cell.status,
            "delivered_MB_per_s": check["delivered"] / cell.seconds / 1e6}


def meta(plan: Plan) -> dict[str, Any]:
    def version(module: str) -> str:
        try:
            return str(__import__(module).__version__)
        except Exception:
            return "?"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "commit": commit,
            "versions": {m: version(m) for m in ("hpckernel", "ipykernel", "ipyparallel",
                                                 "jupyter_client", "zmq", "mpi4py")},
            "loadavg_start": os.getloadavg(), "plan": asdict(plan)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="few repetitions, N in {1, 4}, no scale or simulated runs")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--ns", type=int, nargs="+", help="rank counts for all metrics")
    parser.add_argument("--scale", type=int, nargs="*",
                        help="rank counts for M1/M2 only (default 32 64; none in --quick)")
    parser.add_argument("--sim", type=int, nargs="*",
                        help="simulated rank counts for the hub's scaling (default 256 1024 "
                        "4096; none in --quick)")
    parser.add_argument("--out", help="result name in benchmarks/results (default: full/quick)")
    args = parser.parse_args(argv)
    plan = plan_from_args(args)
    out = RESULTS / (args.out or ("quick" if args.quick else "full"))
    RESULTS.mkdir(exist_ok=True)

    mpich_env()
    # History databases, ipyparallel profiles: in a throw-away IPython directory.
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    bytecode_cache()
    data: dict[str, Any] = {"meta": meta(plan), "results": {}}
    started = time.monotonic()
    ref: System | None = None
    if "ipykernel" in plan.systems:
        ref = IPyKernel(1)  # the reference cells interleaved with every M1/M2 loop
        ref.start()
        ref.setup()
    try:
        for name in plan.systems:
            ns = [1] if name == "ipykernel" else plan.ns
            scale = [] if name == "ipykernel" else plan.scale_ns
            data["results"][name] = {}
            for n in ns + scale:
                data["results"][name][str(n)] = measure(
                    name, n, plan, full=n in ns, ref=None if name == "ipykernel" else ref)
                _save(out, data)
    finally:
        if ref is not None:
            ref.stop()
    if plan.sim_ns:
        print("  simulated ranks", flush=True)
        data["simulated"] = simranks.measure_all(plan.sim_ns, plan.sim_reps)
    data["meta"]["loadavg_end"] = os.getloadavg()
    data["meta"]["wall_seconds"] = time.monotonic() - started
    _save(out, data)
    text = report.render(data)
    print(text)
    report.plot(data, out.with_suffix(".png"))
    out.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.png')}, "
          f"{out.with_suffix('.txt')}")
    leftover = psutil.Process().children(recursive=True)
    if leftover:
        print(f"warning: processes left: {[p.pid for p in leftover]}", file=sys.stderr)


def bytecode_cache() -> None:
    """This sandbox sets PYTHONDONTWRITEBYTECODE, so every rank would compile hpckernel from
    source at each start, which no installed hpckernel does. Let Python cache bytecode, in a
    directory of its own (not in the source tree), and fill it for the common modules."""
    if not os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        return
    os.environ.setdefault("PYTHONPYCACHEPREFIX",
                          str(Path.home() / ".cache" / "hpckernel-bench" / "pycache"))
    subprocess.run([sys.executable, "-c", WARM_IMPORTS], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


WARM_IMPORTS = ("import ipykernel.kernelapp, ipyparallel, ipyparallel.engine.app, "
                "ipyparallel.controller.app, hpckernel.hub.app, hpckernel.worker.runner, "
                "numpy, mpi4py.MPI, cloudpickle, psutil, jupyter_client, matplotlib.pyplot")


def _save(out: Path, data: dict[str, Any]) -> None:
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
