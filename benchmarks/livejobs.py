"""What a live batch job costs the program (issue 18): a real mpi4py halo-exchange loop on 4
ranks (``tests/live/halo.py``: ``safepoint()`` every step, ``publish`` every 10), run
plainly and under ``python -m hpckernel.live``, unattached and while a notebook (this
process) has a live plot open (values pulled every 0.5 s) and peeks once a second. Runs
take turns; each figure is the median of ``--repeat`` runs of the loop's own time (the
slowest rank's, without start-up). Also the cost of one ``safepoint()`` with nothing
queued, in a process that runs live.

usage: python -m benchmarks.livejobs [--steps N] [--cells N] [--repeat R]
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

HALO = Path(__file__).parents[1] / "tests" / "live" / "halo.py"
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
            "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
SAFEPOINT = """
import time
from hpckernel.live import safepoints as sp
sp.install(sp.Safepoints(lambda cell, frame: None))
safepoint = sp.safepoint
n = 1_000_000
t = time.perf_counter()
for _ in range(n):
    safepoint()
print((time.perf_counter() - t) / n * 1e6)
"""


def run(mode: str, steps: int, cells: int, root: Path, ranks: int) -> float:
    """The loop's seconds of one run: ``plain``, ``live`` (nobody attached) or ``watched``."""
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    live = [] if mode == "plain" else ["-m", "hpckernel.live"]
    job = f"bench-{mode}-{time.monotonic_ns()}"
    env = {**os.environ, **THROTTLE, "HPCKERNEL_JOB_ROOT": str(root),
           "HPCKERNEL_LIVE_ID": job}
    proc = subprocess.Popen([mpiexec, "-n", str(ranks), sys.executable, *live, str(HALO),
                             str(steps), "0", str(cells)], stdout=subprocess.PIPE, text=True,
                            env=env)
    stop = threading.Event()
    watcher = None
    if mode == "watched":
        watcher = threading.Thread(target=_watch, args=(job, root, stop), daemon=True)
        watcher.start()
    out, _ = proc.communicate(timeout=600)
    stop.set()
    if watcher is not None:
        watcher.join(30)
    match = re.search(r"seconds (\S+)", out)
    if proc.returncode or not match:
        raise RuntimeError(f"{mode} run failed ({proc.returncode}): {out}")
    return float(match[1])


def _watch(job: str, root: Path, stop: threading.Event) -> None:
    """A notebook with a live plot of ``energy`` open that peeks once a second."""
    from hpckernel.live.client import JobEnded, attach
    from hpckernel.live.reach import NotLiveError

    while not stop.is_set():
        try:
            handle = attach(job, job_root=str(root))
            break
        except NotLiveError:
            time.sleep(0.05)
    else:
        return
    handle._watched.add("energy")  # what an open live plot does: pull every 0.5 s
    try:
        while not stop.wait(1.0):
            handle.peek("step")
    except (JobEnded, TimeoutError):
        pass
    handle.detach()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.livejobs")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=4)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"plain": [], "live": [], "watched": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jobs"
        for _ in range(args.repeat):
            for mode in times:
                times[mode].append(run(mode, args.steps, args.cells, root, args.ranks))
    cost = [float(subprocess.run([sys.executable, "-c", SAFEPOINT], capture_output=True,
                                 text=True, check=True).stdout) for _ in range(3)]
    plain = statistics.median(times["plain"])
    report = {"steps": args.steps, "cells": args.cells, "ranks": args.ranks, "times": times,
              "median": {m: statistics.median(t) for m, t in times.items()},
              "overhead_pct": {m: round((statistics.median(t) / plain - 1) * 100, 2)
                               for m, t in times.items()},
              "safepoint_us": round(min(cost), 3)}
    out = Path(__file__).with_name("results") / "livejobs.json"
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("median", "overhead_pct", "safepoint_us")}))


if __name__ == "__main__":
    main()
