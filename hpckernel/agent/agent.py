"""The agent's loop: requests from above fan out to the node's ranks (and to the agents
below, in a tree); their replies, output, registrations and load go up once per node.

Single-threaded: one ``zmq_poll`` over the sockets, and a tick every ``FLUSH`` seconds that
sends the batched output and registrations up, flushes what interrupted requests have, and
notices ranks that died (their ``exit.<rank>`` file, written by ``rank.sh``).

In a tree (``HubKernel.fanout``), an agent with agents below it answers for its whole
subtree: their registrations, summaries and output pass through it (registrations marked
``via`` it, so the hub sends their requests here), their node replies merge into its own.

Output goes up under the agent's window of credits (``plane/credit.py``): the agent tells
a rank (or an agent below) that its output is taken in only once it has sent it up, so ranks
that print faster than the hub takes their output in wait in ``print``, and the agent holds
at most a window per rank. Summaries, registrations and interrupts never wait on credits.
"""

from __future__ import annotations

import json
import logging
import os
import time
from bisect import insort
from pathlib import Path
from typing import Any

import zmq

from ..plane import Message, PlaneInfo, pack, unpack
from ..plane.addresses import node_name
from ..plane.credit import Credits, SendWindow, credit_frames, stamp_of
from ..plane.headers import PlaneHeader
from ..targets import format_ranks, parse_ranks, rank_intervals
from .link import Link
from .output import NodeOutput, Outgoing, Sender
from .replies import NodeRequest, local_targets

log = logging.getLogger("hpckernel.agent")

#: Seconds between sends of batched output and registrations (half the hub's flush).
FLUSH = 0.05
#: Requests a rank's I/O thread answers while busy (as hub/pool.CONTROL_KINDS).
CONTROL_KINDS = frozenset({"complete", "inspect", "peek", "where"})


def summary_frames(node: str, ranks: list[int], load: dict[int, list[float]],
                   below: list[list[str]] | None = None) -> list[Any]:
    """An ``nsummary``: the node's ranks that have answered a heartbeat, and their [cpu,
    rss] as JSON in the payload frame, which the hub decodes only when ``%ranks`` asks;
    with ``below``, the summaries of the agents below since the last one ([node, ranks,
    load JSON] each), so that the hub gets one message per heartbeat from a whole group."""
    known = [r for r in ranks if r in load]
    header: PlaneHeader = {"node": node, "ranks": format_ranks(known)}
    if below:
        header["summaries"] = below
    return [b"nsummary", json.dumps(header).encode(),
            json.dumps([load[r] for r in known]).encode()]


class _Kid:
    """An agent below this one: where it connected, and its ranks."""

    __slots__ = ("ident", "ranks", "sock")

    def __init__(self, ident: bytes, sock: zmq.Socket[bytes]) -> None:
        self.ident = ident
        self.sock = sock
        self.ranks: list[int] = []


class NodeAgent:
    """One node's agent (see the package docstring)."""

    def __init__(self, up: PlaneInfo, hub: PlaneInfo, job_dir: Path, node: str,
                 hub_timeout: float = 30.0, kids: bool = False) -> None:
        self.job_dir = job_dir
        self.node = node
        self.hub_timeout = hub_timeout
        self.link = Link(up, hub, job_dir, node, kids)
        self.ranks: list[int] = []  # this node's, registered here, sorted
        self.subtree: list[int] = []  # and the agents' below, sorted
        self.kids: dict[bytes, _Kid] = {}
        self.owner: dict[int, _Kid] = {}  # rank of an agent below -> that agent
        self.load: dict[int, list[float]] = {}  # rank -> [cpu, rss]
        self.below: dict[str, list[str]] = {}  # summaries of agents below, since our last
        self.requests: dict[str, NodeRequest] = {}
        self.window = SendWindow(hub.window)  # output up, to the hub or the parent agent
        self.credits: Credits[Sender] = Credits(hub.window)  # output of ranks, agents below
        self.output = NodeOutput(max(self.window.window // 4, 64 * 1024))
        self.registered: list[dict[str, Any]] = []  # not yet sent up
        self.gone: set[int] = set()
        self.stopping = False
        self._heard = time.monotonic()
        # On the hub's node, large reply buffers stay in the ranks' shared-memory segments,
        # which the hub maps itself; elsewhere this agent maps them and sends the bytes.
        self.pass_shm = up is hub and hub.node == node_name()
        first: PlaneHeader = {"node": node, "host": node_name(), "pid": os.getpid(),
                              "registered": []}
        if self.pass_shm:
            first["shm_prefix"] = self.link.shm_prefix
        self._to_hub(pack("nregister", dict(first)))

    def _to_hub(self, frames: list[Any]) -> None:
        self.link.to_hub(frames)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.link.up, zmq.POLLIN)
        for sock in self.link.downs:
            poller.register(sock, zmq.POLLIN)
        next_tick = time.monotonic() + FLUSH
        while not self.stopping:
            wait = max(0.0, next_tick - time.monotonic())
            events = dict(poller.poll(int(wait * 1000)))
            if self.link.up in events:
                self._heard = time.monotonic()
                while (frames := self.link.from_hub()) is not None:
                    self._from_hub(frames)
                    if self.stopping:
                        break
            for sock in self.link.downs:
                if sock in events:
                    while (got := self.link.receive(sock)) is not None:
                        self._from_below(sock, got)
                        if time.monotonic() >= next_tick:
                            # Ranks that flood stdout must not hold up the tick: without
                            # it no output went up and no summary, and the hub took the
                            # agent for dead.
                            break
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + FLUSH
                self._tick()
            if now - self._heard > self.hub_timeout:
                log.error("node %s: no word from the hub for %.0f s; exiting", self.node,
                          self.hub_timeout)
                break
        self.link.close()

    def _tick(self) -> None:
        if self.registered:
            self._to_hub(pack("nregister", {"node": self.node, "registered": self.registered}))
            self.registered = []
        self.output.take()
        self._pump()
        if self.requests:
            self._check_exits()
        for request in list(self.requests.values()):
            if request.interrupted:
                self._send_reply(request)  # what the ranks that stopped said, so far

    # -- from above ---------------------------------------------------------------------

    def _from_hub(self, frames: list[zmq.Frame]) -> None:
        kind = frames[0].bytes.decode("ascii", "replace")
        try:
            header: PlaneHeader = json.loads(frames[1].bytes)
        except ValueError:
            log.warning("node %s: dropped a malformed message from the hub", self.node)
            return
        if kind == "credit":  # from the hub, or the parent agent: room for more output
            if self.window.credit(stamp_of(header)):
                self._pump()
            return
        if kind in ("hb", "interrupt", "shutdown"):
            for kid in list(self.kids.values()):
                self._to_kid(kid, frames)
        if kind == "hb":
            self._beat()
        elif kind == "interrupt":
            busy = {r for q in self.requests.values() if not q.control for r in q.pending
                    if r not in self.owner}
            for request in self.requests.values():
                request.interrupted = True
            for rank in sorted(busy):
                self._to_rank(rank, frames)
        elif kind == "shutdown":
            for rank in self.ranks:
                self._to_rank(rank, frames)
            self.stopping = True
        else:
            self._request(kind, header, frames)

    def _beat(self) -> None:
        """The node's summary for the hub; and a heartbeat to every rank, whose answer
        (CPU, memory) goes into the next summary."""
        below, self.below = list(self.below.values()), {}
        self._to_hub(summary_frames(self.node, self.ranks, self.load, below))
        beat = pack("hb", {})
        for rank in self.ranks:
            if rank not in self.gone:
                self._to_rank(rank, beat)

    def _request(self, kind: str, header: PlaneHeader, frames: list[zmq.Frame]) -> None:
        request_id = header.get("id") or ""
        request = self.requests.get(request_id)
        if request is None:
            try:
                intervals = rank_intervals(header.get("targets", ""))
            except ValueError:
                log.warning("node %s: request with bad targets dropped", self.node)
                return
            request = NodeRequest(request_id, kind, local_targets(intervals, self.subtree),
                                  kind in CONTROL_KINDS)
            self.requests[request_id] = request
        only = header.get("only")
        chosen = [only] if only is not None else request.targets
        kids: dict[bytes, _Kid] = {}
        for rank in chosen:
            kid = self.owner.get(rank)
            if kid is not None:
                kids[kid.ident] = kid
            elif rank in self.gone or not self._to_rank(rank, frames):
                request.lose(rank)
        for kid in kids.values():
            self._to_kid(kid, frames)
        self._maybe_done(request)

    def _to_rank(self, rank: int, frames: list[Any]) -> bool:
        if self.link.send(self.link.down, str(rank).encode(), frames):
            return True
        self._lost([rank])
        return False

    def _to_kid(self, kid: _Kid, frames: list[Any]) -> None:
        if self.link.send(kid.sock, kid.ident, frames):
            return
        # The agent below is gone: the hub hears it first, so it names its node.
        del self.kids[kid.ident]
        self._to_hub(pack("ndead", {"node": kid.ident[1:].decode(errors="replace")}))
        self._lost(kid.ranks)

    # -- from below ---------------------------------------------------------------------

    def _from_below(self, sock: zmq.Socket[bytes], got: list[zmq.Frame]) -> None:
        ident = got[0].bytes
        try:
            peer = None if ident[:1] == b"@" else int(ident)
            msg = unpack(got[1:], self.link.shm_prefix, keep_shm=self.pass_shm)
        except (ValueError, UnicodeDecodeError):
            log.warning("node %s: dropped a malformed message", self.node)
            return
        if peer is None:
            kid = self.kids.get(ident)
            if kid is None:
                kid = self.kids[ident] = _Kid(ident, sock)
            kid.sock = sock
            self._from_kid(kid, msg, got[1:])
        else:
            self._from_rank(peer, msg, got[1:])

    def _from_rank(self, rank: int, msg: Message, frames: list[zmq.Frame]) -> None:
        header = msg.header
        kind = msg.msg_type
        if kind == "reply":
            request = self.requests.get(header.get("id") or "")
            if request is not None:
                request.reply(rank, header, [msg.payload, *msg.buffers])
                self._maybe_done(request)
        elif kind == "stream":
            self.output.add_stream(rank, header.get("id") or "", header["name"], header["text"],
                                   self._arrived(rank, header))
        elif kind == "display":
            self.output.add_display(rank, header.get("id") or "", header["msg_type"],
                                    frames[2:], self._arrived(rank, header))
            self._pump()
        elif kind == "more":
            self._asked(rank, header)
        elif kind == "hb":
            self.load[rank] = [header.get("cpu", 0.0), header.get("rss", 0)]
        elif kind == "register":
            if rank not in self.ranks:
                insort(self.ranks, rank)
                insort(self.subtree, rank)
            self.gone.discard(rank)
            self.registered.append(header)
        else:  # live values and anything newer: the hub knows the rank from the header
            self._to_hub(frames)

    def _from_kid(self, kid: _Kid, msg: Message, frames: list[zmq.Frame]) -> None:
        header: PlaneHeader = msg.header  # type: ignore[assignment]
        if msg.msg_type == "nreply":
            request = self.requests.get(header.get("id") or "")
            if request is None:
                return
            at = 0
            for rank, count in header.get("values", []):
                request.values[rank] = msg.buffers[at:at + count]
                at += count
            for ranks, common in header.get("groups", []):
                request.group(parse_ranks(ranks), common)
            for rank in parse_ranks(header.get("lost") or ""):
                request.lose(rank)
            self._maybe_done(request)
            return
        if msg.msg_type == "nregister":
            for rank_header in header.get("registered", []):
                below = rank_header.get("rank")
                if isinstance(below, int) and below not in self.owner:
                    self.owner[below] = kid
                    insort(kid.ranks, below)
                    insort(self.subtree, below)
            # The hub sends the requests of those ranks here, the top of their subtree.
            self._to_hub(pack("nregister", {**msg.header, "via": self.node}))
            return
        if msg.msg_type == "nsummary":  # goes up with ours, at the next heartbeat
            node = str(header.get("node"))
            self.below[node] = [node, header.get("ranks") or "", bytes(msg.payload).decode()]
            return
        if msg.msg_type == "more":
            self._asked(kid.ident, msg.header)
            return
        stamp = stamp_of(msg.header)
        if msg.msg_type in ("nstream", "display") and stamp is not None:
            # Output passes through, in order with ours, under this agent's window; its
            # size is what the agent below counted (the step between its stamps).
            size = max(stamp - self.credits.last_arrived(kid.ident), 0)
            self.credits.arrived(kid.ident, stamp)
            up = dict(msg.header)
            del up["sent"]
            self.output.ready.append(Outgoing([frames[0], b"", *frames[2:]], up, size,
                                              {kid.ident: stamp}))
            self._pump()
            return
        self._to_hub(frames)  # live values pass through as they are

    def _maybe_done(self, request: NodeRequest) -> None:
        if request.done:
            self._send_reply(request)
            del self.requests[request.id]

    def _send_reply(self, request: NodeRequest) -> None:
        self.output.take(request.id)  # output before the reply that ends it
        reply = request.take()
        if reply is not None:
            self.output.ready.append(Outgoing(reply))
        self._pump()

    # -- flow control (plane/credit.py) ---------------------------------------------------

    def _pump(self) -> None:
        """Send up what is ready, in order, while the window has room; then tell the ranks
        (and agents below) whose output went up."""
        ready = self.output.ready
        window = self.window
        while ready:
            out = ready[0]
            if out.size and not window.fits(out.size):
                more = window.ask()
                if more is not None:
                    self._to_hub(more)
                return
            ready.popleft()
            self._to_hub(out.encode(window.take(out.size) if out.size else None))
            for sender, stamp in out.credits.items():
                self._tell(sender, self.credits.taken(sender, stamp))

    def _arrived(self, sender: Sender, header: dict[str, Any]) -> int | None:
        stamp = stamp_of(header)
        if stamp is not None:
            self.credits.arrived(sender, stamp)
        return stamp

    def _asked(self, sender: Sender, header: dict[str, Any]) -> None:
        """``sender`` waits for credit (``more``): told at once if all it sent went up."""
        stamp = stamp_of(header)
        if stamp is not None:
            self._tell(sender, self.credits.asked(sender, stamp))

    def _tell(self, sender: Sender, stamp: int | None) -> None:
        if stamp is None:
            return
        # Not _to_rank/_to_kid: a peer found gone here would end requests from inside
        # _pump; its death is noticed on the request's, or the heartbeat's, next send.
        if isinstance(sender, int):
            if sender not in self.gone:
                self.link.send(self.link.down, str(sender).encode(), credit_frames(stamp))
        elif (kid := self.kids.get(sender)) is not None:
            self.link.send(kid.sock, kid.ident, credit_frames(stamp))

    # -- deaths -------------------------------------------------------------------------

    def _lost(self, ranks: list[int]) -> None:
        """Ranks that cannot be reached or have ended: no request waits for them any more
        (the hub finds out how they ended)."""
        self.gone.update(ranks)
        for request in list(self.requests.values()):
            for rank in ranks:
                request.lose(rank)
            self._maybe_done(request)

    def _check_exits(self) -> None:
        waiting = {r for q in self.requests.values() for r in q.pending
                   if r not in self.owner} - self.gone
        lost = [r for r in waiting if os.path.exists(self.job_dir / f"exit.{r}")]
        if lost:
            self._lost(lost)
