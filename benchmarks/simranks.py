"""Simulated ranks and node agents: the hub's cost per cell at N = 1,024 … 16,384 without
N real processes.

A real hub (``python -m hpckernel.hub`` through jupyter_client) is started with
``--HubKernel.launcher_class=benchmarks.simranks.SimLauncher``: instead of ``mpiexec`` it
starts ``python -m benchmarks.simranks PLANE_FILE``, which forks a few processes.

- ``direct`` (``HubKernel.fanin``): they hold N ZMQ DEALER sockets that speak the rank
  protocol of ``hpckernel/worker`` (identity = launch and rank, ``register`` first, ``reply`` to
  each request, ``hb`` to each heartbeat, a ``stream`` message for ``print(rank)``).
- ``agents``: they hold one DEALER per node (``--agents K``, N/K ranks each) that speaks the
  agent protocol of ``hpckernel/agent`` for its node's ranks (``nregister``, one ``nreply``
  per request, one ``nstream`` per output, one ``nsummary`` per heartbeat).

The hub cannot tell them from ranks or agents. What is reported is the hub's own CPU time
(psutil) per cell, which the simulator's speed does not change, and the wall time per cell,
which it does (the simulator shares the machine's cores).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import zmq

from hpckernel.agent.agent import summary_frames
from hpckernel.agent.replies import local_targets
from hpckernel.hub.rank_launchers import RankLauncher
from hpckernel.plane import Message, PlaneInfo, pack, read_plane_info, unpack
from hpckernel.plane.identity import agent_identity, current_launch, rank_identity
from hpckernel.targets import format_ranks, rank_intervals

REPO = Path(__file__).resolve().parent.parent


class SimLauncher(RankLauncher):
    """A launcher that starts simulated ranks (see the module docstring)."""

    def command(self, job_dir: Path, plane_file: Path) -> list[str]:
        procs = int(os.environ.get("BENCH_SIM_PROCS", "2"))
        agents = (["--agents", str(self.node_count()), "--fanout", str(self.fanout)]
                  if self.agents else [])
        return [sys.executable, "-m", "benchmarks.simranks", str(plane_file),
                "--procs", str(procs), *agents]


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


def serve(ctx: zmq.Context[Any], poller: zmq.Poller,
          answers: dict[zmq.Socket[bytes], Callable[[Message], list[list[Any]]]]) -> None:
    """Answer what arrives on each socket until the hub has said ``shutdown`` to all of them
    (or went silent for 30 s); then close them."""
    alive = set(answers)
    heard = time.monotonic()
    while alive and time.monotonic() - heard < 30:
        for sock, _ in poller.poll(1000):
            heard = time.monotonic()
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = unpack(frames)
                for out in answers[sock](msg):
                    sock.send_multipart(out)
                if msg.msg_type == "shutdown":
                    alive.discard(sock)
    for sock in answers:
        sock.close(linger=0)
    ctx.term()


def serve_ranks(info: PlaneInfo, ranks: range) -> None:
    """Be ``ranks`` until the hub has sent each of them ``shutdown`` (or went silent)."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, len(ranks) + 64)
    socks: dict[zmq.Socket[bytes], int] = {}
    poller = zmq.Poller()
    for rank in ranks:
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, rank_identity(current_launch(), rank))
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(info.ipc_url)
        sock.send_multipart(pack("register", {
            "rank": rank, "size": info.size, "pid": os.getpid(), "host": socket.gethostname(),
            "python": sys.version.split()[0], "mpi": "simulated", "error": None}))
        socks[sock] = rank
        poller.register(sock, zmq.POLLIN)
    serve(ctx, poller, {sock: (lambda msg, r=rank: answer(r, msg)) for sock, rank in socks.items()})


def node_ranks(node: int, nodes: int, size: int) -> list[int]:
    """The ranks of ``node`` when ``size`` ranks are spread in blocks over ``nodes`` (as
    ``launcher/rank.sh`` does with HPCKERNEL_NODES)."""
    return list(range(-(-node * size // nodes), -(-(node + 1) * size // nodes)))


def agent_answer(group: list[int], ranks: list[int], msg: Message, size: int, total: int
                 ) -> list[list[Any]]:
    """The frames a real agent would send up for ``msg``: the first node of ``group``
    answering for the group's ``ranks`` (a group of one without a tree), its ranks at once."""
    header = msg.header
    if msg.msg_type == "hb":
        load = [0.0, 5e7]
        below = [[str(m), format_ranks(node_ranks(m, total, size)),
                  json.dumps([load] * len(node_ranks(m, total, size)))] for m in group[1:]]
        own = node_ranks(group[0], total, size)
        return [summary_frames(str(group[0]), own, dict.fromkeys(own, load), below)]
    if msg.msg_type in ("interrupt", "shutdown"):
        return []
    targets = local_targets(rank_intervals(header.get("targets", "")), ranks)
    out = []
    reply: dict[str, Any] = {"request": msg.msg_type, "status": "ok"}
    if msg.msg_type == "execute":
        if "print(rank)" in header["code"]:
            out.append(pack("nstream", {"id": header["id"], "name": "stdout",
                                        "parts": [[str(r), f"{r}\n"] for r in targets]}))
    else:
        reply = {"request": msg.msg_type, "status": "error", "ename": "NotImplementedError",
                 "evalue": "a simulated rank only runs execute"}
    out.append(pack("nreply", {"id": header["id"], "request": msg.msg_type,
                               "groups": [[format_ranks(targets), reply]], "lost": "",
                               "values": []}))
    return out


def serve_agents(info: PlaneInfo, groups: list[list[int]], total: int) -> None:
    """Be the agents of ``groups`` of nodes (of ``total``; the first of each group talks to
    the hub for the others, as agents above ``HubKernel.fanout`` nodes do) until the hub
    says ``shutdown``."""
    ctx = zmq.Context()
    socks: dict[zmq.Socket[bytes], tuple[list[int], list[int]]] = {}
    poller = zmq.Poller()
    for group in groups:
        leader = group[0]
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, agent_identity(current_launch(), str(leader)))
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(info.ipc_url)
        ranks: list[int] = []
        for node in group:
            mine = node_ranks(node, total, info.size)
            ranks.extend(mine)
            registered = [{"rank": r, "size": info.size, "pid": os.getpid(),
                           "host": f"sim{node}", "python": sys.version.split()[0],
                           "mpi": "simulated", "error": None} for r in mine]
            header: dict[str, Any] = {"node": str(node), "host": f"sim{node}",
                                      "pid": os.getpid(), "registered": registered}
            if node != leader:
                header["via"] = str(leader)
            sock.send_multipart(pack("nregister", header))
        socks[sock] = (group, ranks)
        poller.register(sock, zmq.POLLIN)
    serve(ctx, poller, {sock: (lambda msg, g=group, r=ranks: agent_answer(
        g, r, msg, info.size, total)) for sock, (group, ranks) in socks.items()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simranks")
    parser.add_argument("plane_file")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--agents", type=int, default=0,
                        help="simulate this many node agents instead of bare ranks")
    parser.add_argument("--fanout", type=int, default=64,
                        help="agents form groups of this many above it (HubKernel.fanout)")
    args = parser.parse_args(argv)
    info = read_plane_info(args.plane_file)
    width = args.fanout if args.agents > args.fanout >= 2 else 1
    groups = [list(range(g, min(g + width, args.agents))) for g in range(0, args.agents, width)]

    def run(i: int) -> None:
        if args.agents:
            serve_agents(info, groups[i::args.procs], args.agents)
        else:
            serve_ranks(info, range(i, info.size, args.procs))

    children = []
    for i in range(1, args.procs):  # fork before any ZMQ context exists
        pid = os.fork()
        if pid == 0:
            run(i)
            os._exit(0)
        children.append(pid)
    run(0)
    for pid in children:
        os.waitpid(pid, 0)


# -- the driver (run in benchmarks.run) ----------------------------------------------------


def hub_cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def measure(n: int, reps: int, mode: str = "direct", per_node: int = 64) -> dict[str, Any]:
    """One simulated run: ``n`` ranks, reached directly or through ``n / per_node`` agents."""
    from .systems import HpcKernel

    nodes = max(1, n // per_node)
    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HPCKERNEL_FANIN": mode, "HPCKERNEL_NODES": str(nodes)}
    kernel = HpcKernel(n, extra=[f"--HubKernel.launcher_class={__name__}.SimLauncher"],
                       env=env)
    result: dict[str, Any] = {"ranks": n, "nodes": nodes, "mode": mode,
                              "fanout": 64 if mode == "agents" else None}
    try:
        result["start_s"] = kernel.start()["first_cell"]
        hub = kernel.kernel_pid
        for name, code in (("noop", "pass"), ("print", "print(rank)")):
            kernel.cell(code)
            cpu0 = hub_cpu(hub)
            cells = [kernel.cell(code) for _ in range(reps)]
            cpu = hub_cpu(hub) - cpu0
            result[f"hub_cpu_ms_{name}"] = round(cpu / reps * 1e3, 2)
            result[f"wall_ms_{name}"] = round(statistics.median(c.seconds for c in cells) * 1e3,
                                              1)
            result[f"ok_{name}"] = all(c.status == "ok" for c in cells)
            if name == "noop":  # silent: no provenance record (what else costs per cell)
                cpu0 = hub_cpu(hub)
                for _ in range(reps):
                    silent_cell(kernel, code)
                result["hub_cpu_ms_noop_silent"] = round((hub_cpu(hub) - cpu0) / reps * 1e3, 2)
            if name == "print":
                text = cells[-1].text
                result["print_lines_to_client"] = text.count("\n")
                result["print_wall_ms"] = result.pop("wall_ms_print")
                result["print_last_output_ms"] = round(
                    statistics.median(c.last_output for c in cells) * 1e3, 1)
                fetched = kernel.cell("%%local\nprint(_px.stdout == [f'{r}\\n' for r in "
                                      f"range({n})])")
                result["print_every_line_fetchable"] = fetched.text.strip() == "True"
            time.sleep(1.0)  # let the output budget refill
        cpu0 = hub_cpu(hub)
        time.sleep(5.0)
        result["idle_hub_cpu_pct"] = round((hub_cpu(hub) - cpu0) / 5.0 * 100, 2)
        result["hub_rss_mb"] = round(psutil.Process(hub).memory_info().rss / 2**20, 1)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        kernel.stop()
    return result


def silent_cell(kernel: Any, code: str) -> None:
    """Run ``code`` with ``silent=True`` (the kernel keeps no record of it); wait for the
    reply."""
    msg_id = kernel.kc.execute(code, silent=True)
    while kernel.kc.get_shell_msg(timeout=300)["parent_header"].get("msg_id") != msg_id:
        pass


def reps_for(n: int, mode: str, reps: int) -> int:
    """Fewer cells where each costs seconds (direct mode at many ranks)."""
    return reps if mode == "agents" else max(3, min(reps, reps * 1024 // n))


def measure_all(ns: list[int], reps: int, modes: tuple[str, ...] = ("direct", "agents")
                ) -> list[dict[str, Any]]:
    """Every N in both modes; also written to ``benchmarks/results/sim.json``."""
    out = []
    for n in ns:
        for mode in modes:
            print(f"  simulated N={n} ({mode})", flush=True)
            record = measure(n, reps_for(n, mode, reps), mode)
            print(f"    {json.dumps(record)}", flush=True)
            out.append(record)
    results = REPO / "benchmarks" / "results"
    (results / "sim.json").write_text(json.dumps(out, indent=1) + "\n")
    from .report import sim_table

    table = sim_table(out)
    (results / "sim.txt").write_text(table + "\n")
    print(table)
    return out


if __name__ == "__main__":
    main()
