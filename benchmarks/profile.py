"""``python -m benchmarks.profile``: where hpckernel's time goes (evidence for README.md).

1. ``cells``: py-spy samples the hub and one rank while N ranks run no-op cells; prints the
   functions with the most samples (own and inclusive) per process.
2. ``start``: what one rank costs before it can register: CPU seconds of each start phase,
   measured in a fresh process per phase (imports, MPI init, the IPython shell).
3. ``transport``: raw ZMQ throughput of one 16 MiB message over the plane's transports.
4. ``sim``: py-spy on a hub driving N simulated ranks (benchmarks/simranks.py).

Writes benchmarks/results/profile-*.txt. Needs py-spy (the ``bench`` extra) and ptrace.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .run import RESULTS
from .systems import HpcKernel, mpich_env


def top_functions(raw: Path, limit: int = 18) -> str:
    """Summarise py-spy's collapsed stacks: (own %, inclusive %) per function."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    if not total:
        return "(no samples)\n"
    lines = [f"{total} samples; own %  / inclusive %  function (file)"]
    for frame, n in own.most_common(limit):
        lines.append(f"  own {100 * n / total:5.1f}  {frame}")
    skip = ("<module>", "run", "_run", "_bootstrap", "_bootstrap_inner", "run_forever",
            "_run_once", "start", "main", "_run_module_as_main", "_run_code")
    shown = [(f, n) for f, n in incl.most_common(limit * 3) if f.split(" (")[0] not in skip]
    for frame, n in shown[:limit]:
        lines.append(f"  incl {100 * n / total:5.1f}  {frame}")
    return "\n".join(lines) + "\n"


def _keep(tmp: Path, name: str) -> None:
    """Keep py-spy's raw stacks in benchmarks/results/logs/ (not committed)."""
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for raw in tmp.glob("*.txt"):
        shutil.copy(raw, logs / f"{name}-{raw.name}")


def spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "-p", str(pid), "-d", str(int(seconds)),
                             "-r", "250", "-f", "raw", "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_cells(n: int, code: str, seconds: float) -> str:
    kernel = HpcKernel(n)
    tmp = Path(tempfile.mkdtemp(prefix="bench-prof-"))
    try:
        kernel.start()
        kernel.setup()
        hub, rank0 = kernel.kernel_pid, kernel.rank_pids()[0]
        spies = [spy(hub, seconds, tmp / "hub.txt"), spy(rank0, seconds, tmp / "rank.txt")]
        time.sleep(1.0)  # py-spy attaches
        count, deadline = 0, time.monotonic() + seconds - 1.5
        t0 = time.perf_counter()
        while time.monotonic() < deadline:
            kernel.cell(code)
            count += 1
        wall = (time.perf_counter() - t0) / count
        for p in spies:
            p.wait(timeout=60)
        _keep(tmp, f"cells-{n}")
        return (f"# {count} cells {code!r} on {n} ranks, {wall * 1e3:.1f} ms each\n"
                f"## hub (pid {hub})\n{top_functions(tmp / 'hub.txt')}"
                f"## rank 0 (pid {rank0})\n{top_functions(tmp / 'rank.txt')}")
    finally:
        kernel.stop()
        shutil.rmtree(tmp, ignore_errors=True)


START_PHASES = {
    "python -c pass": "pass",
    "import zmq, cloudpickle, psutil": "import zmq, cloudpickle, psutil",
    "+ from mpi4py import MPI (init)": "import zmq, cloudpickle, psutil\nfrom mpi4py import MPI",
    "+ import IPython InteractiveShell": (
        "import zmq, cloudpickle, psutil\nfrom mpi4py import MPI\n"
        "from IPython.core.interactiveshell import InteractiveShell"),
    "+ RankShell.instance() (hpckernel.worker)": (
        "import zmq, cloudpickle, psutil\nfrom mpi4py import MPI\n"
        "from hpckernel.worker.shell import RankShell\nRankShell.instance()"),
}


def profile_start(repeat: int = 5) -> str:
    """CPU seconds (user+sys, median of ``repeat``) of each cumulative start phase."""
    lines = ["# CPU seconds of one rank process up to each phase (median of "
             f"{repeat}; fresh process each, no mpiexec: MPI singleton init)"]
    env = {**os.environ, "IPYTHONDIR": tempfile.mkdtemp(prefix="bench-ipy-")}
    for label, code in START_PHASES.items():
        times = []
        for _ in range(repeat):
            before = os.times()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            after = os.times()
            times.append(after.children_user + after.children_system
                         - before.children_user - before.children_system)
        times.sort()
        lines.append(f"  {times[len(times) // 2]:6.3f} s  {label}")
    return "\n".join(lines) + "\n"


TRANSPORT = """
import sys, time, threading, zmq, numpy as np
url, size, bufsize = sys.argv[1], 16 * 2**20, int(sys.argv[2])
ctx = zmq.Context()
a, b = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
for s in (a, b):
    if bufsize:
        s.setsockopt(zmq.SNDBUF, bufsize); s.setsockopt(zmq.RCVBUF, bufsize)
if url.startswith("tcp"):
    url = f"tcp://127.0.0.1:{a.bind_to_random_port('tcp://127.0.0.1')}"
else:
    a.bind(url)
b.setsockopt(zmq.IDENTITY, b"0"); b.connect(url)
b.send(b"hi"); a.recv_multipart()
data = np.ones(size // 8)
times = []
for _ in range(20):
    t = time.perf_counter()
    b.send(data, copy=False)
    a.recv_multipart(copy=False)
    times.append(time.perf_counter() - t)
times.sort()
print(f"{size / times[len(times) // 2] / 1e6:.0f}")
"""


def profile_transport() -> str:
    """One 16 MiB message per round, sender and receiver threads in one process (the I/O
    threads of libzmq still move the bytes through the kernel's socket)."""
    lines = ["# MB/s of 16 MiB messages, DEALER → ROUTER, median of 20"]
    tmp = tempfile.mkdtemp(prefix="bench-zmq-")
    for label, url in (("ipc", f"ipc://{tmp}/s"), ("tcp 127.0.0.1", "tcp")):
        for buf in (0, 4 * 2**20):
            out = subprocess.run([sys.executable, "-c", TRANSPORT, url, str(buf)],
                                 capture_output=True, text=True, check=True).stdout.strip()
            lines.append(f"  {out:>6} MB/s  {label}, SO_SNDBUF/RCVBUF "
                         f"{'default' if not buf else f'{buf >> 20} MiB'}")
    shutil.rmtree(tmp, ignore_errors=True)
    return "\n".join(lines) + "\n"


def profile_sim(n: int, seconds: float) -> str:
    from .simranks import REPO

    kernel = HpcKernel(n, extra=["--HubKernel.launcher_class=benchmarks.simranks.SimLauncher"],
                       env={"PYTHONPATH": str(REPO)})
    tmp = Path(tempfile.mkdtemp(prefix="bench-prof-"))
    try:
        kernel.start()
        hub = kernel.kernel_pid
        spier = spy(hub, seconds, tmp / "hub.txt")
        time.sleep(1.0)
        count, deadline = 0, time.monotonic() + seconds - 1.5
        while time.monotonic() < deadline:
            kernel.cell("pass")
            count += 1
        spier.wait(timeout=60)
        _keep(tmp, f"sim-{n}")
        return (f"# hub with {n} simulated ranks, {count} no-op cells\n"
                f"{top_functions(tmp / 'hub.txt')}")
    finally:
        kernel.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("what", nargs="*", help="of cells, start, transport, sim (default: all)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sim-ranks", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--tag", default="", help="suffix of the profile-cells file name")
    parser.add_argument("--code", default="pass", help="the cell that ``cells`` repeats; "
                        "e.g. '%%%%local\\nranks.pull(\"b\")'")
    args = parser.parse_args(argv)
    args.what = args.what or ["cells", "start", "transport", "sim"]
    if set(args.what) - {"cells", "start", "transport", "sim"}:
        parser.error("choose from cells, start, transport, sim")
    mpich_env()
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
    RESULTS.mkdir(exist_ok=True)
    jobs: dict[str, list[tuple[str, Callable[[], str]]]] = {
        "cells": [(f"cells-{n}{args.tag}", lambda n=n: profile_cells(n, args.code, args.seconds))
                  for n in args.ranks],
        "start": [("start", profile_start)],
        "transport": [("transport", profile_transport)],
        "sim": [(f"sim-{args.sim_ranks}", lambda: profile_sim(args.sim_ranks, args.seconds))],
    }
    for what in args.what:
        for name, job in jobs[what]:
            text = job()
            print(text, flush=True)
            (RESULTS / f"profile-{name}.txt").write_text(text)


if __name__ == "__main__":
    main()
