"""One node agent per node talks to the node's ranks, the hub to the agents
(``HubKernel.fanin``): a request goes once to each node with its targets as a range string;
each agent answers once for its node (``nreply``), sends its ranks' output merged
(``nstream``, ``display`` with a rank range) and one summary per heartbeat (``nsummary``).
The rank table, the requests in flight and the output merger are the same as with the
direct fan-in; only their per-rank bookkeeping is done in bulk.

An agent that stops answering (its process killed, its node gone) is *lost*: the cells its
ranks run say so, and ``launcher/rank.sh`` starts it again on its node. The new agent binds
the same socket, the ranks reconnect and register again, and the hub sends it the requests
still open on its ranks (a rank answers a request it has already run from what it
remembers of it, ``worker/channel.py``): the cells go on, and what the ranks printed while
their agent was down is said to be possibly missing. An agent that does not come back
within ``agent_return`` seconds leaves its ranks unreachable though they may still run:
then every rank is ended (``FaninContext.end_ranks``), since the MPI job cannot go on
without them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import zmq

from ...plane import Message, kinds, pack, shm
from ...plane.credit import Credits
from ...plane.droplog import DropLog
from ...plane.headers import PlaneHeader
from ...plane.wire import attach_segments
from ...targets import format_ranks, format_sorted, parse_ranks
from ..ranktable import RankInfo
from ..requests import Request
from ..transport import Peer
from .base import Fanin, FaninContext

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)
_drops = DropLog(log)


@dataclass
class NodeInfo:
    """What the hub knows of one node's agent."""

    key: str
    host: str = ""
    pid: int | None = None
    ranks: list[int] = field(default_factory=list)
    heard: float = 0.0  # monotonic time of its last message
    unreachable_since: float | None = None
    lost_since: float | None = None  # its agent is gone; it may come back
    #: a new agent's process registers the node's ranks again (those it has so far)
    returning: bool = False
    rejoined: set[int] = field(default_factory=set)
    shm_prefix: str | None = None  # an agent on the hub's node: its ranks' segments
    route: str = ""  # the agent it talks to the hub through (itself, or its group's first)
    dead: bool = False  # given up on: its ranks were ended
    #: the last summary's ranks (a range string) and their [cpu, rss] pairs (JSON), kept
    #: undecoded: only %ranks and the dashboard read them
    load: tuple[str, bytes] = ("", b"")

    def where(self) -> str:
        """The node, for messages: its host and key."""
        return f"node {self.host} ({self.key})" if self.host else f"node {self.key}"


class AgentFanin(Fanin):
    """The hub's side of node agents (see the module docstring)."""

    uses_agents = True

    def __init__(self, ctx: FaninContext) -> None:
        super().__init__(ctx)
        self.nodes: dict[str, NodeInfo] = {}
        #: rank -> the agent the hub sends its requests to (its node's, or the top of its
        #: subtree when agents form a tree)
        self.node_of: dict[int, str] = {}
        self.routes: set[str] = set()  # agents that talk to the hub
        #: how far each agent's output is taken in (flow control, plane/credit.py)
        self.credits: Credits[str] = Credits(ctx.settings.output_window)
        self._handlers: dict[str, Callable[[NodeInfo, Message], None]] = {
            kinds.NREGISTER: self._register, kinds.NSUMMARY: self._summary,
            kinds.NSTREAM: self._stream, kinds.DISPLAY: self._display,
            kinds.NREPLY: self._reply, kinds.LIVE: self._live, kinds.MORE: _credited,
            kinds.DAPEVENT: self._dap_event}

    # -- to the agents --------------------------------------------------------------------

    def send(self, request: Request, header: Mapping[str, object], value: object,
             per_rank: dict[int, object] | None) -> None:
        """Send ``request`` once per node of its targets (a scatter: a message per rank, to its
        node's agent), kept until it ends so that an agent that comes back gets it again."""
        header = {**header, "targets": format_sorted(request.targets)}
        if per_rank is not None:
            by_node = [(self.node_of.get(rank, ""),
                        pack(request.kind, {**header, "only": rank}, per_rank[rank],
                             has_value=True)) for rank in request.targets]
        else:
            frames = pack(request.kind, header, value, has_value=value is not None)
            nodes = (self.routes if len(request.targets) == self.ctx.size
                     else {self.node_of.get(r, "") for r in request.targets})
            by_node = [(node, frames) for node in nodes]
        self.ctx.inflight.add(request, kinds.is_control(request.kind))
        # Kept while the request is open: a node whose agent comes back gets it again.
        request.sent = by_node
        for node, frames in by_node:
            self._send(node, frames)

    def interrupt(self, ranks: list[int] | None = None) -> None:
        """Interrupt the open requests at every agent (and the stuck ranks), or ``ranks``."""
        if ranks is not None:
            header: PlaneHeader = {"late": format_ranks(ranks)}
        else:
            header = {"ids": self.ctx.inflight.open_ids(),
                      "late": format_ranks(i.rank for i in self.ctx.table if i.state == "stuck")}
        frames = pack(kinds.INTERRUPT, dict(header))
        for node in list(self.routes):
            self._send(node, frames)

    def shutdown(self) -> None:
        """Ask every agent to end its node's ranks."""
        frames = pack(kinds.SHUTDOWN, {})
        for node in list(self.routes):
            self._send(node, frames)

    def heartbeat(self, now: float) -> None:
        """Ping every agent (each answers with its node's summary); an agent silent for
        ``agent_timeout`` seconds, or unreachable for a second, is lost; one lost for
        ``agent_return`` seconds is given up on."""
        settings = self.ctx.settings
        beat = pack(kinds.HB, {"interval": settings.heartbeat_interval})
        for info in list(self.nodes.values()):
            if info.dead:
                continue
            if info.lost_since is not None:
                if now - info.lost_since > settings.agent_return:
                    self._give_up(info)
                continue
            if info.key in self.routes:
                self._send(info.key, beat)  # an agent below another gets it from that one
            if now - info.heard > settings.agent_timeout:
                self._lost(info, f"no word from it for {now - info.heard:.0f} s")
            elif info.unreachable_since is not None and now - info.unreachable_since >= 1.0:
                self._lost(info, "its process ended")

    def _send(self, node: str, frames: Sequence[Buffer | zmq.Frame]) -> None:
        info = self.nodes.get(node)
        if info is None or info.dead or info.lost_since is not None:
            return  # a lost agent gets the open requests again when it is back
        if not self.ctx.transport.send(node, frames) and info.unreachable_since is None:
            info.unreachable_since = time.monotonic()

    # -- from the agents ------------------------------------------------------------------

    def handle(self, peer: Peer, msg: Message) -> None:
        """A message from the agent ``peer``, or passed up by it from an agent below (whose
        registrations and summaries name their own node)."""
        if not isinstance(peer, str):
            return  # a rank talking to the hub, though this launch has agents: not ours
        header = msg.header
        problem = kinds.check(msg.msg_type, header)
        if problem is not None:
            _drops.dropped(f"the agent of node {peer}", problem)
            return
        if msg.msg_type == kinds.NDEAD:  # an agent below the one talking to the hub
            below = self.nodes.get(header["node"])
            if below is not None and not below.dead and below.lost_since is None:
                self._lost(below, "its process ended")
            return
        node = peer
        if msg.msg_type in (kinds.NREGISTER, kinds.NSUMMARY):
            node = str(header.get("node") or peer)
        info = self.nodes.get(node)
        if info is None:
            if msg.msg_type != kinds.NREGISTER:
                return
            info = self.nodes[node] = NodeInfo(node)
        if info.dead:
            return  # given up on: its ranks were ended
        info.heard = time.monotonic()
        info.unreachable_since = None
        handler = self._handlers.get(msg.msg_type)
        if handler is None:
            _drops.dropped(f"the agent of node {peer}", f"unexpected {msg.msg_type}")
            return
        handler(info, msg)
        if info.lost_since is not None and not info.returning:
            self._back(info)  # the same agent, silent for a while (stopped, overloaded)
        if msg.msg_type in kinds.OUTPUT or msg.msg_type == kinds.MORE:
            # Output taken in (merged), or the agent waits (``more``: all it sent before is
            # taken in): credit to the agent it came through (plane/credit.py).
            frames = self.credits.answer(peer, msg.msg_type, msg.header)
            if frames is not None:
                self._send(peer, frames)

    def _register(self, info: NodeInfo, msg: Message) -> None:
        header: PlaneHeader = msg.header  # type: ignore[assignment]
        pid = header.get("pid")
        if info.pid is not None and pid is not None and pid != info.pid:
            # A new agent on the node: its ranks register with it again, then it gets
            # what is open on them (_back).
            if info.lost_since is None:
                self._lost(info, "it was started again")
            info.returning, info.rejoined = True, set()
        info.host = header.get("host") or info.host
        info.pid = pid or info.pid
        prefix = header.get("shm_prefix")
        if prefix and shm.PREFIX.match(prefix) and self.ctx.transport.is_local(info.key):
            info.shm_prefix = prefix
        route = info.route = header.get("via") or info.key
        self.routes.add(route)
        size = self.ctx.size
        for rank_header in header.get("registered", []):
            rank = rank_header.get("rank") if isinstance(rank_header, dict) else None
            if type(rank) is not int or not 0 <= rank < size:
                continue
            self.node_of[rank] = route
            if rank not in info.ranks:
                info.ranks.append(rank)
            info.rejoined.add(rank)
            self.ctx.register(self.ctx.table[rank], rank_header)  # type: ignore[arg-type]
        if info.returning and info.rejoined.issuperset(info.ranks):
            self._back(info)

    def _back(self, info: NodeInfo) -> None:
        """The node's agent is back (a new one, its ranks registered again; or the old one
        after a silence): send it what is open on its ranks."""
        info.lost_since, info.returning, info.rejoined = None, False, set()
        ranks = set(info.ranks)
        open_requests = self.ctx.inflight.open_on(ranks)
        for request in open_requests:
            for node, frames in request.sent:
                if node == info.route:
                    self.ctx.transport.send(node, frames)
        log.info("the agent of %s is back; %d open requests sent to it again", info.where(),
                 len(open_requests))
        self.ctx.inflight.notice(sorted(ranks), (
            f"the agent of {info.where()} was started again: ranks {format_ranks(ranks)} "
            "are reached again; output they printed while it was down may be missing"))

    def _summary(self, info: NodeInfo, msg: Message) -> None:
        info.load = (msg.header.get("ranks") or "", bytes(msg.payload))
        for entry in msg.header.get("summaries") or []:  # agents below it
            if not (isinstance(entry, list) and len(entry) == 3):
                continue
            below = self.nodes.get(str(entry[0]))
            if below is not None and not below.dead and below.lost_since is None:
                below.heard = info.heard
                below.load = (str(entry[1]), str(entry[2]).encode())

    def _stream(self, info: NodeInfo, msg: Message) -> None:
        request = self.ctx.inflight.get(msg.header.get("id") or "")
        if request is None or request.merger is None:
            return
        add, name = request.merger.add_stream, msg.header["name"]
        for part in msg.header["parts"]:
            ranks, text = self._part(part)
            for rank in ranks:
                add(rank, name, text)

    def _part(self, part: list[str]) -> tuple[list[int], str]:
        """A ``[ranks, text]`` entry of an ``nstream`` (nothing if malformed)."""
        try:
            ranks, text = part
            if isinstance(text, str):
                return parse_ranks(ranks, self.ctx.size), text
        except (TypeError, ValueError):
            pass
        _drops.dropped("a node agent", "malformed nstream part")
        return [], ""

    def _display(self, info: NodeInfo, msg: Message) -> None:
        request = self.ctx.inflight.get(msg.header.get("id") or "")
        if request is None or request.merger is None:
            return
        ranks = self._ranks(msg.header.get("ranks"))
        if ranks:
            content = msg.value()
            for rank in ranks:
                request.merger.add_display(rank, msg.header["msg_type"], content)

    def _ranks(self, text: str | None) -> list[int]:
        try:
            return parse_ranks(text, self.ctx.size) if isinstance(text, str) else []
        except ValueError:
            _drops.dropped("a node agent", "bad rank range")
            return []

    def _live(self, info: NodeInfo, msg: Message) -> None:
        rank = msg.header["rank"]
        if 0 <= rank < self.ctx.size:
            self.ctx.live.add(msg.header["name"], rank, msg.value())

    def _dap_event(self, info: NodeInfo, msg: Message) -> None:
        rank = msg.header["rank"]
        if 0 <= rank < self.ctx.size:
            self.ctx.dap_event(rank, msg.header["event"])

    def _reply(self, info: NodeInfo, msg: Message) -> None:
        header = msg.header
        request_id = header.get("id") or ""
        groups: list[tuple[list[int], PlaneHeader]] = []
        for entry in header.get("groups", []):
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict):
                groups.append((self._ranks(entry[0]), {**entry[1], "id": request_id}))
        values: dict[int, Message] = {}
        at = 0
        for entry in header.get("values", []):
            if not (isinstance(entry, list) and len(entry) >= 2):
                continue
            rank, count, *segments = entry
            frames = msg.buffers[at:at + count]
            at += count
            if not frames or type(rank) is not int or not 0 <= rank < self.ctx.size:
                continue
            buffers = frames[1:]
            if segments:
                try:
                    buffers = attach_segments("reply", segments[0], buffers, info.shm_prefix
                                              or "")
                except ValueError as e:
                    _drops.dropped(f"the agent of {info.where()}", f"a value with bad "
                                   f"segments ({e})")
                    continue
            values[rank] = Message("reply", {}, frames[0], buffers)
        self.ctx.inflight.node_reply(request_id, groups, values)
        for rank in self._ranks(header.get("lost") or ""):
            self.ctx.unreachable(rank)  # dead or unreachable at the node: the pool finds out

    # -- losses and %ranks ----------------------------------------------------------------

    def _lost(self, info: NodeInfo, why: str) -> None:
        """The agent of ``info`` is gone; its ranks may still run and it may come back
        (``launcher/rank.sh`` starts it again)."""
        info.lost_since = time.monotonic()
        info.rejoined = set()
        log.warning("the agent of %s stopped (%s); waiting for it to come back", info.where(),
                    why)
        wait = self.ctx.settings.agent_return
        self.ctx.inflight.notice(sorted(info.ranks), (
            f"the agent of {info.where()} stopped ({why}): ranks {format_ranks(info.ranks)} "
            f"cannot be reached; waiting up to {wait:g} s for it to start again"))
        for below in self.nodes.values():  # the agents that talk through it, in a tree
            if below.route == info.key and below is not info and below.lost_since is None \
                    and not below.dead:
                self._lost(below, f"the agent of {info.where()}, which it talks through, "
                           "stopped")

    def _give_up(self, info: NodeInfo) -> None:
        info.dead = True
        wait = self.ctx.settings.agent_return
        self.ctx.end_ranks(info.ranks, f"the agent of {info.where()} did not come back "
                           f"within {wait:g} s, so its ranks cannot be reached")

    def fill(self, infos: list[RankInfo]) -> None:
        """Mark the ranks some open request waits for busy, and add the load the agents
        report."""
        for rank, label in self.ctx.inflight.busy().items():
            info = infos[rank]
            if info.state == "idle":
                info.state, info.cell = "busy", label
        for node in self.nodes.values():
            ranks, load = node.load
            if not ranks:
                continue
            try:
                pairs = json.loads(load)
                for rank, (cpu, rss) in zip(parse_ranks(ranks, len(infos)), pairs,
                                            strict=False):
                    infos[rank].cpu, infos[rank].rss = float(cpu), int(rss)
            except (ValueError, TypeError):
                log.debug("bad load summary from node %s", node.key)


def _credited(info: NodeInfo, msg: Message) -> None:
    """A ``more`` needs nothing but its credit (``AgentFanin.handle``)."""
