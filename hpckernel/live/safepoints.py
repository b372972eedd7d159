"""``safepoint()``: where a live job runs the cells that attached notebooks queued.

Cells must run on every targeted rank at the *same* safepoint: a rank that ran a cell with
``comm.allreduce`` one step earlier than its neighbour would wait in the cell while the
neighbour waits in the program's halo exchange. The ranks agree on the safepoint without
any MPI call and without the main thread ever waiting on another rank's main thread:

1. *arm* — the job's endpoint asks every target for its safepoint count; each rank's I/O
   thread answers at once with the count ``c`` its main thread has reached (its main thread
   may be anywhere, even blocked in MPI) and marks the rank armed;
2. an armed main thread may pass safepoints up to ``c``, and waits at ``c + 1`` until it
   hears the decision;
3. *decide* — the endpoint picks ``T = max(c) + 1`` over the targets and sends the cell with
   it; no target can have passed ``T`` (each waits at ``c + 1 ≤ T``); each runs the cell at
   its safepoint ``T``. A cancel instead releases the waiting ranks.

The decision depends only on the I/O threads' answers, so it always comes, whatever the
main threads do. With nothing armed, :func:`safepoint` is an attribute test and an add.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType


@dataclass
class Decided:
    """A cell the targets agreed to run at safepoint ``at``; ``id`` is the request's (the
    reply's), ``cell`` the cell's (what the rank was armed for)."""

    id: str
    cell: str
    at: int
    code: str
    name: str


class Safepoints:
    """One rank's safepoint count and the cell it is armed for (at most one at a time: the
    endpoint runs cells one after another). Counted on the program's main thread only."""

    def __init__(self, run: Callable[[Decided, FrameType | None], None]) -> None:
        self.count = 0
        self.armed = False  # read without the lock by the main thread's fast path
        self.main = threading.main_thread().ident
        self._run = run
        self._cond = threading.Condition()
        self._armed_id: str | None = None
        self._limit = 0  # the main thread waits here until the decision
        self._decided: Decided | None = None
        self.ended = False  # the program returned: no more safepoints

    # -- the I/O thread ---------------------------------------------------------------------

    def arm(self, cell_id: str) -> int:
        """Mark the rank armed for ``cell_id``; the safepoint count reached so far."""
        with self._cond:
            self._armed_id = cell_id
            self._decided = None
            self.armed = True
            reached = self.count  # read after arming: the next safepoints see the flag
            self._limit = reached + 1
            return reached

    def decide(self, cell: Decided) -> bool:
        """The agreed safepoint for the armed cell; False if this rank is not armed for it
        (cancelled meanwhile, or the program ended)."""
        with self._cond:
            if self._armed_id != cell.cell or self.ended:
                return False
            self._decided = cell
            self._cond.notify_all()
            return True

    def cancel(self, cell_id: str) -> None:
        """Forget the armed cell (not decided yet, or never to run here)."""
        with self._cond:
            if self._armed_id == cell_id:
                self._clear()

    def end(self) -> Decided | None:
        """The program returned: the cell it was armed for, if any, will not run here."""
        with self._cond:
            self.ended = True
            cell = self._decided
            self._clear()
            return cell

    def _clear(self) -> None:
        self._armed_id = None
        self._decided = None
        self.armed = False
        self._cond.notify_all()

    # -- the main thread --------------------------------------------------------------------

    def arrive(self, frame: FrameType | None) -> None:
        """Called by :func:`safepoint` when armed: wait for the decision at the limit, run
        the cell at its safepoint."""
        with self._cond:
            while True:
                cell = self._decided
                if cell is not None:
                    if self.count < cell.at:
                        return
                    self._clear()
                    break
                if self._armed_id is None or self.count < self._limit:
                    return
                self._cond.wait()
        self._run(cell, frame)


#: Set by the live runner (``rank.py``); None in a program not run through hpckernel.live.
_state: Safepoints | None = None
_get_ident = threading.get_ident


def safepoint() -> None:
    """Call this in the program's main loop (on the main thread, on every rank): cells that
    an attached notebook queued run here, at the same safepoint on every targeted rank. With
    nothing queued, or outside ``python -m hpckernel.live``, it returns at once (≈0.1 µs)."""
    state = _state
    if state is None or _get_ident() != state.main:
        return
    state.count += 1
    if state.armed:
        state.arrive(sys._getframe(1))


def install(state: Safepoints) -> None:
    """Called once by the live runner, before the program starts."""
    global _state
    _state = state
