"""Requests in flight from the hub to the ranks: which ranks each one still waits for, their
replies, and when it is done (every target replied, died, timed out, or was given up on after
an interrupt). Runs on the plane thread only; a request's future is how other threads wait.

How requests reach the ranks and replies come back is the fan-in's business
(``hub/fanin``); this is the bookkeeping both fan-ins share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from ..plane import Message
from ..plane.headers import PlaneHeader
from .messages import Content, Publish
from .ranktable import RankTable
from .requests import Request

log = logging.getLogger(__name__)

#: The longest a cell that showed little waits at its end for the output budget to take
#: its last lines (the budget's reserve refills in a tenth of a second).
LAST_OUTPUT_WAIT = 0.5
#: Interrupt these ranks again, whatever they run (they are late to stop).
Reinterrupt = Callable[[list[int]], None]


class InFlight:
    """The open requests, by id, and the bookkeeping of their replies."""

    def __init__(self, table: RankTable, publish: Publish) -> None:
        self.table = table
        self.publish = publish
        self.requests: dict[str, Request] = {}
        self._control: set[str] = set()  # ids of the open control requests
        #: called with the ranks that have not stopped half-way through the grace after an
        #: interrupt (set by the pool to its fan-in's ``interrupt``)
        self.reinterrupt: Reinterrupt = lambda ranks: None
        #: what the user may do about ranks given up on after an interrupt
        self.stuck_hint = "The rank is marked stuck. Run %restart_ranks to replace the ranks."

    def __len__(self) -> int:
        return len(self.requests)

    def get(self, request_id: str) -> Request | None:
        """The open request of this id (None once it ended or was given up on)."""
        return self.requests.get(request_id)

    def add(self, request: Request, control: bool) -> None:
        """Open ``request``. A control request is answered by the ranks' I/O threads, beside
        whatever they run, so it neither queues on them nor makes them busy."""
        self.requests[request.id] = request
        if control:
            self._control.add(request.id)

    def open_ids(self) -> list[str]:
        """The ids of the open requests that ranks run or queue (not control requests)."""
        return [i for i in self.requests if i not in self._control]

    def open_on(self, ranks: Collection[int]) -> list[Request]:
        """The open requests that wait for some of ``ranks``, oldest first."""
        return [r for r in self.requests.values()
                if any(rank not in r.replies for rank in ranks if rank in r.target_set)]

    def emit(self, request: Request, msg_type: str, content: Content,
             metadata: Content) -> None:
        """Where a request's merged output goes: IOPub, or kept on it (``--noblock``)."""
        if msg_type == "execute_result" and request.execution_count is not None:
            content = {**content, "execution_count": request.execution_count}
        if request.captured is not None:
            request.captured.append((msg_type, content, metadata))
        else:
            self.publish(msg_type, content, metadata, request.parent)

    def notice(self, ranks: list[int], text: str) -> None:
        """Tell the user ``text`` in the output of each open request that waits for some of
        ``ranks`` (a node's agent lost, or back); in the hub's log if none does."""
        told = False
        for request in self.open_on(ranks):
            if request.merger is not None:
                request.merger.notice(text)
                told = True
        if not told:
            log.info("%s", text)

    def reply(self, rank: int, header: PlaneHeader, msg: Message) -> None:
        """A rank's reply (the direct fan-in's; agents answer with ``node_reply``)."""
        request = self.requests.get(header.get("id") or "")
        if request is None or rank in request.replies or rank not in request.target_set:
            return  # a reply after we gave up on it (stuck rank), a duplicate, or junk
        if request.merger is not None:
            request.merger.rank_done(rank)
        request.replies[rank] = header.copy()
        if msg.payload:
            try:
                request.values[rank] = msg.value()
            except Exception as e:
                request.replies[rank] = {**header, "status": "error",
                                         "ename": type(e).__name__, "evalue": str(e)}
        self.finish(request, may_wait=True)

    def node_reply(self, request_id: str, groups: list[tuple[list[int], PlaneHeader]],
                   values: dict[int, Message]) -> None:
        """A node agent's answer for its ranks: reply headers shared by rank groups, and
        values by rank. Bulk updates only: this runs once per node, not per rank."""
        request = self.requests.get(request_id)
        if request is None:
            return  # given up on (stuck ranks, expired control request)
        replies = request.replies
        targets = request.target_set
        for ranks, header in groups:
            if self.table.unhealthy:  # a stuck rank that answers at last is free again
                for rank in ranks:
                    info = self.table[rank]
                    if info.state == "stuck":
                        self.table.set_state(info, "idle", "")
            ranks = [r for r in ranks if r not in replies and r in targets]
            replies.update(dict.fromkeys(ranks, header))
            if request.merger is not None:
                request.merger.done.update(ranks)
        for rank, msg in values.items():
            if rank not in targets:
                continue
            try:
                request.values[rank] = msg.value()
            except Exception as e:
                replies[rank] = {**replies.get(rank, {}), "status": "error",
                                 "ename": type(e).__name__, "evalue": str(e)}
        self.finish(request, may_wait=True)

    def busy(self) -> dict[int, str]:
        """Ranks some open request waits for, and the label of the oldest such request
        (for ``%ranks`` when agents keep the ranks' states)."""
        busy: dict[int, str] = {}
        for request in self.requests.values():
            if request.id in self._control:
                continue
            for rank in request.targets:
                if rank not in request.replies:
                    busy.setdefault(rank, request.label)
        return busy

    def finish(self, request: Request, may_wait: bool = False) -> None:
        """Resolve ``request`` if every target has an answer (else nothing). Its last output
        is flushed first; a failure there ends the request all the same, with an error
        saying so, so that the cell replies and the next one runs. ``may_wait`` (the ranks
        answered): the end may wait a little for the output budget (``_waits_for_budget``)."""
        if (not request.done or request.future.done()
                or (may_wait and self._waits_for_budget(request))):
            return
        self.requests.pop(request.id, None)
        self._control.discard(request.id)
        try:
            if request.merger is not None:
                request.merger.flush(final=True)
        except Exception as e:
            log.exception("the last output of %s could not be shown", request.label)
            request.output_error = f"its last output could not be shown: {type(e).__name__}: {e}"
        request.sent = []
        request.finished = time.time()
        request.future.set_result(request)

    def _waits_for_budget(self, request: Request) -> bool:
        """Whether the end of ``request`` waits (at most LAST_OUTPUT_WAIT) for the output
        budget to take its last few lines; ``tick`` tries again."""
        if request.merger is None or not request.merger.waits_for_budget():
            return False
        now = time.monotonic()
        if request.last_output_by is None:
            request.last_output_by = now + LAST_OUTPUT_WAIT
        return now < request.last_output_by

    def expire(self, request: Request, reason: str) -> None:
        """Give up on ``request``'s silent targets: each fails with ``reason``."""
        for rank in request.targets:
            request.replies.setdefault(rank, {"status": "error", "ename": "RankTimeout",
                                              "evalue": reason})
        self.finish(request)
        self.requests.pop(request.id, None)  # also when its waiter gave up (cancelled)
        self._control.discard(request.id)

    def fail_rank(self, rank: int, error: PlaneHeader) -> None:
        """A rank is gone: ``error`` is its answer to every open request it had not answered."""
        for request in list(self.requests.values()):
            if rank in request.target_set and rank not in request.replies:
                request.replies[rank] = error
                if request.merger is not None:
                    request.merger.rank_done(rank)
                self.finish(request)

    def fail_all(self, error: PlaneHeader) -> None:
        """Every open request ends, ``error`` for each target that had not answered."""
        for request in list(self.requests.values()):
            for rank in request.targets:
                request.replies.setdefault(rank, {**error})
            self.finish(request)

    def interrupted(self, now: float) -> None:
        """The user interrupted: every open request (but control requests, which their
        callers time out) counts the grace from now."""
        for request in self.requests.values():
            if request.interrupted_at is None and request.id not in self._control:
                request.interrupted_at = now

    def tick(self, now: float, interrupt_grace: float) -> None:
        """Flush merged output; interrupt again the ranks late to stop, and give up on those
        that ignored an interrupt for too long."""
        for request in list(self.requests.values()):
            try:
                if request.merger is not None:
                    request.merger.flush()
            except Exception:
                log.exception("the output of %s could not be shown", request.label)
            if request.last_output_by is not None:
                self.finish(request, may_wait=True)  # its last lines wait for the budget
            elif request.interrupted_at is not None:
                self._late(request, now, interrupt_grace)

    def _late(self, request: Request, now: float, grace: float) -> None:
        """Half the grace after an interrupt, the ranks that still run ``request`` are
        interrupted again (an interrupt can land where it is held back, or be lost with a
        node's agent); after the whole grace they are given up on as stuck."""
        assert request.interrupted_at is not None
        waited = now - request.interrupted_at
        if waited < grace / 2:
            return
        late = [r for r in request.targets if r not in request.replies]
        if not request.reinterrupted:
            request.reinterrupted = True
            self.reinterrupt(late)
        if waited < grace:
            return
        for rank in late:
            info = self.table[rank]
            self.table.set_state(info, "stuck",
                                 f"did not stop within {grace:g} s of the interrupt "
                                 "(blocked in C code, e.g. an MPI receive?)")
            request.replies[rank] = {
                "status": "error", "ename": "RankStuck", "evalue": info.reason,
                "traceback": [self.stuck_hint]}
            if request.merger is not None:
                request.merger.rank_done(rank)
        self.finish(request)
