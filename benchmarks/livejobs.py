"""What a live batch job costs the program (issue 18): a real mpi4py halo-exchange loop on 4
ranks (``tests/live/halo.py``: ``safepoint()`` every step, ``publish`` every 10), run
plainly and under ``python -m hpckernel.live``, unattached and while a notebook (this
process) has a live plot open (values pulled every second) and peeks once a second.

The three runs of a round go one after another, their order turning each round (ABC, BCA,
CAB, …), so that a quieter or busier stretch of the machine falls on each alike; each run's
figure is the loop's time from step ``--warmup`` on (the slowest rank's: the start of the
program, and of a live job's endpoint and agents beside it, left out). Reported per mode:
the median and the spread (min-max) of the runs, and the overhead against plain as the
median of each round's ratio (paired: a round's runs share the machine's state). Also the
cost of one ``safepoint()`` with nothing queued, in a process that runs live.

On a shared, oversubscribed machine wall-clock differences of a few percent drown in noise,
so each run also counts CPU time, sampled from ``/proc`` every 0.2 s: the program's (the
ranks' main threads), the live machinery's (the ranks' other threads, the node agent, the
endpoint) and, watched, the notebook's (this process). The machinery's CPU as a share of
the program's is what the program loses at most on a node whose cores it fills.

Run it alone on the machine (``flock /tmp/hpck-cpu.lock``, ``uptime`` first).

usage: python -m benchmarks.livejobs [--steps N] [--cells N] [--repeat R] [--warmup W]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HALO = Path(__file__).parents[1] / "tests" / "live" / "halo.py"
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
            "MPIR_CVAR_POLLS_BEFORE_YIELD": "1",
            # One thread per rank, as MPI programs are run: BLAS threads spinning after the
            # program's dot products took more CPU than the program on 2 cores, and would
            # count as the machinery's below (every thread of a rank but its main one).
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MODES = ("plain", "live", "watched")
SAFEPOINT = """
import time
from hpckernel.live import safepoints as sp
sp.install(sp.Safepoints(lambda cell, frame, stopped: None))
safepoint = sp.safepoint
n = 1_000_000
t = time.perf_counter()
for _ in range(n):
    safepoint()
print((time.perf_counter() - t) / n * 1e6)
"""


class CpuSampler(threading.Thread):
    """Samples the CPU time of a run's processes and threads every 0.2 s until stopped: the
    ranks' main threads (``program``), their other threads and the agents and endpoint
    (``machinery``). :meth:`window` gives what each used in the last seconds of the run
    (the measured loop's; the start of the machinery beside the program's own start left
    out, as the loop's time leaves it out)."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.seen: dict[tuple[int, int], tuple[str, float]] = {}
        self.samples: list[tuple[float, float, float]] = []  # (time, program, machinery)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        try:
            procs = psutil.Process(self.root_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                line = " ".join(proc.cmdline())
                threads = proc.threads()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rank = str(HALO) in line
            if not rank and "hpckernel" not in line:
                continue  # mpiexec's proxy
            for thread in threads:
                kind = "program" if rank and thread.id == proc.pid else "machinery"
                self.seen[proc.pid, thread.id] = (kind, thread.user_time + thread.system_time)
        totals = {"program": 0.0, "machinery": 0.0}
        for kind, seconds in self.seen.values():
            totals[kind] += seconds
        self.samples.append((time.monotonic(), totals["program"], totals["machinery"]))

    def window(self, seconds: float) -> dict[str, float]:
        """CPU seconds of the program and the machinery over the run's last ``seconds``."""
        end = self.samples[-1]
        start = next((s for s in reversed(self.samples) if s[0] <= end[0] - seconds),
                     self.samples[0])
        return {"program": end[1] - start[1], "machinery": end[2] - start[2]}


def run(mode: str, steps: int, cells: int, root: Path, ranks: int, warmup: int
        ) -> tuple[float, dict[str, float]]:
    """The loop's seconds of one run (``plain``, ``live``: nobody attached, ``watched``),
    and the CPU seconds it took: program, machinery and (watched) notebook."""
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    live = [] if mode == "plain" else ["-m", "hpckernel.live"]
    job = f"bench-{mode}-{time.monotonic_ns()}"
    env = {**os.environ, **THROTTLE, "HPCKERNEL_JOB_ROOT": str(root),
           "HPCKERNEL_LIVE_ID": job, "HALO_WARMUP": str(warmup)}
    proc = subprocess.Popen([mpiexec, "-n", str(ranks), sys.executable, *live, str(HALO),
                             str(steps), "0", str(cells)], stdout=subprocess.PIPE, text=True,
                            env=env)
    sampler = CpuSampler(proc.pid)
    sampler.start()
    notebook = psutil.Process().cpu_times()
    stop = threading.Event()
    watcher = None
    if mode == "watched":
        watcher = threading.Thread(target=_watch, args=(job, root, stop), daemon=True)
        watcher.start()
    out, _ = proc.communicate(timeout=600)
    sampler.stop.set()
    stop.set()
    if watcher is not None:
        watcher.join(30)
    after = psutil.Process().cpu_times()
    match = re.search(r"seconds (\S+)", out)
    if proc.returncode or not match:
        raise RuntimeError(f"{mode} run failed ({proc.returncode}): {out}")
    cpu = sampler.window(float(match[1]))
    cpu["notebook"] = (after.user + after.system - notebook.user - notebook.system
                       if mode == "watched" else 0.0)
    return float(match[1]), cpu


def _watch(job: str, root: Path, stop: threading.Event) -> None:
    """A notebook with a live plot of ``energy`` open that peeks once a second."""
    from hpckernel.hub.requests import RemoteError
    from hpckernel.live.client import attach
    from hpckernel.live.errors import LiveError

    while not stop.is_set():
        try:
            handle = attach(job, job_root=str(root))
            break
        except LiveError:
            time.sleep(0.05)
    else:
        return
    # What an open live plot does: listen to the name (pulled every second meanwhile).
    handle.pool.live.listen("energy", lambda name, series: None)
    try:
        while not stop.wait(1.0):
            handle.peek("step")
    except (LiveError, RemoteError, TimeoutError):
        pass
    handle.detach()


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


def main() -> None:
    import hpckernel.live.client  # noqa: F401 (imported before the runs, not during one)

    parser = argparse.ArgumentParser(prog="python -m benchmarks.livejobs")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1500)
    args = parser.parse_args()
    times: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jobs"
        for i in range(args.repeat):
            for mode in MODES[i % 3:] + MODES[:i % 3]:
                seconds, used = run(mode, args.steps, args.cells, root, args.ranks,
                                    args.warmup)
                times[mode].append(seconds)
                cpu[mode].append(used)
            load.append(os.getloadavg()[0])
    cost = [float(subprocess.run([sys.executable, "-c", SAFEPOINT], capture_output=True,
                                 text=True, check=True).stdout) for _ in range(3)]
    ratios = {m: [t / p for t, p in zip(times[m], times["plain"], strict=True)]
              for m in MODES}
    report = {"steps": args.steps, "warmup": args.warmup, "cells": args.cells,
              "ranks": args.ranks, "cpus": os.cpu_count(), "loadavg": load, "times": times,
              "seconds": {m: spread(t) for m, t in times.items()},
              "overhead_pct": {m: {k: round((v - 1) * 100, 2)
                                   for k, v in spread(r).items()} for m, r in ratios.items()},
              "cpu": cpu,
              # The machinery's (and the notebook's) CPU per run, as a share of the program's.
              "machinery_cpu_pct": {m: spread([c["machinery"] / c["program"] * 100
                                               for c in cpu[m]]) for m in MODES},
              "notebook_cpu_pct": spread([c["notebook"] / c["program"] * 100
                                          for c in cpu["watched"]]),
              "safepoint_us": round(min(cost), 3)}
    out = Path(__file__).with_name("results") / "livejobs.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("seconds", "overhead_pct", "machinery_cpu_pct",
                                             "notebook_cpu_pct", "safepoint_us", "loadavg")}))


if __name__ == "__main__":
    main()
