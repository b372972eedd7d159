"""The cells of a live job's attached notebooks, at its endpoint (``endpoint.py``): queued in
arrival order, run one at a time at the same safepoint on every target (``larm``, then
``lrun``: ``safepoints.py``), and stopped on an interrupt only where every target can stop
alike (``lpark``, then ``lunpark``: ``cells.py``).

An interrupt drops a queued cell, cancels one being armed (its targets are released by
``lcancel``), and for a running one asks every target to hold it: if all hold it (or are done
with it) within ``HOLD_WAIT`` seconds it is stopped on all, else all go on and the notebook
is told why (``lnotice``).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..agent.replies import NodeRequest
from ..plane import kinds
from ..plane.headers import PlaneHeader
from ..targets import format_ranks

#: Seconds the targets have to hold a running cell before it is let go on (not stopped).
HOLD_WAIT = 1.0
#: Where a rank may hold a cell: stopping it there stops no rank half-way alone.
HELD = frozenset({"cell", "start", "done"})
NOT_STOPPED = ("the cell was not stopped: not every rank could hold it where all stop alike "
               "(a rank inside a call: an MPI collective, time.sleep, C code, cannot); it goes "
               "on (interrupt again to try again)")
INTERRUPTED: dict[str, object] = {"status": "error", "ename": "KeyboardInterrupt",
               "evalue": "interrupted before it ran"}


@dataclass
class Cell:
    """A notebook's cell, from its queueing to its reply."""

    id: str  # the notebook's request id: the lrun's, so its replies and output go there
    client: bytes
    key: str  # the endpoint's name for it (larm, lrun, lpark ``cell``)
    code: str
    targets: list[int]
    count: int | None  # the notebook's execution count
    state: str = "queued"  # queued, arming, running
    cancelled: bool = False
    hold: str | None = None  # the lpark request of a stop being decided
    hold_until: float = 0.0
    verdict: bool = False  # the lunpark of that stop is sent


class Relay(Protocol):
    """What the queue needs of the endpoint."""

    def send(self, kind: str, header: PlaneHeader, targets: list[int],
             client: bytes | None, done: Callable[[NodeRequest], None] | None = None
             ) -> None:
        """A request to ``targets`` (``client``'s, whose answers go to it; else the
        endpoint's own, whose merged answer goes to ``done``)."""

    def answer(self, client: bytes, request_id: str, targets: list[int],
               common: dict[str, object]) -> None:
        """The endpoint's own answer for every target of a notebook's request."""

    def notice(self, client: bytes, request_id: str, text: str) -> None:
        """A line for the output of a notebook's request."""

    def pending(self, request_id: str) -> list[int]:
        """The ranks an open request still waits for."""


class CellQueue:
    """The notebooks' cells (see the module docstring)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.queued: deque[Cell] = deque()
        self.current: Cell | None = None

    def add(self, cell: Cell) -> None:
        """Queue a notebook's cell (``execute``); it is armed at once if none runs."""
        self.queued.append(cell)
        self._next()

    def forget(self, client: bytes) -> None:
        """A notebook left or fell silent: its queued cells are dropped, one being armed is
        cancelled; one running runs on (its answers go nowhere)."""
        self.queued = deque(c for c in self.queued if c.client != client)
        cell = self.current
        if cell is not None and cell.client == client and cell.state == "arming":
            cell.cancelled = True

    def interrupt(self, client: bytes, ids: set[str]) -> None:
        """The notebook ``client`` interrupts its cells ``ids``."""
        for queued in [c for c in self.queued if c.client == client and c.id in ids]:
            self.queued.remove(queued)
            self.relay.answer(client, queued.id, queued.targets, INTERRUPTED)
        cell = self.current
        if cell is None or cell.client != client or cell.id not in ids:
            return
        if cell.state == "arming":
            cell.cancelled = True
        elif cell.hold is None:
            self._stop(cell)

    # -- one cell after another ---------------------------------------------------------

    def _next(self) -> None:
        if self.current is None and self.queued:
            cell = self.current = self.queued.popleft()
            cell.state = "arming"
            self.relay.send(kinds.LARM, {"cell": cell.key}, cell.targets, None,
                            lambda request: self._armed(cell, request))

    def _armed(self, cell: Cell, request: NodeRequest) -> None:
        failed = [(common, ranks) for common, ranks in request.groups.values()
                  if common.get("status") != "ok"]
        if cell.cancelled or failed or request.lost:
            self.relay.send(kinds.LCANCEL, {"cell": cell.key}, cell.targets, None)
            if cell.cancelled:
                error = INTERRUPTED
            elif failed:
                common, ranks = failed[0]
                error = {"status": "error", "ename": str(common.get("ename")),
                         "evalue": f"{common.get('evalue')} (ranks {format_ranks(ranks)})"}
            else:
                error = {"status": "error", "ename": "RankLost",
                         "evalue": f"ranks {format_ranks(request.lost)} cannot be reached"}
            self.relay.answer(cell.client, cell.id, cell.targets, error)
            self._ran(cell)
            return
        counts = [common.get("at", 0) for common, _ in request.groups.values()]
        cell.state = "running"
        self.relay.send(kinds.LRUN, {"id": cell.id, "cell": cell.key, "at": max(counts) + 1,
                                     "code": cell.code, "execution_count": cell.count},
                        cell.targets, cell.client, lambda _: self._ran(cell))

    def _ran(self, cell: Cell) -> None:
        if self.current is cell:
            self.current = None
        self._next()

    # -- stopping a running cell ----------------------------------------------------------

    def _stop(self, cell: Cell) -> None:
        """Ask every target to hold the running cell; stop it only if all do."""
        cell.verdict = False
        cell.hold_until = time.monotonic() + HOLD_WAIT
        cell.hold = uuid.uuid4().hex
        self.relay.send(kinds.LPARK, {"id": cell.hold, "cell": cell.key}, cell.targets, None,
                        lambda request: self._held(cell, request))

    def _held(self, cell: Cell, request: NodeRequest) -> None:
        if cell.verdict:
            return  # decided already (the wait ran out)
        held = {r for common, ranks in request.groups.values()
                if common.get("held") in HELD for r in ranks}
        self._verdict(cell, [r for r in cell.targets if r not in held])

    def hold_deadline(self) -> float:
        """When the running cell's hold must be decided (inf: none is being decided)."""
        cell = self.current
        return cell.hold_until if cell is not None and cell.hold and not cell.verdict \
            else float("inf")

    def hold_expired(self, now: float) -> None:
        """The targets did not all hold the cell in time: it goes on (the endpoint's loop)."""
        cell = self.current
        if cell is not None and cell.hold and not cell.verdict and now >= cell.hold_until:
            self._verdict(cell, self.relay.pending(cell.hold))

    def _verdict(self, cell: Cell, not_held: list[int]) -> None:
        cell.verdict = True
        self.relay.send(kinds.LUNPARK, {"cell": cell.key, "stop": not not_held}, cell.targets,
                        None, lambda _: setattr(cell, "hold", None))
        if not_held:
            self.relay.notice(cell.client, cell.id, NOT_STOPPED)
