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

Stopping a cell (the notebook's interrupt) goes the same careful way (``cells.py``): the
endpoint asks every target to *hold* the cell — a rank that has not started it holds it at
its safepoint, a rank running it holds at its next line of Python — and stops it only if
every target holds it (or is done with it), so that no rank is left alone in a collective.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

#: Seconds a rank holds a cell at most, whatever the endpoint says (a lost verdict).
HOLD_LIMIT = 30.0


@dataclass
class Decided:
    """A cell the targets agreed to run at safepoint ``at``; ``id`` is the request's (the
    reply's), ``cell`` the cell's (what the rank was armed for)."""

    id: str
    cell: str
    at: int
    code: str
    name: str


#: run(cell, frame, stopped): run the cell at its safepoint (``stopped``: it was stopped
#: before it started here: answer so without running it)
Runner = Callable[[Decided, "FrameType | None", bool], None]


class Safepoints:
    """One rank's safepoint count and the cell it is armed for (at most one at a time: the
    endpoint runs cells one after another). Counted on the program's main thread only;
    ``cond`` also guards how the cell is held and stopped (``cells.py``)."""

    def __init__(self, run: Runner) -> None:
        self.count = 0
        self.armed = False  # read without the lock by the main thread's fast path
        self.main = threading.main_thread().ident
        self._run = run
        self.cond = threading.Condition()
        self._armed_id: str | None = None
        self._limit = 0  # the main thread waits here until the decision
        self.decided: Decided | None = None  # agreed, not started yet
        self.held: str | None = None  # a decided cell held at its safepoint (not started)
        self.stopped: str | None = None  # a decided cell stopped before it started
        self.ended = False  # the program returned: no more safepoints

    # -- the I/O thread ---------------------------------------------------------------------

    def arm(self, cell_id: str) -> int:
        """Mark the rank armed for ``cell_id``; the safepoint count reached so far."""
        with self.cond:
            self._armed_id = cell_id
            self.decided = None
            self.held = self.stopped = None
            self.armed = True
            reached = self.count  # read after arming: the next safepoints see the flag
            self._limit = reached + 1
            return reached

    def decide(self, cell: Decided) -> bool:
        """The agreed safepoint for the armed cell; False if this rank is not armed for it
        (cancelled meanwhile, or the program ended)."""
        with self.cond:
            if self._armed_id != cell.cell or self.ended:
                return False
            self.decided = cell
            self.cond.notify_all()
            return True

    def cancel(self, cell_id: str) -> None:
        """Forget the armed cell (not decided yet, or never to run here)."""
        with self.cond:
            if self._armed_id == cell_id:
                self._clear()

    def hold(self, cell_id: str) -> bool:
        """Hold the decided cell ``cell_id`` at its safepoint if it has not started here
        (the main thread waits there until :meth:`release`); False if it has not been
        decided here or has started."""
        with self.cond:
            if self.decided is None or self.decided.cell != cell_id:
                return False
            self.held = cell_id
            return True

    def release(self, cell_id: str, stop: bool) -> None:
        """Let the held cell go: run it, or (``stop``) answer it as stopped unrun."""
        with self.cond:
            if self.held == cell_id:
                self.held = None
                if stop:
                    self.stopped = cell_id
                self.cond.notify_all()

    def end(self) -> Decided | None:
        """The program returned: the cell it was armed for, if any, will not run here."""
        with self.cond:
            self.ended = True
            cell = self.decided
            self._clear()
            return cell

    def _clear(self) -> None:
        self._armed_id = None
        self.decided = None
        self.held = None
        self.armed = False
        self.cond.notify_all()

    # -- the main thread --------------------------------------------------------------------

    def arrive(self, frame: FrameType | None) -> None:
        """Called by :func:`safepoint` when armed: wait for the decision at the limit, run
        the cell at its safepoint (held there while the endpoint decides to stop it)."""
        with self.cond:
            while True:
                cell = self.decided
                if cell is not None and self.count >= cell.at:
                    if self.held == cell.cell:  # the endpoint decides whether to stop it
                        if not self.cond.wait(HOLD_LIMIT):
                            self.held = None  # no verdict came: run it
                        continue
                    stopped = self.stopped == cell.cell
                    self._clear()
                    self.stopped = None
                    break
                if cell is not None or self._armed_id is None or self.count < self._limit:
                    return
                self.cond.wait()
        self._run(cell, frame, stopped)

    def reach(self, number: int, frame: FrameType | None) -> None:
        """A safepoint numbered by the caller (a notebook's execution count, which every
        rank of a kernel reaches in the same order), instead of counted."""
        self.count = max(self.count, number)
        if self.armed:
            self.arrive(frame)


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


def install(state: Safepoints | None) -> None:
    """Called once by the live runner, before the program starts (None: at its end)."""
    global _state
    _state = state
