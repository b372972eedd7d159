"""``python -m hpckernel.live.root DIR …``: a live job's endpoint, started by rank 0.

It is to the job's node agents what the hub is to a kernel's (they connect to it exactly so,
``plane.json``), and it serves the notebooks that attach: a ROUTER on the node's address,
TCP with CurveZMQ, admitting only the client key in ``live.json`` (0600, so only the
job's owner can read it). Notebooks are guests:

- requests (``peek``, ``where``, ``lvals``) fan out once per node and come back merged;
- cells (``lcell``) of every notebook queue in arrival order and run one at a time, at the
  same safepoint on every target (``safepoints.py``: arm, then decide);
- nothing a notebook does or fails to do can stall the job: sends to notebooks never
  wait (a full or gone notebook loses the message), and a notebook silent for
  ``CLIENT_TIMEOUT`` seconds is forgotten with its queued cells.

When every rank's program has ended it tells the notebooks and stops the agents.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..agent.replies import NodeRequest
from ..deathsig import die_with_parent
from ..plane import PlaneInfo, make_job_dir, pack, unpack
from ..plane.addresses import node_ip, node_name
from ..plane.credentials import KeyCheck, write_plane_info
from ..plane.private import check_private_dir
from ..targets import format_ranks, rank_intervals
from .fanin import Pending, Routes, merge_node_reply, reply_frames
from .files import LiveInfo, write_live_info

log = logging.getLogger("hpckernel.live.root")

#: Seconds between heartbeats to the agents (each answers with its node's load).
HEARTBEAT = 2.0
#: A notebook that sent nothing (it pings every second) for this long has gone.
CLIENT_TIMEOUT = 10.0
#: Most messages queued for one notebook before more are dropped.
CLIENT_HWM = 1000


@dataclass
class Cell:
    """A notebook's cell, from its queueing to its reply."""

    id: str
    client: bytes
    client_id: str
    code: str
    targets: list[int]
    name: str
    state: str = "queued"  # queued, arming, running
    cancelled: bool = False
    counters: list[int] = field(default_factory=list)


class Endpoint:
    """The endpoint's sockets and state; :meth:`run` is its loop."""

    def __init__(self, directory: Path, job: str, step: str, size: int, nodes: int) -> None:
        self.directory = directory
        self.job, self.step, self.size, self.nodes = job, step, size, nodes
        check_private_dir(directory)
        self.ctx = zmq.Context()
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        plane_server, plane_client = zmq.curve_keypair(), zmq.curve_keypair()
        ours, theirs = zmq.curve_keypair(), zmq.curve_keypair()
        self.auth.configure_curve_callback("plane", KeyCheck(plane_client[0].decode()))
        self.auth.configure_curve_callback("client", KeyCheck(theirs[0].decode()))
        ip = node_ip("auto")
        self._ipc_dir = make_job_dir()  # node-local and short: socket paths are limited
        # Agents of this node over IPC in a 0700 directory; the others over TCP + CurveZMQ.
        self.local_agents = self._router(None, b"")
        ipc_url = f"ipc://{self._ipc_dir}/plane.sock"
        self.local_agents.bind(ipc_url)
        self.agents = self._router(plane_server, b"plane")
        tcp_url = f"tcp://{ip}:{self.agents.bind_to_random_port(f'tcp://{ip}')}"
        self.agent_socks: dict[str, zmq.Socket[bytes]] = {}
        self.clients = self._router(ours, b"client")
        self.clients.setsockopt(zmq.SNDHWM, CLIENT_HWM)
        url = f"tcp://{ip}:{self.clients.bind_to_random_port(f'tcp://{ip}')}"
        write_plane_info(directory, PlaneInfo(
            node=node_name(), ipc_url=ipc_url, tcp_url=tcp_url,
            server_public=plane_server[0].decode(), client_public=plane_client[0].decode(),
            client_secret=plane_client[1].decode(), size=size))
        self.info = LiveInfo(job=job, step=step, url=url, server_public=ours[0].decode(),
                             client_public=theirs[0].decode(),
                             client_secret=theirs[1].decode(), size=size, nodes=nodes,
                             host=node_name(), pid=os.getpid())
        write_live_info(directory, self.info)
        self.routes = Routes()
        self.registered: set[int] = set()
        self.ended: dict[int, dict[str, Any]] = {}
        self.loads: dict[str, tuple[str, str]] = {}  # node -> (ranks, [[cpu, rss]] JSON)
        self.pending: dict[str, Pending] = {}
        self.clients_heard: dict[bytes, float] = {}
        self.cells: deque[Cell] = deque()
        self.current: Cell | None = None
        self.stopping = False

    def _router(self, keys: tuple[bytes, bytes] | None, domain: bytes) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone peer raises: dropped
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.LINGER, 0)
        if keys is None:
            return sock
        sock.zap_domain = domain
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = keys
        return sock

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in (self.local_agents, self.agents, self.clients):
            poller.register(sock, zmq.POLLIN)
        next_beat = time.monotonic()
        while not self.stopping:
            events = dict(poller.poll(int(max(0.0, next_beat - time.monotonic()) * 1000)))
            for sock in (self.local_agents, self.agents):
                if sock in events:
                    while (frames := self._receive(sock)) is not None:
                        self.agent_socks[frames[0].bytes.decode(errors="replace")[1:]] = sock
                        self._from_agent(frames[0], frames[1:])
            if self.clients in events:
                while (frames := self._receive(self.clients)) is not None:
                    self._from_client(frames[0], frames[1:])
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + HEARTBEAT
                self._beat(now)
        self.close()

    @staticmethod
    def _receive(sock: zmq.Socket[bytes]) -> list[zmq.Frame] | None:
        try:
            return sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def _beat(self, now: float) -> None:
        beat = pack("hb", {"interval": HEARTBEAT})
        for node in set(self.routes.node_of.values()) - self.routes.dead:
            self._to_agent(node, beat)
        for client, heard in list(self.clients_heard.items()):
            if now - heard > CLIENT_TIMEOUT:
                log.info("a notebook went silent; forgetting it and its queued cells")
                self._forget(client)

    def _to_agent(self, node: str, frames: list[Any]) -> None:
        try:
            self.agent_socks.get(node, self.agents).send_multipart(
                [f"@{node}".encode(), *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            self.routes.dead.add(node)
            self._lose([r for r, n in self.routes.node_of.items() if n == node])

    def _to_client(self, client: bytes, frames: list[Any]) -> None:
        try:
            self.clients.send_multipart([client, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            pass  # gone, or not reading: it loses this message, the job loses nothing

    def _send(self, kind: str, header: dict[str, Any], targets: list[int],
              client: bytes | None = None, client_id: str = "", cell: Cell | None = None
              ) -> None:
        request, sends = self.routes.frames_for(kind, header, targets)
        self.pending[request.id] = Pending(request, client, client_id, cell)
        for node, frames in sends:
            self._to_agent(node, frames)
        self._maybe_done(request.id)

    # -- from the agents --------------------------------------------------------------------

    def _from_agent(self, ident: zmq.Frame, frames: list[zmq.Frame]) -> None:
        try:
            msg = unpack(frames, "")
        except ValueError as e:
            log.warning("dropped a malformed message from an agent: %s", e)
            return
        kind, header = msg.msg_type, msg.header
        if kind == "nregister":
            self.registered.update(self.routes.register(header))
        elif kind == "nsummary":
            self.loads[str(header.get("node"))] = (header.get("ranks") or "",
                                                   bytes(msg.payload).decode())
            for node, ranks, load in header.get("summaries") or []:
                self.loads[node] = (ranks, load)
        elif kind == "nreply":
            pending = self.pending.get(header.get("id") or "")
            if pending is not None:
                merge_node_reply(pending.request, msg)
                self._maybe_done(pending.request.id)
        elif kind == "lend":
            self._ended(header)
        elif kind == "ndead":
            node = str(header.get("node"))
            self.routes.dead.add(node)
            self._lose([r for r, n in self.routes.node_of.items() if n == node])

    def _lose(self, ranks: list[int]) -> None:
        for pending in list(self.pending.values()):
            for rank in ranks:
                pending.request.lose(rank)
            self._maybe_done(pending.request.id)

    def _ended(self, header: dict[str, Any]) -> None:
        rank = header.get("rank")
        if not isinstance(rank, int):
            return
        self.ended[rank] = {k: header[k] for k in ("status", "ename", "evalue") if k in header}
        state = self._state()
        for client in self.clients_heard:
            self._to_client(client, pack("lstate", state))
        if len(self.ended) >= self.size:
            log.info("every rank's program ended; stopping")
            for node in set(self.routes.node_of.values()) - self.routes.dead:
                self._to_agent(node, pack("shutdown", {}))
            self.stopping = True

    def _state(self) -> dict[str, Any]:
        failed = {r: e for r, e in self.ended.items() if e.get("status") != "ok"}
        return {"ended": format_ranks(sorted(self.ended)), "failed": {
            str(r): f"{e.get('ename')}: {e.get('evalue')}" for r, e in failed.items()},
            "done": len(self.ended) >= self.size}

    # -- from the notebooks -----------------------------------------------------------------

    def _from_client(self, client: zmq.Frame, frames: list[zmq.Frame]) -> None:
        ident = client.bytes
        try:
            msg = unpack(frames, "")
        except ValueError:
            return
        self.clients_heard[ident] = time.monotonic()
        kind, header = msg.msg_type, msg.header
        request_id = str(header.get("id") or "")
        if kind == "lhello":
            self._to_client(ident, pack("lwelcome", {
                "id": request_id, **{k: v for k, v in asdict(self.info).items()
                                     if k not in ("client_secret", "client_public")},
                "registered": len(self.registered), "hosts": self.routes.hosts,
                **self._state()}))
        elif kind == "lping":
            self._to_client(ident, pack("lpong", {"id": request_id, **self._state()}))
        elif kind == "ldetach":
            self._forget(ident)
        elif kind == "lsummary":
            self._to_client(ident, pack("lsummary", {
                "id": request_id, "loads": self.loads, "hosts": self.routes.hosts,
                "nodes": {r: n for r, n in self.routes.node_of.items()}}))
        elif kind in ("peek", "where", "lvals"):
            targets = self._targets(header)
            allowed: dict[str, Any] = {k: header[k] for k in ("names", "since") if k in header}
            self._send(kind, allowed, targets, ident, request_id)
        elif kind == "lcell":
            self.cells.append(Cell(os.urandom(8).hex(), ident, request_id,
                                   str(header.get("code", "")), self._targets(header),
                                   str(header.get("name") or "")))
            self._next_cell()
        elif kind == "linterrupt":
            self._interrupt(ident, str(header.get("cell") or ""))

    def _targets(self, header: dict[str, Any]) -> list[int]:
        spec = header.get("targets")
        if spec in (None, "", "all"):
            return list(range(self.size))
        try:
            return sorted({r for lo, hi in rank_intervals(str(spec))
                           for r in range(lo, min(hi, self.size - 1) + 1)})
        except ValueError:
            return []

    def _forget(self, client: bytes) -> None:
        self.clients_heard.pop(client, None)
        self.cells = deque(c for c in self.cells if c.client != client)
        if self.current is not None and self.current.client == client:
            self.current.cancelled = True  # an armed cell is cancelled; a running one runs

    # -- cells --------------------------------------------------------------------------------

    def _next_cell(self) -> None:
        while self.current is None and self.cells:
            cell = self.current = self.cells.popleft()
            if not cell.targets:
                self._finish(cell, {"status": "error", "ename": "ValueError",
                                    "evalue": "no such ranks"})
                continue
            cell.state = "arming"
            self._send("larm", {"cell": cell.id}, cell.targets, cell=cell)

    def _interrupt(self, client: bytes, cell_id: str) -> None:
        for queued in list(self.cells):
            if queued.client == client and queued.client_id == cell_id:
                self.cells.remove(queued)
                self._reply_error(queued, "KeyboardInterrupt", "interrupted before it ran")
        cell = self.current
        if cell is None or cell.client != client or cell.client_id != cell_id:
            return
        if cell.state == "arming":
            cell.cancelled = True
        else:  # running: stop it on the ranks that run it (agents pass it to busy ranks)
            for node in set(self.routes.node_of.values()) - self.routes.dead:
                self._to_agent(node, pack("interrupt", {}))

    def _maybe_done(self, request_id: str) -> None:
        pending = self.pending.get(request_id)
        if pending is None or not pending.request.done:
            return
        del self.pending[request_id]
        if pending.client is not None:
            self._to_client(pending.client, reply_frames(pending))
            return
        cell, request = pending.cell, pending.request
        if cell is None:
            return
        if request.kind == "larm":
            self._armed(cell, request)
        elif request.kind == "execute":
            frames = reply_frames(Pending(request, cell.client, cell.client_id))
            self.current = None
            if cell.client in self.clients_heard:
                self._to_client(cell.client, frames)
            self._next_cell()

    def _armed(self, cell: Cell, request: NodeRequest) -> None:
        failed = [(common, ranks) for common, ranks in request.groups.values()
                  if common.get("status") != "ok"]
        counters = [common.get("counter", 0) for common, _ in request.groups.values()
                    if common.get("status") == "ok"]
        if cell.cancelled or failed or request.lost:
            self._send("lcancel", {"cell": cell.id}, cell.targets)
            if cell.cancelled:
                self._reply_error(cell, "KeyboardInterrupt", "interrupted before it ran")
            elif failed:
                common, ranks = failed[0]
                self._reply_error(cell, str(common.get("ename")),
                                  f"{common.get('evalue')} (ranks {format_ranks(ranks)})")
            else:
                self._reply_error(cell, "RankLost", f"ranks {format_ranks(request.lost)} "
                                  "cannot be reached")
            self.current = None
            self._next_cell()
            return
        cell.state = "running"
        self._send("execute", {"cell": cell.id, "at": max(counters) + 1, "code": cell.code,
                               "name": cell.name or f"<cell {cell.client_id[:8]}>"},
                   cell.targets, cell=cell)

    def _reply_error(self, cell: Cell, ename: str, evalue: str) -> None:
        self._finish(cell, {"status": "error", "ename": ename, "evalue": evalue})

    def _finish(self, cell: Cell, common: dict[str, Any]) -> None:
        header = {"id": cell.client_id, "groups": [[format_ranks(cell.targets), common]],
                  "lost": "", "values": []}
        self._to_client(cell.client, [b"lreply", json.dumps(header).encode(), b""])
        if self.current is cell:
            self.current = None

    def close(self) -> None:
        for client in list(self.clients_heard):
            self._to_client(client, pack("lstate", self._state()))
        time.sleep(0.2)  # the last messages go out (linger 0 would drop them)
        self.agents.close(linger=500)
        self.local_agents.close(linger=500)
        self.clients.close(linger=500)
        self.auth.stop()
        self.ctx.term()
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
        # Every program ended: nothing is left to attach to (a killed job leaves the
        # directory; attaching to it then says the job does not answer).
        shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hpckernel.live.root")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--job", required=True)
    parser.add_argument("--step", default="0")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    die_with_parent()  # rank 0, which started it, waits for it at its end
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the program's interrupts are its own
    Endpoint(args.directory, args.job, args.step, args.size, args.nodes).run()


if __name__ == "__main__":
    main()
