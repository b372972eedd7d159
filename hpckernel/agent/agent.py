"""The agent's loop: requests from above fan out to the node's ranks (and to the agents
below, in a tree); their replies, output, registrations and load go up once per node.

Single-threaded: one ``zmq_poll`` over the sockets, and a tick every ``FLUSH`` seconds that
sends the batched output and registrations up, flushes what interrupted requests have, and
notices ranks that died (their ``exit.<launch>.<rank>`` file, written by ``rank.sh``).
Messages from each side are dispatched through a table from kind (``plane/kinds.py``) to
handler; one a kind's required header fields are missing from is dropped.

In a tree (``HubKernel.fanout``), an agent with agents below it answers for its whole
subtree: their registrations, summaries and output pass through it (registrations marked
``via`` it, so the hub sends their requests here), their node replies merge into its own.

Output and replies go up under the agent's window of credits (``flow.py``); summaries,
registrations and interrupts never wait on credits.

An agent killed while its ranks run is started again by ``rank.sh``: it binds the same
sockets (``link.py``), the ranks and the agents below register with it again when they
reconnect, and the hub sends it what is open on them (``hub/fanin/agents.py``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from bisect import insort
from collections.abc import Callable, Sequence
from pathlib import Path

import zmq

from ..plane import Message, PlaneInfo, kinds, pack, unpack
from ..plane.addresses import node_name
from ..plane.credit import credit_frames
from ..plane.droplog import DropLog
from ..plane.headers import PlaneHeader
from ..plane.identity import current_launch, parse_identity, rank_identity
from ..plane.wire import OutFrame
from ..targets import format_ranks, parse_ranks, rank_intervals
from .flow import UpFlow
from .link import Link
from .output import Sender
from .replies import NodeRequest, local_targets

log = logging.getLogger("hpckernel.agent")
_drops = DropLog(log)

#: Seconds between sends of batched output and registrations (half the hub's flush).
FLUSH = 0.05
#: The most ranks a request's targets may name (a bound on what a message can make).
MAX_RANKS = 1 << 24


def summary_frames(node: str, ranks: list[int], load: dict[int, list[float]],
                   below: list[list[str]] | None = None) -> list[OutFrame]:
    """An ``nsummary``: the node's ranks that have answered a heartbeat, and their [cpu,
    rss] as JSON in the payload frame, which the hub decodes only when ``%ranks`` asks;
    with ``below``, the summaries of the agents below since the last one ([node, ranks,
    load JSON] each), so that the hub gets one message per heartbeat from a whole group."""
    known = [r for r in ranks if r in load]
    header: PlaneHeader = {"node": node, "ranks": format_ranks(known)}
    if below:
        header["summaries"] = below
    return [kinds.NSUMMARY.encode(), json.dumps(header).encode(),
            json.dumps([load[r] for r in known]).encode()]


class AgentBelow:
    """An agent below this one in the tree: where it connected, and its ranks."""

    __slots__ = ("ident", "ranks", "sock")

    def __init__(self, ident: bytes, sock: zmq.Socket[bytes]) -> None:
        self.ident = ident
        self.sock = sock
        self.ranks: list[int] = []


class NodeAgent:
    """One node's agent (see the module docstring)."""

    def __init__(self, up: PlaneInfo, hub: PlaneInfo, job_dir: Path, node: str,
                 hub_timeout: float = 30.0, kids: bool = False) -> None:
        self.job_dir = job_dir
        self.node = node
        self.hub_timeout = hub_timeout
        self.launch = current_launch()
        self.link = Link(up, hub, job_dir, node, kids)
        self.ranks: list[int] = []  # this node's, registered here, sorted
        self.subtree: list[int] = []  # and the agents' below, sorted
        self.kids: dict[bytes, AgentBelow] = {}
        self.owner: dict[int, AgentBelow] = {}  # rank of an agent below -> that agent
        self.load: dict[int, list[float]] = {}  # rank -> [cpu, rss]
        self.below: dict[str, list[str]] = {}  # summaries of agents below, since our last
        self.requests: dict[str, NodeRequest] = {}
        self.flow = UpFlow(hub.window, self._to_hub, self._tell)
        self.output = self.flow.output  # what the node has to send up, batched per tick
        self.registered: list[PlaneHeader] = []  # not yet sent up
        self.headers: dict[int, PlaneHeader] = {}  # every registration, for a new parent
        self.gone: set[int] = set()
        self.stopping = False
        self._heard = time.monotonic()
        self._connects = 0
        # On the hub's node, large reply buffers stay in the ranks' shared-memory segments,
        # which the hub maps itself; elsewhere this agent maps them and sends the bytes.
        self.pass_shm = up is hub and hub.shm and hub.node == node_name()
        self._from_above: dict[str, Callable[[PlaneHeader, list[zmq.Frame]], None]] = {
            kinds.CREDIT: self._credit, kinds.HB: self._beat,
            kinds.INTERRUPT: self._interrupt, kinds.SHUTDOWN: self._shutdown}
        for kind in kinds.REQUESTS | kinds.CONTROL_REQUESTS | kinds.LIVE_REQUESTS:
            self._from_above[kind] = self._request
        self._from_ranks: dict[str, Callable[[int, Message, list[zmq.Frame]], None]] = {
            kinds.REPLY: self._rank_reply, kinds.STREAM: self._rank_stream,
            kinds.DISPLAY: self._rank_display, kinds.MORE: self._rank_more,
            kinds.HB: self._rank_load, kinds.REGISTER: self._rank_register,
            kinds.LIVE: self._pass_up, kinds.DAPEVENT: self._pass_up,
            kinds.LEND: self._pass_up}
        self._from_kids: dict[str, Callable[[AgentBelow, Message, list[zmq.Frame]], None]] = {
            kinds.NREPLY: self._kid_reply, kinds.NREGISTER: self._kid_register,
            kinds.NSUMMARY: self._kid_summary, kinds.MORE: self._kid_more,
            kinds.NSTREAM: self._kid_output, kinds.DISPLAY: self._kid_output,
            kinds.LIVE: self._pass_up, kinds.NDEAD: self._pass_up,
            kinds.DAPEVENT: self._pass_up, kinds.LEND: self._pass_up}
        self._to_hub(self._first_register())

    def _first_register(self, ranks: list[PlaneHeader] | None = None) -> list[OutFrame]:
        first: PlaneHeader = {"node": self.node, "host": node_name(), "pid": os.getpid(),
                              "registered": ranks or []}
        if self.pass_shm:
            first["shm_prefix"] = self.link.shm_prefix
        return pack(kinds.NREGISTER, dict(first))

    def _to_hub(self, frames: Sequence[OutFrame]) -> None:
        self.link.to_hub(frames)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Serve until the hub says ``shutdown`` or falls silent (``__main__``)."""
        poller = zmq.Poller()
        poller.register(self.link.up, zmq.POLLIN)
        poller.register(self.link.up_monitor, zmq.POLLIN)
        for sock in self.link.downs:
            poller.register(sock, zmq.POLLIN)
        if self.link.guard is not None:
            poller.register(self.link.guard.monitor, zmq.POLLIN)
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
            if self.link.up_monitor in events:
                self._reconnected()
            if self.link.guard is not None and self.link.guard.monitor in events:
                self.link.guard.drain()
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
            self._to_hub(pack(kinds.NREGISTER, {"node": self.node,
                                                "registered": self.registered}))
            self.registered = []
        self.output.take()
        self.flow.pump()
        if self.requests:
            self._check_exits()
        for request in list(self.requests.values()):
            if request.interrupted:
                self.flow.reply(request)  # what the ranks that stopped said, so far

    def _reconnected(self) -> None:
        """The link up (re)connected; after the first time, to a parent agent started again:
        register with it again, with every rank below this agent."""
        while self.link.up_connected():
            self._connects += 1
            if self._connects > 1:
                # One message with every rank: the hub sends what is open on them once it
                # has it, and the parent must know them all by then.
                self._to_hub(self._first_register(list(self.headers.values())))
                self.registered = []

    # -- from above ---------------------------------------------------------------------

    def _from_hub(self, frames: list[zmq.Frame]) -> None:
        kind = frames[0].bytes.decode("ascii", "replace")
        try:
            header: PlaneHeader = json.loads(frames[1].bytes)
            if not isinstance(header, dict):
                raise ValueError("header is not an object")
        except (ValueError, RecursionError):
            _drops.dropped("the hub", "undecodable header")
            return
        handler = self._from_above.get(kind)
        problem = kinds.check(kind, header)
        if handler is None or problem is not None:
            _drops.dropped("the hub", problem or f"unexpected {kind[:40]}")
            return
        handler(header, frames)

    def _credit(self, header: PlaneHeader, frames: list[zmq.Frame]) -> None:
        """Room for more output, from the hub or the parent agent."""
        self.flow.credit(header)

    def _to_kids(self, frames: Sequence[OutFrame]) -> None:
        for kid in list(self.kids.values()):
            self._to_kid(kid, frames)

    def _beat(self, header: PlaneHeader, frames: list[zmq.Frame]) -> None:
        """The node's summary for the hub; and a heartbeat to every rank, whose answer
        (CPU, memory) goes into the next summary."""
        self._to_kids(frames)
        below, self.below = list(self.below.values()), {}
        self._to_hub(summary_frames(self.node, self.ranks, self.load, below))
        beat = pack(kinds.HB, {})
        for rank in self.ranks:
            if rank not in self.gone:
                self._to_rank(rank, beat)

    def _interrupt(self, header: PlaneHeader, frames: list[zmq.Frame]) -> None:
        """The ranks pending in the requests ``ids`` stop them (queued or running); the ranks
        ``late`` names stop whatever they run."""
        self._to_kids(frames)
        ids = {i for i in header.get("ids") or [] if isinstance(i, str)}
        try:
            late = set(parse_ranks(header.get("late") or "", MAX_RANKS)) & set(self.ranks)
        except ValueError:
            late = set()
        busy: set[int] = set()
        for request in self.requests.values():
            if request.id in ids:
                request.interrupted = True
                busy.update(r for r in request.pending if r not in self.owner)
        stop = pack(kinds.INTERRUPT, {"ids": sorted(ids)})
        for rank in sorted(busy - late):
            self._to_rank(rank, stop)
        stop_any = pack(kinds.INTERRUPT, {"ids": sorted(ids), "any": True})
        for rank in sorted(late):
            self._to_rank(rank, stop_any)

    def _shutdown(self, header: PlaneHeader, frames: list[zmq.Frame]) -> None:
        self._to_kids(frames)
        for rank in self.ranks:
            self._to_rank(rank, frames)
        self.stopping = True

    def _request(self, header: PlaneHeader, frames: list[zmq.Frame]) -> None:
        kind = frames[0].bytes.decode("ascii")
        request_id = str(header["id"])
        try:
            intervals = rank_intervals(header.get("targets", ""), MAX_RANKS)
        except ValueError:
            _drops.dropped("the hub", "a request with bad targets")
            return
        mine = local_targets(intervals, self.subtree)
        request = self.requests.get(request_id)
        if request is None:
            request = NodeRequest(request_id, kind, mine, kinds.is_control(kind))
            self.requests[request_id] = request
        else:
            # Sent again (this agent, or one below, was started again): ranks that
            # registered since are waited for too; those that answered are not asked again.
            request.add_targets(mine)
        only = header.get("only")
        chosen = [only] if isinstance(only, int) else request.targets
        kids: dict[bytes, AgentBelow] = {}
        for rank in chosen:
            kid = self.owner.get(rank)
            if kid is not None:
                kids[kid.ident] = kid
            elif rank in self.gone or not self._to_rank(rank, frames):
                request.lose(rank)
        for kid in kids.values():
            self._to_kid(kid, frames)
        self._maybe_done(request)

    def _to_rank(self, rank: int, frames: Sequence[OutFrame]) -> bool:
        if self.link.send(self.link.down, rank_identity(self.launch, rank), frames):
            return True
        self._lost([rank])
        return False

    def _to_kid(self, kid: AgentBelow, frames: Sequence[OutFrame]) -> None:
        if self.link.send(kid.sock, kid.ident, frames):
            return
        # The agent below is gone: the hub hears it from here, so it names its node. Its
        # ranks are not given up on: rank.sh starts it again, and the hub sends its
        # successor (through here) what is open on them; or the hub ends the ranks.
        if self.kids.get(kid.ident) is kid:
            del self.kids[kid.ident]
        try:
            node = str(parse_identity(kid.ident)[1])
        except ValueError:
            node = "?"
        self._to_hub(pack(kinds.NDEAD, {"node": node}))

    # -- from below ---------------------------------------------------------------------

    def _from_below(self, sock: zmq.Socket[bytes], got: list[zmq.Frame]) -> None:
        ident = got[0].bytes
        try:
            launch, peer = parse_identity(ident)
            msg = unpack(got[1:], self.link.shm_prefix, keep_shm=self.pass_shm)
        except ValueError as e:  # UnicodeDecodeError too
            _drops.dropped("a peer below", str(e))
            return
        if launch != self.launch:
            return  # a rank or agent of an earlier launch
        problem = kinds.check(msg.msg_type, msg.header)
        if problem is not None:
            _drops.dropped(f"rank {peer}" if isinstance(peer, int) else f"node {peer}", problem)
            return
        if isinstance(peer, int):
            rank_handler = self._from_ranks.get(msg.msg_type)
            if rank_handler is not None:
                rank_handler(peer, msg, got[1:])
            return
        kid = self.kids.get(ident)
        if kid is None:
            kid = self.kids[ident] = AgentBelow(ident, sock)
        kid.sock = sock
        kid_handler = self._from_kids.get(msg.msg_type)
        if kid_handler is not None:
            kid_handler(kid, msg, got[1:])

    def _pass_up(self, peer: int | AgentBelow, msg: Message, frames: list[zmq.Frame]) -> None:
        """Live values, debugger events (and a lower agent's ``ndead``) go up as they are."""
        self._to_hub(frames)

    def _rank_reply(self, rank: int, msg: Message, frames: list[zmq.Frame]) -> None:
        request_id = msg.header.get("id") or ""
        request = self.requests.get(request_id)
        if request is None:
            # A request this agent has no record of (it was started again since, or gave
            # the rank up): the reply goes up alone, for the hub to take if it still waits.
            request = NodeRequest(request_id, str(msg.header.get("request", "")), [rank],
                                  False)
        request.reply(rank, msg.header, [msg.payload, *msg.buffers])
        if request.id not in self.requests:
            self.flow.reply(request)
        self._maybe_done(request)

    def _rank_stream(self, rank: int, msg: Message, frames: list[zmq.Frame]) -> None:
        header = msg.header
        self.output.add_stream(rank, header.get("id") or "", header["name"], header["text"],
                               self.flow.arrived(rank, header))

    def _rank_display(self, rank: int, msg: Message, frames: list[zmq.Frame]) -> None:
        self.output.add_display(rank, msg.header.get("id") or "", msg.header["msg_type"],
                                frames[2:], self.flow.arrived(rank, msg.header))
        self.flow.pump()

    def _rank_more(self, rank: int, msg: Message, frames: list[zmq.Frame]) -> None:
        self.flow.asked(rank, msg.header)

    def _rank_load(self, rank: int, msg: Message, frames: list[zmq.Frame]) -> None:
        self.load[rank] = [msg.header.get("cpu", 0.0), msg.header.get("rss", 0)]

    def _rank_register(self, rank: int, msg: Message, frames: list[zmq.Frame]) -> None:
        if rank not in self.ranks:
            insort(self.ranks, rank)
            insort(self.subtree, rank)
        self.gone.discard(rank)
        header = msg.header.copy()
        self.headers[rank] = header
        self.registered.append(header)

    def _kid_reply(self, kid: AgentBelow, msg: Message, frames: list[zmq.Frame]) -> None:
        header = msg.header
        request = self.requests.get(header.get("id") or "")
        if request is None:
            self._to_hub(frames)  # one this agent has no record of: the hub decides
            return
        request.merge(msg, MAX_RANKS)
        self._maybe_done(request)

    def _kid_register(self, kid: AgentBelow, msg: Message, frames: list[zmq.Frame]) -> None:
        for rank_header in msg.header.get("registered", []):
            below = rank_header.get("rank") if isinstance(rank_header, dict) else None
            if type(below) is int:
                if below not in self.owner:
                    insort(self.subtree, below)
                if below not in kid.ranks:
                    insort(kid.ranks, below)
                self.owner[below] = kid  # a successor of the agent below takes them over
        # The hub sends the requests of those ranks here, the top of their subtree.
        self._to_hub(pack(kinds.NREGISTER, {**msg.header, "via": self.node}))

    def _kid_summary(self, kid: AgentBelow, msg: Message, frames: list[zmq.Frame]) -> None:
        """Goes up with ours, at the next heartbeat."""
        node = str(msg.header.get("node"))
        self.below[node] = [node, msg.header.get("ranks") or "", bytes(msg.payload).decode()]

    def _kid_more(self, kid: AgentBelow, msg: Message, frames: list[zmq.Frame]) -> None:
        self.flow.asked(kid.ident, msg.header)

    def _kid_output(self, kid: AgentBelow, msg: Message, frames: list[zmq.Frame]) -> None:
        self.flow.passed(kid.ident, msg, frames)

    def _maybe_done(self, request: NodeRequest) -> None:
        if request.done and request.id in self.requests:
            self.flow.reply(request)
            del self.requests[request.id]

    # -- credits to the senders below (flow.py) ------------------------------------------

    def _tell(self, sender: Sender, stamp: int) -> None:
        """``sender`` (a rank, or an agent below) may send output up to ``stamp``."""
        # Not _to_rank/_to_kid: a peer found gone here would end requests from inside
        # UpFlow.pump; its death is noticed on the request's, or the heartbeat's, next send.
        if isinstance(sender, int):
            if sender not in self.gone:
                self.link.send(self.link.down, rank_identity(self.launch, sender),
                               credit_frames(stamp))
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
        lost = [r for r in waiting
                if os.path.exists(self.job_dir / f"exit.{self.launch}.{r}")]
        if lost:
            self._lost(lost)
