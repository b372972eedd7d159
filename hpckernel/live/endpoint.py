"""``python -m hpckernel.live.endpoint DIR …``: a live job's endpoint, started by rank 0.

It is to the job's node agents what the hub is to a kernel's (they connect to it exactly so,
``plane.json``), and it relays between them and the notebooks that attach: a ROUTER on the
node's address, TCP with CurveZMQ, admitting only the client key in ``live.json`` (0600, so
only the job's owner can read it). A notebook talks to it as a hub talks to its agents
(``hub/fanin/agents.py``): its requests go to the agents of their targets, and the agents'
answers (``nreply``), output (``nstream``, ``display``), registrations and load come back to
it as they are, so that the notebook's side is the hub's own (``fanin.py``).

Notebooks are guests:

- cells (``execute``) of every notebook queue in arrival order and run one at a time, at
  the same safepoint on every target, and an interrupt stops them only where every target
  can stop alike (``cellqueue.py``);
- nothing a notebook does or fails to do can stall the job: the agents' output is taken in
  (credited) at once, sends to notebooks never wait (a full or gone notebook loses the
  message), and a notebook silent for ``CLIENT_TIMEOUT`` seconds is forgotten with its
  queued cells.

When every rank's program has ended it tells the notebooks and stops the agents.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..agent.replies import NodeRequest
from ..deathsig import die_with_parent
from ..plane import Message, PlaneInfo, kinds, make_job_dir, pack, unpack
from ..plane.addresses import node_ip, node_name
from ..plane.credentials import KeyCheck, write_plane_info
from ..plane.credit import DEFAULT_WINDOW, Credits
from ..plane.droplog import DropLog
from ..plane.headers import PlaneHeader
from ..plane.identity import parse_identity
from ..plane.private import check_private_dir
from ..targets import format_ranks, format_sorted, parse_ranks
from .cellqueue import Cell, CellQueue
from .files import LiveInfo, write_live_info

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger("hpckernel.live.endpoint")
_drops = DropLog(log)

#: Seconds between heartbeats to the agents (each answers with its node's load).
HEARTBEAT = 2.0
#: A notebook that sent nothing (it pings every second) for this long has gone.
CLIENT_TIMEOUT = 10.0
#: Most messages queued for one notebook before more are dropped.
CLIENT_HWM = 10_000
#: Kinds a notebook's request may have (cells, and what the I/O threads answer).
PASSED = frozenset({kinds.PEEK, kinds.WHERE, kinds.LVALS})


@dataclass
class Open:
    """A request sent to ranks: for a notebook (its answers are passed on), or the
    endpoint's own (``done`` reads the merged answer)."""

    request: NodeRequest
    client: bytes | None
    done: Callable[[NodeRequest], None] | None = None


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
        self.clients = self._router(ours, b"client")
        self.clients.setsockopt(zmq.SNDHWM, CLIENT_HWM)
        url = f"tcp://{ip}:{self.clients.bind_to_random_port(f'tcp://{ip}')}"
        write_plane_info(directory, PlaneInfo(
            node=node_name(), ipc_url=ipc_url, tcp_url=tcp_url,
            server_public=plane_server[0].decode(), client_public=plane_client[0].decode(),
            client_secret=plane_client[1].decode(), size=size, shm=False))
        self.info = LiveInfo(job=job, step=step, url=url, server_public=ours[0].decode(),
                             client_public=theirs[0].decode(),
                             client_secret=theirs[1].decode(), size=size, nodes=nodes,
                             host=node_name(), pid=os.getpid())
        write_live_info(directory, self.info)
        # -- the agents
        self.peers: dict[str, tuple[zmq.Socket[bytes], bytes]] = {}  # node -> socket, id
        self.node_of: dict[int, str] = {}  # rank -> the agent its requests go to
        self.dead: set[str] = set()
        self.registrations: list[list[zmq.Frame]] = []  # every nregister, for notebooks to come
        self.registered: set[int] = set()
        self.credits: Credits[str] = Credits(DEFAULT_WINDOW)
        self.ended: dict[int, PlaneHeader] = {}
        # -- the notebooks and their requests
        self.heard: dict[bytes, float] = {}
        self.open: dict[str, Open] = {}
        self.cells = CellQueue(self)
        self.stopping = False
        self._from_agents: dict[str, Callable[[str, Message, list[zmq.Frame]], None]] = {
            kinds.NREGISTER: self._register, kinds.NSUMMARY: self._to_all,
            kinds.NSTREAM: self._output, kinds.DISPLAY: self._output,
            kinds.MORE: self._credit, kinds.NREPLY: self._reply, kinds.LEND: self._ended,
            kinds.NDEAD: self._agent_dead}
        self._from_clients: dict[str, Callable[[bytes, Message], None]] = {
            kinds.LHELLO: self._hello, kinds.LPING: self._ping, kinds.LDETACH: self._detach,
            kinds.EXECUTE: self._cell, kinds.INTERRUPT: self._interrupt}
        for kind in PASSED:
            self._from_clients[kind] = self._pass

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
        """Relay until every rank's program ended, then close (``main``'s whole life)."""
        poller = zmq.Poller()
        for sock in (self.local_agents, self.agents, self.clients):
            poller.register(sock, zmq.POLLIN)
        next_beat = time.monotonic()
        while not self.stopping:
            wake = min(next_beat, self.cells.hold_deadline())
            events = dict(poller.poll(int(max(0.0, wake - time.monotonic()) * 1000) + 1))
            for sock in (self.local_agents, self.agents):
                if sock in events:
                    while (frames := _receive(sock)) is not None:
                        self._from_agent(sock, frames)
            if self.clients in events:
                while (frames := _receive(self.clients)) is not None:
                    self._from_client(frames[0].bytes, frames[1:])
            now = time.monotonic()
            self.cells.hold_expired(now)
            if now >= next_beat:
                next_beat = now + HEARTBEAT
                self._beat(now)
        self.close()

    def _beat(self, now: float) -> None:
        beat = pack(kinds.HB, {"interval": HEARTBEAT})
        for node in set(self.node_of.values()) - self.dead:
            self._to_agent(node, beat)
        for client, heard in list(self.heard.items()):
            if now - heard > CLIENT_TIMEOUT:
                log.info("a notebook went silent; forgetting it and its queued cells")
                self._forget(client)

    def _to_agent(self, node: str, frames: Sequence[zmq.Frame | Buffer]) -> None:
        sock, ident = self.peers.get(node, (None, b""))
        try:
            if sock is None:
                raise zmq.ZMQError(zmq.EHOSTUNREACH)
            sock.send_multipart([ident, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            self._lose_node(node)

    def _to_client(self, client: bytes, frames: Sequence[zmq.Frame | Buffer]) -> None:
        try:
            self.clients.send_multipart([client, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            pass  # gone, or not reading: it loses this message, the job loses nothing

    def send(self, kind: str, header: PlaneHeader, targets: list[int],
              client: bytes | None, done: Callable[[NodeRequest], None] | None = None
              ) -> None:
        """A request to ``targets``: to the agent of each (ranks without one are lost)."""
        request_id = header.setdefault("id", uuid.uuid4().hex) or ""  # never None here
        request = NodeRequest(request_id, kind, targets, False)
        frames = pack(kind, {**header, "targets": format_sorted(targets)})
        nodes: set[str] = set()
        for rank in targets:
            node = self.node_of.get(rank)
            if node is None or node in self.dead:
                request.lose(rank)
            else:
                nodes.add(node)
        self.open[request_id] = Open(request, client, done)
        for node in sorted(nodes):
            self._to_agent(node, frames)
        self._maybe_done(request_id)

    # -- from the agents --------------------------------------------------------------------

    def _from_agent(self, sock: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
        ident = frames[0].bytes
        try:
            _, peer = parse_identity(ident)
            msg = unpack(frames[1:], "")
        except ValueError as e:
            _drops.dropped("an agent", str(e))
            return
        node = str(peer)
        problem = kinds.check(msg.msg_type, msg.header)
        handler = self._from_agents.get(msg.msg_type)
        if problem is not None or handler is None or isinstance(peer, int):
            _drops.dropped(f"the agent of node {node}", problem or f"unexpected {msg.msg_type}")
            return
        self.peers[node] = (sock, ident)
        handler(node, msg, frames[1:])

    def _register(self, node: str, msg: Message, frames: list[zmq.Frame]) -> None:
        route = msg.header.get("via") or node
        for rank_header in msg.header.get("registered", []):
            rank = rank_header.get("rank") if isinstance(rank_header, dict) else None
            if type(rank) is int and 0 <= rank < self.size:
                self.node_of[rank] = route
                self.registered.add(rank)
        self.dead.discard(route)
        self.registrations.append(frames)
        self._to_all(node, msg, frames)

    def _to_all(self, node: str, msg: Message, frames: list[zmq.Frame]) -> None:
        """Registrations and load go to every attached notebook."""
        for client in self.heard:
            self._to_client(client, frames)

    def _output(self, node: str, msg: Message, frames: list[zmq.Frame]) -> None:
        """A request's output goes to its notebook; the agent may send more at once."""
        opened = self.open.get(msg.header.get("id") or "")
        if opened is not None and opened.client is not None:
            self._to_client(opened.client, frames)
        self._credit(node, msg, frames)

    def _credit(self, node: str, msg: Message, frames: list[zmq.Frame]) -> None:
        credit = self.credits.answer(node, msg.msg_type, msg.header)
        if credit is not None:
            self._to_agent(node, credit)

    def _reply(self, node: str, msg: Message, frames: list[zmq.Frame]) -> None:
        request_id = msg.header.get("id") or ""
        opened = self.open.get(request_id)
        if opened is None:
            return  # answered already (its ranks were lost meanwhile), or unknown
        opened.request.merge(msg, self.size)
        if opened.client is not None:  # passed on as it is; only what is pending is kept
            opened.request.values.clear()
            opened.request.groups.clear()
            opened.request.lost.clear()
            self._to_client(opened.client, frames)
        self._maybe_done(request_id)

    def _maybe_done(self, request_id: str) -> None:
        opened = self.open.get(request_id)
        if opened is None or not opened.request.done:
            return
        del self.open[request_id]
        if opened.client is not None:
            rest = opened.request.take()  # lost ranks not told yet
            if rest is not None:
                self._to_client(opened.client, rest)
        if opened.done is not None:
            opened.done(opened.request)

    def _agent_dead(self, node: str, msg: Message, frames: list[zmq.Frame]) -> None:
        self._lose_node(str(msg.header["node"]))

    def _lose_node(self, node: str) -> None:
        """An agent is gone: its ranks answer nothing any more."""
        if node in self.dead:
            return
        self.dead.add(node)
        lost = [r for r, n in self.node_of.items() if n == node]
        log.warning("the agent of node %s is gone: ranks %s cannot be reached", node,
                    format_ranks(lost))
        for request_id, opened in list(self.open.items()):
            for rank in lost:
                opened.request.lose(rank)
            if opened.client is not None and not opened.request.done:
                rest = opened.request.take()
                if rest is not None:
                    self._to_client(opened.client, rest)
            self._maybe_done(request_id)

    def _ended(self, node: str, msg: Message, frames: list[zmq.Frame]) -> None:
        self.ended[msg.header["rank"]] = msg.header
        state = pack(kinds.LSTATE, self._state())
        for client in self.heard:
            self._to_client(client, state)
        if len(self.ended) >= self.size:
            log.info("every rank's program ended; stopping")
            for agent in set(self.node_of.values()) - self.dead:
                self._to_agent(agent, pack(kinds.SHUTDOWN, {}))
            self.stopping = True

    def _state(self) -> PlaneHeader:
        failed = {str(r): f"{h.get('ename')}: {h.get('evalue')}"
                  for r, h in self.ended.items() if h.get("status") != "ok"}
        return {"ended": format_ranks(sorted(self.ended)), "failed": failed,
                "done": len(self.ended) >= self.size}

    # -- from the notebooks -----------------------------------------------------------------

    def _from_client(self, client: bytes, frames: list[zmq.Frame]) -> None:
        try:
            msg = unpack(frames, "")
        except ValueError as e:
            _drops.dropped("a notebook", str(e))
            return
        problem = kinds.check(msg.msg_type, msg.header)
        handler = self._from_clients.get(msg.msg_type)
        if problem is not None or handler is None:
            _drops.dropped("a notebook", problem or f"unexpected {msg.msg_type[:40]}")
            if msg.msg_type in kinds.REQUESTS and problem is None:
                self._refuse(client, msg.header, msg.msg_type)
            return
        self.heard[client] = time.monotonic()
        handler(client, msg)

    def _hello(self, client: bytes, msg: Message) -> None:
        info = {k: v for k, v in asdict(self.info).items()
                if k not in ("client_secret", "client_public", "server_public")}
        self._to_client(client, pack(kinds.LWELCOME, {
            "id": msg.header.get("id"), **info, "registered_ranks": len(self.registered),
            **self._state()}))
        for frames in self.registrations:
            self._to_client(client, frames)

    def _ping(self, client: bytes, msg: Message) -> None:
        self._to_client(client, pack(kinds.LSTATE, self._state()))

    def _detach(self, client: bytes, msg: Message) -> None:
        self._forget(client)

    def _targets(self, header: PlaneHeader) -> list[int]:
        try:
            return parse_ranks(header.get("targets") or f"0-{self.size - 1}", self.size)
        except ValueError:
            return []

    def _pass(self, client: bytes, msg: Message) -> None:
        # Keys and values of a PlaneHeader: a PlaneHeader (cast: TypedDicts have no filter).
        allowed = cast(PlaneHeader, {k: v for k, v in msg.header.items()
                                     if k in ("id", "names", "since", "max_bytes")})
        self.send(msg.msg_type, allowed, self._targets(msg.header), client)

    def _refuse(self, client: bytes, header: PlaneHeader, kind: str) -> None:
        self.answer(client, str(header.get("id") or ""), self._targets(header), {
            "status": "error", "ename": "NotLive", "evalue": (
                f"a live job runs cells at its safepoints and answers peek and where; "
                f"it does not take {kind!r} (no --in/--out, push, pull or apply)")})

    def answer(self, client: bytes, request_id: str, targets: list[int],
                common: dict[str, object]) -> None:
        """The endpoint's own answer for every target of a notebook's request."""
        request = NodeRequest(request_id, kinds.LRUN, targets, False)
        request.group(targets, common)
        frames = request.take()
        if frames is not None:
            self._to_client(client, frames)

    def _forget(self, client: bytes) -> None:
        self.heard.pop(client, None)
        self.cells.forget(client)

    def notice(self, client: bytes, request_id: str, text: str) -> None:
        """A line for the output of a notebook's request (``lnotice``; the cell queue's)."""
        self._to_client(client, pack(kinds.LNOTICE, {"id": request_id, "text": text}))

    def pending(self, request_id: str) -> list[int]:
        """The ranks an open request still waits for (the cell queue's hold deadline)."""
        opened = self.open.get(request_id)
        return sorted(opened.request.pending) if opened is not None else []

    def _cell(self, client: bytes, msg: Message) -> None:
        header = msg.header
        targets = self._targets(header)
        request_id = header["id"] or ""
        if not targets or request_id in self.open:
            self.answer(client, request_id, targets or [0], {
                "status": "error", "ename": "ValueError", "evalue": "no such ranks"})
            return
        self.cells.add(Cell(request_id, client, uuid.uuid4().hex, header.get("code") or "",
                            targets, header.get("execution_count")))

    def _interrupt(self, client: bytes, msg: Message) -> None:
        self.cells.interrupt(client, set(msg.header.get("ids") or []))

    def close(self) -> None:
        """Tell the notebooks the programs' last state, close the sockets and remove the
        job's directories (the end of :meth:`run`)."""
        state = pack(kinds.LSTATE, self._state())
        for client in list(self.heard):
            self._to_client(client, state)
        time.sleep(0.2)  # the last messages go out (linger 0 would drop them)
        for sock in (self.agents, self.local_agents, self.clients):
            sock.close(linger=500)
        self.auth.stop()
        self.ctx.term()
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
        # Every program ended: nothing is left to attach to (a killed job leaves the
        # directory; attaching to it then says the job has ended, asking Slurm).
        shutil.rmtree(self.directory, ignore_errors=True)


def _receive(sock: zmq.Socket[bytes]) -> list[zmq.Frame] | None:
    try:
        return sock.recv_multipart(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return None


def main(argv: list[str] | None = None) -> None:
    """``python -m hpckernel.live.endpoint``: rank 0 of a live job starts it (``rank.py``)."""
    parser = argparse.ArgumentParser(prog="python -m hpckernel.live.endpoint")
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
