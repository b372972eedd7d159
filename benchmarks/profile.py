"""``python -m benchmarks.profile``: where hpckernel's time goes (evidence for README.md).

1. ``cells``: py-spy samples the hub and one rank while N ranks run no-op cells; prints the
   functions with the most samples (own and inclusive) per process.
2. ``start``: what one rank costs before it can register: CPU seconds of each start phase,
   measured in a fresh process per phase (imports, MPI init, the IPython shell).
3. ``transport``: raw ZMQ fan-in: K processes each send 16 MiB to one ROUTER (a pull, bare).
4. ``sim``: py-spy on a hub driving N simulated ranks (benchmarks/simranks.py).
5. ``cost``: the hub's own CPU per no-op cell at N=1 against ipykernel's whole process,
   cell by cell in turn (issue 12's fixed cost: at most 2 ms beyond ipykernel's).

Writes benchmarks/results/profile-*.txt. Needs py-spy (the ``bench`` extra) and ptrace.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import systems
from .metrics import cpu_seconds
from .run import RESULTS, bytecode_cache, snapshot
from .systems import HpcKernel, IPyKernel, mpich_env

#: sample only the thread holding the GIL (CPU attribution), set by --gil
GIL_ONLY = False


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
    gil = ["--gil"] if GIL_ONLY else []
    return subprocess.Popen([py_spy, "record", "-p", str(pid), "-d", str(int(seconds)),
                             "-r", "250", *gil, "-f", "raw", "-o", str(out), "--nonblocking"],
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


_BASE = "import zmq, cloudpickle, psutil\nfrom mpi4py import MPI\n"
START_PHASES = {
    "python -c pass": "pass",
    "+ import zmq": "import zmq",
    "+ import cloudpickle": "import zmq, cloudpickle",
    "+ import psutil": "import zmq, cloudpickle, psutil",
    "+ from mpi4py import MPI (MPI_Init, singleton)": _BASE,
    "+ import IPython's InteractiveShell": (
        _BASE + "from IPython.core.interactiveshell import InteractiveShell"),
    "+ import hpckernel.worker.runner (all of a rank's imports)": (
        _BASE + "import hpckernel.worker.runner"),
    "+ RankShell.instance() — what a rank runs": (
        _BASE + "import hpckernel.worker.runner\n"
        "from hpckernel.worker.shell import RankShell\nRankShell.instance()"),
    "  (instead: RankShell.instance() with HistoryManager.enabled=False)": (
        _BASE + "import hpckernel.worker.runner\n"
        "from hpckernel.worker.shell import RankShell\nfrom traitlets.config import Config\n"
        "RankShell.instance(config=Config(HistoryManager={'enabled': False}))"),
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
import os, sys, time, zmq, numpy as np
url, senders, io_threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = 16 * 2**20
ctx = zmq.Context(io_threads=io_threads)
router = ctx.socket(zmq.ROUTER)
if url == "tcp":
    url = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
else:
    router.bind(url)
children = []
for i in range(senders):  # one process per sender, like ranks
    pid = os.fork()
    if pid == 0:
        c = zmq.Context()
        d = c.socket(zmq.DEALER)
        d.setsockopt(zmq.IDENTITY, str(i).encode())
        d.connect(url)
        data = np.ones(size // 8)
        d.send(b"hi")
        while d.recv() == b"go":
            d.send(data, copy=False)
        d.close(linger=0)
        os._exit(0)
    children.append(pid)
peers = [router.recv_multipart()[0] for _ in range(senders)]
times = []
for _ in range(10):
    t = time.perf_counter()
    for peer in peers:
        router.send_multipart([peer, b"go"])
    for _ in peers:
        router.recv_multipart(copy=False)
    times.append(time.perf_counter() - t)
for peer in peers:
    router.send_multipart([peer, b"stop"])
for pid in children:
    os.waitpid(pid, 0)
times.sort()
print(f"{senders * size / times[len(times) // 2] / 1e6:.0f}")
"""


def profile_transport() -> str:
    """Raw ZMQ: K sender processes each send one 16 MiB message to one ROUTER (what a pull
    from K ranks is, without hpckernel), with 1 or 2 libzmq I/O threads at the receiver."""
    lines = ["# aggregate MB/s, K senders x 16 MiB -> one ROUTER, median of 10 rounds"]
    tmp = tempfile.mkdtemp(prefix="bench-zmq-")
    for label, url in (("ipc", f"ipc://{tmp}/s"), ("tcp 127.0.0.1", "tcp")):
        for senders in (1, 4, 16):
            for io_threads in (1, 2):
                out = subprocess.run([sys.executable, "-c", TRANSPORT, url, str(senders),
                                      str(io_threads)], capture_output=True, text=True,
                                     check=True).stdout.strip()
                lines.append(f"  {out:>6} MB/s  {label}, K={senders:2d}, "
                             f"receiver io_threads={io_threads}")
    shutil.rmtree(tmp, ignore_errors=True)
    return "\n".join(lines) + "\n"


SEND_COST = """
import asyncio, json, time, zmq, zmq.asyncio
N = 20000
frames = [b"execute", json.dumps({"code": "pass", "id": "x" * 32}).encode(), b""]
async def main():
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.SNDHWM, 0)
    router.bind("inproc://plane")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"7")
    dealer.setsockopt(zmq.RCVHWM, 0)
    dealer.connect("inproc://plane")
    await dealer.send(b"hi")
    await router.recv_multipart()
    t = time.perf_counter()  # what RankPool._send_to does per rank
    futures = [asyncio.ensure_future(router.send_multipart([b"7", *frames], copy=False))
               for _ in range(N)]
    await asyncio.gather(*futures)
    send_async = (time.perf_counter() - t) / N
    plain = zmq.Socket.shadow(router.underlying)
    t = time.perf_counter()
    for _ in range(N):
        plain.send_multipart([b"7", *frames], copy=False, flags=zmq.NOBLOCK)
    send_plain = (time.perf_counter() - t) / N
    t = time.perf_counter()  # what RankPool._receive does per message
    for _ in range(N):
        await dealer.recv_multipart(copy=False)
    recv_async = (time.perf_counter() - t) / N
    drain = zmq.Socket.shadow(dealer.underlying)
    t = time.perf_counter()
    got = 0
    while got < N:
        try:
            drain.recv_multipart(zmq.NOBLOCK, copy=False)
            got += 1
        except zmq.Again:
            await asyncio.sleep(0)
    recv_plain = (time.perf_counter() - t) / N
    print(f"  send: {send_async * 1e6:5.1f} us as an asyncio future per message, "
          f"{send_plain * 1e6:5.1f} us plain NOBLOCK")
    print(f"  recv: {recv_async * 1e6:5.1f} us awaiting each message, "
          f"{recv_plain * 1e6:5.1f} us draining with NOBLOCK")
asyncio.run(main())
"""


def profile_send_cost() -> str:
    """Python cost per plane message: pyzmq's asyncio socket vs the plain socket under it."""
    out = subprocess.run([sys.executable, "-c", SEND_COST], capture_output=True, text=True,
                         check=True).stdout
    return f"# per message, {20000} messages of an execute request, one process\n{out}"


SHELL_COST = """
import sys, time
from traitlets.config import Config
from hpckernel.worker.shell import RankShell
history = sys.argv[1] == "on"
shell = RankShell.instance(config=Config(HistoryManager={"enabled": history}))
shell.run_cell("x = 1", store_history=True)
for code in ("pass", "raise KeyboardInterrupt"):
    times = []
    for _ in range(21):
        t = time.process_time()
        shell.run_cell(code, store_history=True)
        times.append(time.process_time() - t)
        time.sleep(0.02)
    times.sort()
    print(f"  {times[10] * 1e3:6.2f} ms CPU  run_cell({code!r}), history {sys.argv[1]}")
"""


def profile_shell() -> str:
    """CPU of a rank's ``run_cell`` (all threads of the process), history on and off."""
    env = {**os.environ, "IPYTHONDIR": tempfile.mkdtemp(prefix="bench-ipy-")}
    out = [subprocess.run([sys.executable, "-c", SHELL_COST, history], capture_output=True,
                          text=True, check=True, env=env).stdout for history in ("on", "off")]
    shutil.rmtree(env["IPYTHONDIR"], ignore_errors=True)
    return "# RankShell.run_cell, median of 21, one process\n" + "".join(out)


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


RANK_START = """import gc; gc.disable()
import hpckernel.worker.runner
from mpi4py import MPI
from traitlets.config import Config
from hpckernel.worker.capture import OutStream
from hpckernel.worker.shell import RankShell
RankShell.instance(config=Config(HistoryManager={"enabled": False}))
"""


def profile_start_fs() -> str:
    """What one rank's start costs in imports (``-X importtime``) and file-system calls
    (``strace -f -c -e trace=%file``; strace comes from Debian, see run.sh)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "rankstart.py"
        script.write_text(RANK_START)
        imports = subprocess.run([sys.executable, "-X", "importtime", str(script)],
                                 capture_output=True, text=True, check=True).stderr
        rows = [line.split("|") for line in imports.splitlines() if "import time:" in line]
        top = sorted(((int(r[1]), r[2].strip()) for r in rows[1:]
                      if r[2].startswith(" ") and not r[2].startswith("  ")), reverse=True)
        lines = [f"# one rank's start: {len(rows) - 1} modules imported; the largest "
                 "top-level imports (cumulative ms):"]
        lines += [f"  {us / 1e3:7.1f}  {name}" for us, name in top[:10]]
        strace = shutil.which("strace")
        if strace is None:
            lines.append("(no strace: apt-get install strace, or bash benchmarks/run.sh)")
        else:
            calls = subprocess.run([strace, "-f", "-c", "-e", "trace=%file", sys.executable,
                                    str(script)], capture_output=True, text=True, check=True)
            lines += ["# file-system calls (strace -f -c -e trace=%file):",
                      *calls.stderr.strip().splitlines()]
    return "\n".join(lines) + "\n"


def profile_cost(reps: int) -> str:
    """CPU per no-op cell of the hub (N=1), its rank, and a plain ipykernel, in turn."""
    hpc, ipk = HpcKernel(1), IPyKernel(1)
    try:
        for system in (hpc, ipk):
            system.start()
            system.setup()
        pids = {"hub": hpc.kernel_pid, "rank": hpc.rank_pids()[0], "ipykernel": ipk.kernel_pid}
        for _ in range(30):  # warm-up
            hpc.cell("pass")
            ipk.cell("pass")
        walls: dict[str, list[float]] = {"hpckernel": [], "ipykernel": []}
        before = cpu_seconds(list(pids.values()))
        for _ in range(reps):
            walls["hpckernel"].append(hpc.cell("pass").seconds)
            walls["ipykernel"].append(ipk.cell("pass").seconds)
        after = cpu_seconds(list(pids.values()))
        ms = {k: (after[p] - before[p]) / reps * 1e3 for k, p in pids.items()}
        median = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in walls.items()}
        return (f"# {reps} no-op cells each, in turn (load {os.getloadavg()[0]:.1f})\n"
                f"  CPU per cell: hub {ms['hub']:.2f} ms, its rank {ms['rank']:.2f} ms, "
                f"ipykernel {ms['ipykernel']:.2f} ms; hub beyond ipykernel "
                f"{ms['hub'] - ms['ipykernel']:+.2f} ms\n"
                f"  round trip (median): hpckernel {median['hpckernel']:.1f} ms, "
                f"ipykernel {median['ipykernel']:.1f} ms\n")
    finally:
        hpc.stop()
        ipk.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("what", nargs="*",
                        help="of cells, start, transport, sim, cost (default: all)")
    parser.add_argument("--reps", type=int, default=300, help="no-op cells of ``cost``")
    parser.add_argument("--at", metavar="REV", help="profile hpckernel as of a git revision "
                        "(as benchmarks.run --at)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sim-ranks", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--gil", action="store_true",
                        help="sample only the thread that holds the GIL")
    parser.add_argument("--tag", default="", help="suffix of the profile-cells file name")
    parser.add_argument("--code", default="pass", help="the cell that ``cells`` repeats; "
                        "e.g. '%%%%local\\nranks.pull(\"b\")'")
    args = parser.parse_args(argv)
    global GIL_ONLY
    GIL_ONLY = args.gil
    args.what = args.what or ["cells", "start", "transport", "sim", "cost"]
    if set(args.what) - {"cells", "start", "transport", "sim", "cost"}:
        parser.error("choose from cells, start, transport, sim, cost")
    if args.at:
        systems.HPCKERNEL_ROOT = snapshot(args.at)
        sys.path.insert(0, str(systems.HPCKERNEL_ROOT))
        args.tag += f"-at-{args.at}"
    mpich_env()
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
    bytecode_cache()
    RESULTS.mkdir(exist_ok=True)
    jobs: dict[str, list[tuple[str, Callable[[], str]]]] = {
        "cells": [(f"cells-{n}{args.tag}", functools.partial(profile_cells, n, args.code,
                                                             args.seconds))
                  for n in args.ranks],
        "start": [("start", profile_start), ("shell", profile_shell),
                  ("start-fs", profile_start_fs)],
        "transport": [("transport", profile_transport), ("send-cost", profile_send_cost)],
        "sim": [(f"sim-{args.sim_ranks}", lambda: profile_sim(args.sim_ranks, args.seconds))],
        "cost": [(f"cost{args.tag}", lambda: profile_cost(args.reps))],
    }
    try:
        for what in args.what:
            for name, job in jobs[what]:
                text = job()
                print(text, flush=True)
                (RESULTS / f"profile-{name}.txt").write_text(text)
    finally:
        shutil.rmtree(os.environ["IPYTHONDIR"], ignore_errors=True)
        if systems.HPCKERNEL_ROOT is not None:
            shutil.rmtree(systems.HPCKERNEL_ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
