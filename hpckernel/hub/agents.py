"""The hub's side of node agents (``HubKernel.fanin``): one peer per node instead of one per
rank. A request goes once to each node with its targets as a range string; each agent
answers once for its node (``nreply``), sends its ranks' output merged (``nstream``,
``display`` with a rank range) and one summary per heartbeat (``nsummary``). The rank
table, the requests in flight and the output merger stay as without agents; only their
per-rank bookkeeping is done in bulk.

An agent that stops answering (its process or its node died) takes its node's ranks with
it: they are reported dead, naming the node, within ``agent_timeout`` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..plane import Message, pack, shm
from ..plane.credit import Credits
from ..plane.headers import PlaneHeader
from ..plane.wire import attach_segments
from ..targets import format_sorted, parse_ranks
from .ranktable import RankInfo

if TYPE_CHECKING:
    from .rank_pool import RankPool
    from .requests import Request

log = logging.getLogger(__name__)


@dataclass
class NodeInfo:
    """What the hub knows of one node's agent."""

    key: str
    host: str = ""
    pid: int | None = None
    ranks: list[int] = field(default_factory=list)
    heard: float = 0.0  # monotonic time of its last message
    unreachable_since: float | None = None
    shm_prefix: str | None = None  # an agent on the hub's node: its ranks' segments
    route: str = ""  # the agent it talks to the hub through (itself, or its group's first)
    dead: bool = False
    #: the last summary's ranks (a range string) and their [cpu, rss] pairs (JSON), kept
    #: undecoded: only %ranks and the dashboard read them
    load: tuple[str, bytes] = ("", b"")


class Agents:
    """Node agents of one launch: their table, and the plane operations that go through
    them. Runs on the plane thread."""

    def __init__(self, pool: RankPool, timeout: float = 4.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self.nodes: dict[str, NodeInfo] = {}
        #: rank -> the agent the hub sends its requests to (its node's, or the top of its
        #: subtree when agents form a tree)
        self.node_of: dict[int, str] = {}
        self.routes: set[str] = set()  # agents that talk to the hub
        #: how far each agent's output is taken in (flow control, plane/credit.py)
        self.credits: Credits[str] = Credits(pool.settings.output_window)
        self._handlers: dict[str, Callable[[NodeInfo, Message], None]] = {
            "nregister": self._register, "nsummary": self._summary, "nstream": self._stream,
            "display": self._display, "nreply": self._reply, "live": self._live}

    def reset(self) -> None:
        self.nodes.clear()
        self.node_of.clear()
        self.routes.clear()
        self.credits.reset()

    # -- to the agents --------------------------------------------------------------------

    def pack_request(self, request: Request, header: dict[str, Any], value: Any,
                     per_rank: dict[int, Any] | None) -> list[tuple[str, list[Any]]]:
        """``request`` packed once for each node that has a target (once per target rank,
        when each gets a value of its own), as (node, frames) for :meth:`send`."""
        header = {**header, "targets": format_sorted(request.targets)}
        if per_rank is not None:
            return [(self.node_of.get(rank, ""),
                     pack(request.kind, {**header, "only": rank}, per_rank[rank],
                          has_value=True)) for rank in request.targets]
        frames = pack(request.kind, header, value, has_value=value is not None)
        if len(request.targets) == self.pool.size:
            return [(node, frames) for node in self.routes]
        return [(node, frames) for node in {self.node_of.get(r, "") for r in request.targets}]

    def broadcast(self, msg_type: str) -> None:
        """``interrupt``, ``shutdown``: to every live agent."""
        frames = pack(msg_type, {})
        for node in list(self.routes):
            self.send(node, frames)

    def heartbeat(self, now: float) -> None:
        """Ping every agent (each answers with its node's summary); agents silent for
        ``timeout`` seconds, or unreachable for a second, are dead."""
        beat = pack("hb", {"interval": self.pool.settings.heartbeat_interval})
        for info in list(self.nodes.values()):
            if info.dead:
                continue
            if info.key in self.routes:
                self.send(info.key, beat)  # an agent below another gets it from that one
            if now - info.heard > self.timeout:
                self.died(info, f"no word from it for {now - info.heard:.0f} s")
            elif info.unreachable_since is not None and now - info.unreachable_since >= 1.0:
                self.died(info, "it is unreachable (its process ended)")

    def send(self, node: str, frames: list[Any]) -> None:
        info = self.nodes.get(node)
        if info is None or info.dead:
            return
        if self.pool.transport.send_agent(node, frames):
            return
        if info.unreachable_since is None:
            info.unreachable_since = time.monotonic()

    # -- from the agents ------------------------------------------------------------------

    def handle(self, node: str, msg: Message) -> None:
        """A message from the agent ``node``, or passed up by it from an agent below (whose
        registrations and summaries name their own node)."""
        if msg.msg_type == "ndead":  # an agent below the one talking to the hub
            dead = self.nodes.get(msg.header.get("node") or "")
            if dead is not None and not dead.dead:
                self.died(dead, "it is unreachable (its process ended)")
            return
        if msg.msg_type in ("nregister", "nsummary"):
            node = msg.header.get("node") or node
        info = self.nodes.get(node)
        if info is None:
            if msg.msg_type != "nregister":
                return
            info = self.nodes[node] = NodeInfo(node)
        if info.dead:
            return  # an agent given up on does not come back until the next launch
        info.heard = time.monotonic()
        info.unreachable_since = None
        handler = self._handlers.get(msg.msg_type)
        if handler is not None:
            handler(info, msg)
        if msg.msg_type in ("nstream", "display", "more"):
            self._credit(node, msg)

    def _credit(self, node: str, msg: Message) -> None:
        """Output taken in (merged), or the agent waits (``more``: all it sent before that
        is taken in): credit to the agent it came through (plane/credit.py)."""
        frames = self.credits.answer(node, msg.msg_type, msg.header)
        if frames is not None:
            self.send(node, frames)

    def _register(self, info: NodeInfo, msg: Message) -> None:
        header: PlaneHeader = msg.header  # type: ignore[assignment]
        info.host = header.get("host") or info.host
        info.pid = header.get("pid") or info.pid
        prefix = header.get("shm_prefix")
        if (prefix and shm.PREFIX.match(prefix)
                and self.pool.transport.agent_is_local(info.key)):
            info.shm_prefix = prefix
        route = info.route = header.get("via") or info.key
        self.routes.add(route)
        for rank_header in header.get("registered", []):
            rank = rank_header.get("rank")
            if not isinstance(rank, int) or not 0 <= rank < self.pool.size:
                continue
            self.node_of[rank] = route
            info.ranks.append(rank)
            self.pool.register(self.pool.table[rank], rank_header)

    def _summary(self, info: NodeInfo, msg: Message) -> None:
        info.load = (msg.header.get("ranks") or "", bytes(msg.payload))
        for node, ranks, load in msg.header.get("summaries") or []:  # agents below it
            below = self.nodes.get(node)
            if below is not None and not below.dead:
                below.heard = info.heard
                below.load = (ranks, load.encode())

    def _stream(self, info: NodeInfo, msg: Message) -> None:
        request = self.pool.inflight.get(msg.header.get("id") or "")
        if request is None or request.merger is None:
            return
        add, name = request.merger.add_stream, msg.header["name"]
        for ranks, text in msg.header["parts"]:
            for rank in parse_ranks(ranks):
                add(rank, name, text)

    def _display(self, info: NodeInfo, msg: Message) -> None:
        request = self.pool.inflight.get(msg.header.get("id") or "")
        if request is None or request.merger is None:
            return
        content = msg.value()
        for rank in parse_ranks(msg.header["ranks"]):
            request.merger.add_display(rank, msg.header["msg_type"], content)

    def _live(self, info: NodeInfo, msg: Message) -> None:
        rank = msg.header.get("rank")
        if isinstance(rank, int):
            self.pool.live.add(str(msg.header.get("name")), rank, msg.value())

    def _reply(self, info: NodeInfo, msg: Message) -> None:
        header: PlaneHeader = msg.header  # type: ignore[assignment]
        request_id = header.get("id") or ""
        groups = [(parse_ranks(ranks), {**common, "id": request_id})
                  for ranks, common in header.get("groups", [])]
        values: dict[int, Message] = {}
        at = 0
        for rank, count, *segments in header.get("values", []):
            frames = msg.buffers[at:at + count]
            at += count
            if not frames:
                continue
            buffers = frames[1:]
            if segments:
                try:
                    buffers = attach_segments("reply", segments[0], buffers, info.shm_prefix
                                              or "")
                except ValueError as e:
                    log.warning("node %s: dropped a value with bad segments: %s", info.key, e)
                    continue
            values[rank] = Message("reply", {}, frames[0], buffers)
        self.pool.inflight.node_reply(request_id, groups, values)
        lost = parse_ranks(header.get("lost") or "")
        for rank in lost:  # dead or unreachable at the node: the hub finds out how
            self.pool.unreachable(rank)

    # -- deaths and %ranks ----------------------------------------------------------------

    def died(self, info: NodeInfo, why: str) -> None:
        """The agent of ``info`` is gone: so, for the hub, are its node's ranks."""
        info.dead = True
        where = f"node {info.host} ({info.key})" if info.host else f"node {info.key}"
        log.warning("the agent of %s died: %s", where, why)
        reason = f"lost with the agent of {where}: {why}"
        for rank in info.ranks:
            if self.pool.table[rank].state != "dead":
                error = self.pool.table.mark_dead(rank, reason, tail=False)
                self.pool.inflight.fail_rank(rank, error)
        for below in self.nodes.values():  # the agents that talked through it, in a tree
            if below.route == info.key and not below.dead:
                self.died(below, f"the agent of {where}, which it talks through, died")

    def fill(self, infos: list[RankInfo]) -> None:
        """Put what agents keep (busy ranks, load) into a snapshot of the rank table."""
        for rank, label in self.pool.inflight.busy().items():
            info = infos[rank]
            if info.state == "idle":
                info.state, info.cell = "busy", label
        for node in self.nodes.values():
            ranks, load = node.load
            if not ranks:
                continue
            try:
                pairs = json.loads(load)
                for rank, (cpu, rss) in zip(parse_ranks(ranks), pairs, strict=False):
                    if 0 <= rank < len(infos):
                        infos[rank].cpu, infos[rank].rss = float(cpu), int(rss)
            except (ValueError, TypeError):
                log.debug("bad load summary from node %s", node.key)
