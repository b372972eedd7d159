"""Every rank talks to the hub: requests go once per target rank, replies and output come
per rank, and the hub keeps each rank's queue of requests and busy state itself.

What one node's ranks cost the hub here grows with the ranks; ``AgentFanin`` (``agents.py``)
makes it grow with the nodes instead, and ``choose`` in ``__init__.py`` picks it for ranks on
more than one node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import zmq

from ...plane import Message, kinds, pack
from ...plane.credit import Credits
from ...plane.droplog import DropLog
from ..ranktable import RankInfo
from ..requests import Request
from ..transport import Peer
from .base import Fanin, FaninContext

if TYPE_CHECKING:
    from typing_extensions import Buffer

_drops = DropLog(logging.getLogger(__name__))


class DirectFanin(Fanin):
    """The hub's side of ranks that talk to it directly (see the module docstring)."""

    def __init__(self, ctx: FaninContext) -> None:
        super().__init__(ctx)
        #: how far each rank's output is taken in (flow control, plane/credit.py)
        self.credits: Credits[int] = Credits(ctx.settings.output_window)
        self._handlers: dict[str, Callable[[RankInfo, Message], None]] = {
            kinds.REGISTER: self._register, kinds.HB: self._load,
            kinds.STREAM: self._stream, kinds.DISPLAY: self._display,
            kinds.MORE: self._credit, kinds.REPLY: self._reply, kinds.LIVE: self._live,
            kinds.DAPEVENT: self._dap_event}

    # -- from the ranks -------------------------------------------------------------------

    def handle(self, peer: Peer, msg: Message) -> None:
        """A rank's message, checked against its kind, to the handler of its kind."""
        if not isinstance(peer, int):
            return  # an agent, though this launch has none: not ours
        handler = self._handlers.get(msg.msg_type)
        problem = kinds.check(msg.msg_type, msg.header)
        if handler is None or problem is not None:
            _drops.dropped(f"rank {peer}", problem or f"unexpected {msg.msg_type}")
            return
        handler(self.ctx.table[peer], msg)

    def _register(self, info: RankInfo, msg: Message) -> None:
        self.ctx.register(info, msg.header)  # type: ignore[arg-type]

    def _load(self, info: RankInfo, msg: Message) -> None:
        info.cpu, info.rss = msg.header.get("cpu", 0.0), msg.header.get("rss", 0)

    def _stream(self, info: RankInfo, msg: Message) -> None:
        request = self.ctx.inflight.get(msg.header.get("id") or "")
        if request is not None and request.merger is not None:
            request.merger.add_stream(info.rank, msg.header["name"], msg.header["text"])
        # Taken in (merged, or dropped: its request is over): the rank may send more.
        self._credit(info, msg)

    def _display(self, info: RankInfo, msg: Message) -> None:
        request = self.ctx.inflight.get(msg.header.get("id") or "")
        if request is not None and request.merger is not None:
            request.merger.add_display(info.rank, msg.header["msg_type"], msg.value())
        self._credit(info, msg)

    def _credit(self, info: RankInfo, msg: Message) -> None:
        """Output taken in, or the rank waits (``more``: all it sent before is taken in)."""
        frames = self.credits.answer(info.rank, msg.msg_type, msg.header)
        if frames is not None:
            self._send_to(info.rank, frames)

    def _reply(self, info: RankInfo, msg: Message) -> None:
        request_id = msg.header.get("id") or ""
        if request_id in info.queue:
            info.queue.remove(request_id)
        if info.state in ("busy", "stuck"):
            # A stuck rank that answers at last is free again.
            self.ctx.table.set_state(info, "busy" if info.queue else "idle", "")
        info.cell = self._label(info)
        self.ctx.inflight.reply(info.rank, msg.header, msg)

    def _live(self, info: RankInfo, msg: Message) -> None:
        self.ctx.live.add(msg.header["name"], info.rank, msg.value())

    def _dap_event(self, info: RankInfo, msg: Message) -> None:
        self.ctx.dap_event(info.rank, msg.header["event"])

    # -- to the ranks -----------------------------------------------------------------------

    def send(self, request: Request, header: Mapping[str, object], value: object,
             per_rank: dict[int, object] | None) -> None:
        """Pack ``request`` for each target, open it and queue it on each, then send."""
        kind = request.kind
        frames = ({r: pack(kind, header, per_rank[r], has_value=True) for r in request.targets}
                  if per_rank is not None else
                  dict.fromkeys(request.targets,
                                pack(kind, header, value, has_value=value is not None)))
        control = kinds.is_control(kind)
        self.ctx.inflight.add(request, control)
        if not control:
            self._queue(request)
        for rank in request.targets:
            self._send_to(rank, frames[rank])

    def _queue(self, request: Request) -> None:
        """Each target queues ``request``: busy, running it or after what it runs now."""
        table = self.ctx.table
        for rank in request.targets:
            info = table[rank]
            info.queue.append(request.id)
            if info.state == "idle":
                table.set_state(info, "busy")
            info.cell = self._label(info)

    def _label(self, info: RankInfo) -> str:
        """The label of what the rank runs now (the oldest request in its queue)."""
        request = self.ctx.inflight.get(info.queue[0]) if info.queue else None
        return request.label if request is not None else ""

    def interrupt(self, ranks: list[int] | None = None) -> None:
        """Interrupt the busy ranks' open requests (and whatever a stuck rank runs), or all
        that ``ranks`` run."""
        if ranks is not None:
            late = pack(kinds.INTERRUPT, {"any": True})
            for rank in ranks:
                self._send_to(rank, late)
            return
        ids = self.ctx.inflight.open_ids()
        open_frames = pack(kinds.INTERRUPT, {"ids": ids})
        stuck_frames = pack(kinds.INTERRUPT, {"ids": ids, "any": True})
        for info in self.ctx.table:
            if info.state == "busy":
                self._send_to(info.rank, open_frames)
            elif info.state == "stuck":  # still in what it was given up on: stop that too
                self._send_to(info.rank, stuck_frames)

    def heartbeat(self, now: float) -> None:
        """Ping every rank that may still run."""
        beat = pack(kinds.HB, {})
        for info in self.ctx.table:
            if info.state in ("idle", "busy", "stuck"):
                self._send_to(info.rank, beat)

    def shutdown(self) -> None:
        """Ask every rank to leave."""
        frames = pack(kinds.SHUTDOWN, {})
        for info in self.ctx.table:
            self._send_to(info.rank, frames)

    def watch_exits(self) -> bool:
        """Yes: without agents the pool learns of a death mid-cell only from exit codes."""
        return True

    def idle(self) -> bool:
        """Whether every rank is idle (the table keeps the ranks' states here)."""
        return all(info.state == "idle" for info in self.ctx.table)

    def _send_to(self, rank: int, frames: Sequence[Buffer | zmq.Frame]) -> None:
        if not self.ctx.transport.send(rank, frames):
            self.ctx.unreachable(rank)
