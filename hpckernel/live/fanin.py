"""The third way the cell machinery reaches ranks: those of a live batch job, through the
job's endpoint (``endpoint.py``), which passes the job's node agents' messages on as they
are. So this is the hub's side of node agents (``hub/fanin/agents.py``: registrations,
load summaries, merged output, node replies) with one peer to send to, the endpoint:

- requests go to it once, with their targets (a cell, ``execute``, runs at the targets'
  next common safepoint there; ``peek``, ``where`` and ``lvals`` are answered at once);
- an interrupt names the open requests (the endpoint drops or stops those cells);
- the heartbeat is a ``lping`` the endpoint answers with the programs' state (``lstate``),
  and an endpoint silent for ``SILENCE`` seconds makes the attached job ask Slurm;
- the notebook never ends or restarts the job's ranks: a rank it cannot reach any more is
  reported, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ..hub.fanin.agents import AgentFanin, NodeInfo
from ..hub.fanin.base import FaninContext
from ..hub.requests import Request
from ..hub.transport import Peer
from ..plane import Message, kinds, pack
from ..plane.droplog import DropLog
from ..plane.headers import PlaneHeader
from ..targets import format_sorted
from .link import ENDPOINT, log

_drops = DropLog(log)

#: Seconds without a word from the endpoint after which the job's state is asked of Slurm.
SILENCE = 6.0

#: state(header): the endpoint's lstate/lwelcome (the attached job keeps it)
OnState = Callable[[PlaneHeader], None]


class LiveJobFanin(AgentFanin):
    """The notebook's side of a live job's endpoint (see the module docstring)."""

    def __init__(self, ctx: FaninContext, on_state: OnState,
                 on_silence: Callable[[float], None]) -> None:
        super().__init__(ctx)
        self.on_state = on_state
        self.on_silence = on_silence
        self.heard = time.monotonic()
        self._via = NodeInfo(ENDPOINT)  # where passed-on output and replies come from
        self._handlers.update({
            kinds.LSTATE: self._state, kinds.LWELCOME: self._state,
            kinds.LNOTICE: self._notice})

    def send(self, request: Request, header: Mapping[str, object], value: object,
             per_rank: Mapping[int, object] | None) -> None:
        """Send ``request`` to the endpoint once, naming its targets (a live job takes no
        per-rank values: ``per_rank`` is not used)."""
        frames = pack(request.kind, {**header, "targets": format_sorted(request.targets)},
                      value, has_value=value is not None)
        self.ctx.inflight.add(request, kinds.is_control(request.kind))
        self.ctx.transport.send(ENDPOINT, frames)

    def interrupt(self, ranks: list[int] | None = None) -> None:
        """Ask the endpoint to drop or stop this notebook's open requests (``ranks`` aside)."""
        ids = self.ctx.inflight.open_ids()
        if ids:
            self.ctx.transport.send(ENDPOINT, pack(kinds.INTERRUPT, {"ids": ids}))

    def heartbeat(self, now: float) -> None:
        """Ping the endpoint; after ``SILENCE`` seconds without a word, call ``on_silence``."""
        self.ctx.transport.send(ENDPOINT, pack(kinds.LPING, {}))
        if now - self.heard > SILENCE:
            self.on_silence(now - self.heard)
            self.heard = now  # asked; again after another silence

    def shutdown(self) -> None:
        """Leave the job (its cells of this notebook that have not run are dropped)."""
        self.ctx.transport.send(ENDPOINT, pack(kinds.LDETACH, {}))

    def hello(self) -> None:
        """Attach: the endpoint welcomes, then passes on every registration so far."""
        self.ctx.transport.send(ENDPOINT, pack(kinds.LHELLO, {}))

    def handle(self, peer: Peer, msg: Message) -> None:
        """A message from the endpoint (the link's ``on_message``): to its handler."""
        self.heard = time.monotonic()
        problem = kinds.check(msg.msg_type, msg.header)
        handler = self._handlers.get(msg.msg_type)
        if problem is not None or handler is None:
            _drops.dropped("the job's endpoint", problem or f"unexpected {msg.msg_type}")
            return
        node = msg.header.get("node") if msg.msg_type in (kinds.NREGISTER,
                                                          kinds.NSUMMARY) else None
        info = self._via if not isinstance(node, str) else self.nodes.setdefault(
            node, NodeInfo(node))
        handler(info, msg)

    def _state(self, info: NodeInfo, msg: Message) -> None:
        self.on_state(msg.header)

    def _notice(self, info: NodeInfo, msg: Message) -> None:
        request = self.ctx.inflight.get(msg.header["id"] or "")
        if request is not None and request.merger is not None:
            request.merger.notice(msg.header["text"])

    def idle(self) -> bool:
        """Whether no request of this notebook is open."""
        return not self.ctx.inflight.busy()
