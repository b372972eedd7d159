"""Simulated ranks: the hub's cost per cell at N = 256 … 4096 without N real processes.

A real hub (``python -m hpckernel.hub`` through jupyter_client) is started with
``--HubKernel.launcher_class=benchmarks.simranks.SimLauncher``: instead of ``mpiexec`` it
starts ``python -m benchmarks.simranks PLANE_FILE``, which forks a few processes, each
holding many ZMQ DEALER sockets that speak the rank protocol of ``hpckernel/worker``
(identity = rank number, ``register`` first, ``reply`` to each request, ``hb`` to each
heartbeat, a ``stream`` message for ``print(rank)``). The hub cannot tell them from ranks.

What is reported is the hub's own CPU time (psutil) per cell, which the simulator's speed
does not change, and the wall time per cell, which it does.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import zmq

from hpckernel.hub.launch import RankLauncher
from hpckernel.plane import Message, PlaneInfo, pack, read_plane_info, unpack

REPO = Path(__file__).resolve().parent.parent


class SimLauncher(RankLauncher):
    """A launcher that starts simulated ranks (see the module docstring)."""

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        procs = int(os.environ.get("BENCH_SIM_PROCS", "2"))
        return [sys.executable, "-m", "benchmarks.simranks", str(plane_file),
                "--procs", str(procs)]


def answer(rank: int, msg: Message) -> list[list[Any]]:
    """The frames a real rank would send back for ``msg``."""
    header = msg.header
    if msg.msg_type == "hb":
        return [pack("hb", {"rank": rank, "cpu": 0.0, "rss": 0})]
    if msg.msg_type == "execute":
        out = []
        if "print(rank)" in header["code"]:
            out.append(pack("stream", {"id": header["id"], "rank": rank, "name": "stdout",
                                       "text": f"{rank}\n"}))
        out.append(pack("reply", {"id": header["id"], "rank": rank, "request": "execute",
                                  "status": "ok"}))
        return out
    if msg.msg_type in ("interrupt", "shutdown"):
        return []
    return [pack("reply", {"id": header.get("id"), "rank": rank, "request": msg.msg_type,
                           "status": "error", "ename": "NotImplementedError",
                           "evalue": "a simulated rank only runs execute"})]


def serve_ranks(info: PlaneInfo, ranks: range) -> None:
    """Be ``ranks`` until the hub has sent each of them ``shutdown`` (or went silent)."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, len(ranks) + 64)
    socks: dict[zmq.Socket[bytes], int] = {}
    poller = zmq.Poller()
    for rank in ranks:
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, str(rank).encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(info.ipc_url)
        sock.send_multipart(pack("register", {
            "rank": rank, "size": info.size, "pid": os.getpid(), "host": socket.gethostname(),
            "python": sys.version.split()[0], "mpi": "simulated", "error": None}))
        socks[sock] = rank
        poller.register(sock, zmq.POLLIN)
    alive = set(ranks)
    heard = time.monotonic()
    while alive and time.monotonic() - heard < 30:
        for sock, _ in poller.poll(1000):
            heard = time.monotonic()
            rank = socks[sock]
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = unpack(frames)
                for out in answer(rank, msg):
                    sock.send_multipart(out)
                if msg.msg_type == "shutdown":
                    alive.discard(rank)
    for sock in socks:
        sock.close(linger=0)
    ctx.term()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simranks")
    parser.add_argument("plane_file")
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args(argv)
    info = read_plane_info(args.plane_file)
    children = []
    for i in range(1, args.procs):  # fork before any ZMQ context exists
        pid = os.fork()
        if pid == 0:
            serve_ranks(info, range(i, info.size, args.procs))
            os._exit(0)
        children.append(pid)
    serve_ranks(info, range(0, info.size, args.procs))
    for pid in children:
        os.waitpid(pid, 0)


# -- the driver (run in benchmarks.run) ----------------------------------------------------


def hub_cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def measure(n: int, reps: int) -> dict[str, Any]:
    from .systems import HpcKernel

    kernel = HpcKernel(n, extra=[f"--HubKernel.launcher_class={__name__}.SimLauncher"],
                       env={"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    result: dict[str, Any] = {}
    try:
        result["start"] = kernel.start()["first_cell"]
        hub = kernel.kernel_pid
        for name, code in (("noop", "pass"), ("print", "print(rank)")):
            kernel.cell(code)
            cpu0, t0 = hub_cpu(hub), time.perf_counter()
            cells = [kernel.cell(code) for _ in range(reps)]
            wall, cpu = time.perf_counter() - t0, hub_cpu(hub) - cpu0
            result[name] = {"wall_ms": wall / reps * 1e3, "hub_cpu_ms": cpu / reps * 1e3,
                            "ok": all(c.status == "ok" for c in cells)}
            if name == "print":
                result[name]["complete"] = all(kernel.print_complete(c.text) for c in cells)
            time.sleep(1.0)  # let the output budget refill
        cpu0 = hub_cpu(hub)
        time.sleep(5.0)
        result["idle_hub_pct"] = (hub_cpu(hub) - cpu0) / 5.0 * 100
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        kernel.stop()
    return result


def measure_all(ns: list[int], reps: int) -> dict[str, Any]:
    out = {}
    for n in ns:
        print(f"  simulated N={n}", flush=True)
        out[str(n)] = measure(n, reps)
    return out


if __name__ == "__main__":
    main()
