"""The fan-in interface: how the hub's cell machinery reaches its ranks.

``RankPool`` (``rank_pool.py``) owns the ranks' lifecycle, the plane thread and the shared
bookkeeping (the rank table, the requests in flight, the published values); a ``Fanin``
is the one part that knows how messages reach the ranks and come back: each rank talking
to the hub (``DirectFanin``), or one node agent per node (``AgentFanin``). The pool chooses
one per launch (``choose``) and hands it everything that arrives from the plane; the
fan-in sends requests, interrupts, heartbeats and shutdowns its own way and reports what
it learns through the callbacks of its ``FaninContext``, never through the pool itself.

Every method runs on the plane thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import zmq

from ...plane import Message
from ...plane.headers import PlaneHeader
from ..inflight import InFlight
from ..live import LiveStore
from ..ranktable import RankInfo, RankTable
from ..requests import Request
from ..transport import Peer

if TYPE_CHECKING:
    from typing_extensions import Buffer


@dataclass
class FaninSettings:
    """What a fan-in needs of ``HubKernel``'s settings."""

    heartbeat_interval: float = 1.0
    output_window: int = 4 * 2**20  # HubKernel.output_window: bytes per sender
    agent_timeout: float = 4.0  # HubKernel.agent_timeout: seconds of an agent's silence
    agent_return: float = 10.0  # seconds a lost agent's node waits for it to come back


class PeerLink(Protocol):
    """How a fan-in sends: the hub's ``Transport``, or a live job's ``EndpointLink``."""

    def send(self, peer: Peer, frames: Sequence[Buffer | zmq.Frame]) -> bool:
        """Queue ``frames`` for ``peer`` without waiting; False if it cannot be reached."""

    def is_local(self, peer: Peer) -> bool:
        """Whether ``peer`` is on this node (it may hand over shared memory)."""


@dataclass
class FaninContext:
    """What a fan-in works with: the shared tables, the sockets, and the pool's callbacks."""

    size: int  # ranks of the kernel
    launch: int  # this launch's number (plane/identity.py)
    table: RankTable
    inflight: InFlight
    live: LiveStore
    transport: PeerLink
    settings: FaninSettings
    #: a rank registered (header: its ``register`` message)
    register: Callable[[RankInfo, PlaneHeader], None]
    #: a rank could not be reached: the pool finds out how it ended
    unreachable: Callable[[int], None]
    #: ranks are gone for good (reason for the user)
    ranks_lost: Callable[[list[int], str], None]
    #: ranks that cannot be reached any more although they may still run: the pool ends
    #: every rank (an MPI job cannot go on without some of its ranks), saying why
    end_ranks: Callable[[list[int], str], None]
    #: a debugged rank's DAP event (``dapevent``: rank, event), for hub/debugger.py
    dap_event: Callable[[int, dict[str, object]], None]


class Fanin(ABC):
    """One way of reaching the ranks (see the module docstring)."""

    #: ``launcher/rank.sh`` starts a node agent per node (``RankLauncher.agents``)
    uses_agents: ClassVar[bool] = False

    def __init__(self, ctx: FaninContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def handle(self, peer: Peer, msg: Message) -> None:
        """A message from ``peer`` (a rank, or a node agent) of this launch."""

    @abstractmethod
    def send(self, request: Request, header: Mapping[str, object], value: object,
             per_rank: dict[int, object] | None) -> None:
        """Open ``request`` (in ``ctx.inflight``) and send it to its targets: ``value`` to
        each, or ``per_rank[rank]`` to each rank. Raises (``TypeError``, pickling errors)
        before anything is sent or opened if a value cannot be serialised."""

    @abstractmethod
    def interrupt(self, ranks: list[int] | None = None) -> None:
        """Interrupt the open requests on every rank that runs or queues one, and the ranks
        marked stuck (``None``); or ``ranks``, whatever they run (a rank late to stop)."""

    @abstractmethod
    def heartbeat(self, now: float) -> None:
        """Called every heartbeat interval: ping the peers, notice the silent ones."""

    @abstractmethod
    def shutdown(self) -> None:
        """Ask every rank to leave (through ``MPI_Finalize``); the pool then waits for them."""

    def watch_exits(self) -> bool:
        """Whether the pool should look for ranks' exit codes at every tick while requests
        are open (a direct fan-in has no other way to learn of a death mid-cell)."""
        return False

    def fill(self, infos: list[RankInfo]) -> None:  # noqa: B027 (nothing to add, by default)
        """Put what this fan-in keeps apart from the table (busy ranks, load) into a copy of
        the rank table (``RankPool.snapshot``)."""

    def idle(self) -> bool:
        """Whether no rank runs or queues a request (ranks may then leave on their own)."""
        return not self.ctx.inflight.busy()
