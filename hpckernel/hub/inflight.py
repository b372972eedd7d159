"""Requests in flight from the hub to the ranks: which ranks each one still waits for, their
replies, and when it is done (every target replied, died, timed out, or was given up on after
an interrupt). Runs on the plane thread only; a request's future is how other threads wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..plane import Message
from .ranktable import RankInfo, RankTable
from .requests import Request

#: publish(msg_type, content, metadata, parent) sends one IOPub message.
Publish = Callable[[str, dict[str, Any], dict[str, Any], dict[str, Any] | None], None]


class InFlight:
    """The open requests, by id, and the bookkeeping of their replies."""

    def __init__(self, table: RankTable, publish: Publish) -> None:
        self.table = table
        self.publish = publish
        self.requests: dict[str, Request] = {}
        #: Keep each rank's queue and busy state as requests come and go. Node agents keep
        #: their ranks' (the hub's work stays per node); ``busy`` then works it out.
        self.per_rank = True
        self._control: set[str] = set()  # ids of the open control requests

    def __len__(self) -> int:
        return len(self.requests)

    def get(self, request_id: str) -> Request | None:
        return self.requests.get(request_id)

    def add(self, request: Request, control: bool) -> None:
        """Open ``request``. A control request is answered by the ranks' I/O threads, beside
        whatever they run, so it neither queues on them nor makes them busy."""
        self.requests[request.id] = request
        if control:
            self._control.add(request.id)
            return
        if not self.per_rank:
            return
        for rank in request.targets:
            info = self.table[rank]
            info.queue.append(request.id)
            if info.state == "idle":
                self.table.set_state(info, "busy")
            info.cell = self.label(info)

    def label(self, info: RankInfo) -> str:
        """The label of what the rank runs now (the oldest request in its queue)."""
        request = self.requests.get(info.queue[0]) if info.queue else None
        return request.label if request is not None else ""

    def emit(self, request: Request, msg_type: str, content: dict[str, Any],
             metadata: dict[str, Any]) -> None:
        """Where a request's merged output goes: IOPub, or kept on it (``--noblock``)."""
        if msg_type == "execute_result" and request.execution_count is not None:
            content = {**content, "execution_count": request.execution_count}
        if request.captured is not None:
            request.captured.append((msg_type, content, metadata))
        else:
            self.publish(msg_type, content, metadata, request.parent)

    def reply(self, info: RankInfo, header: dict[str, Any], msg: Message) -> None:
        request_id = header.get("id") or ""
        if request_id in info.queue:
            info.queue.remove(request_id)
        if info.state in ("busy", "stuck"):
            self.table.set_state(info, "busy" if info.queue else "idle", "")
        info.cell = self.label(info)
        request = self.requests.get(request_id)
        if request is None or info.rank in request.replies:
            return  # a reply after we gave up on it (stuck rank) or a duplicate
        if request.merger is not None:
            request.merger.rank_done(info.rank)
        request.replies[info.rank] = header
        if msg.payload:
            try:
                request.values[info.rank] = msg.value()
            except Exception as e:
                request.replies[info.rank] = {**header, "status": "error",
                                              "ename": type(e).__name__, "evalue": str(e)}
        self.finish(request)

    def node_reply(self, request_id: str, groups: list[tuple[list[int], dict[str, Any]]],
                   values: dict[int, Message]) -> None:
        """A node agent's answer for its ranks: reply headers shared by rank groups, and
        values by rank. Bulk updates only: this runs once per node, not per rank."""
        request = self.requests.get(request_id)
        if request is None:
            return  # given up on (stuck ranks, expired control request)
        replies = request.replies
        for ranks, header in groups:
            if self.table.unhealthy:  # a stuck rank that answers at last is free again
                for rank in ranks:
                    info = self.table[rank]
                    if info.state == "stuck":
                        self.table.set_state(info, "idle", "")
            if replies:
                ranks = [r for r in ranks if r not in replies]
            replies.update(dict.fromkeys(ranks, header))
            if request.merger is not None:
                request.merger.done.update(ranks)
        for rank, msg in values.items():
            try:
                request.values[rank] = msg.value()
            except Exception as e:
                replies[rank] = {**replies.get(rank, {}), "status": "error",
                                 "ename": type(e).__name__, "evalue": str(e)}
        self.finish(request)

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

    def finish(self, request: Request) -> None:
        """Resolve ``request`` if every target has an answer (else nothing)."""
        if not request.done or request.future.done():
            return
        if request.merger is not None:
            request.merger.flush(final=True)
        self.requests.pop(request.id, None)
        self._control.discard(request.id)
        request.finished = time.time()
        request.future.set_result(request)

    def expire(self, request: Request, reason: str) -> None:
        for rank in request.targets:
            request.replies.setdefault(rank, {"status": "error", "ename": "RankTimeout",
                                              "evalue": reason})
        self.finish(request)
        self.requests.pop(request.id, None)  # also when its waiter gave up (cancelled)
        self._control.discard(request.id)

    def fail_rank(self, rank: int, error: dict[str, Any]) -> None:
        """A rank is gone: ``error`` is its answer to every open request it had not answered."""
        for request in list(self.requests.values()):
            if rank in request.targets and rank not in request.replies:
                request.replies[rank] = error
                if request.merger is not None:
                    request.merger.rank_done(rank)
                self.finish(request)

    def fail_all(self, error: dict[str, Any]) -> None:
        """Every open request ends, ``error`` for each target that had not answered."""
        for request in list(self.requests.values()):
            for rank in request.targets:
                request.replies.setdefault(rank, {**error})
            self.finish(request)

    def interrupted(self, now: float) -> None:
        for request in self.requests.values():
            if request.interrupted_at is None:
                request.interrupted_at = now

    def tick(self, now: float, interrupt_grace: float) -> None:
        """Flush merged output; give up on ranks that ignored an interrupt for too long."""
        for request in list(self.requests.values()):
            if request.merger is not None:
                request.merger.flush()
            if request.interrupted_at is not None:
                self._give_up_on_stuck(request, now, interrupt_grace)

    def _give_up_on_stuck(self, request: Request, now: float, grace: float) -> None:
        assert request.interrupted_at is not None
        if now - request.interrupted_at < grace:
            return
        for rank in request.targets:
            if rank in request.replies:
                continue
            info = self.table[rank]
            self.table.set_state(info, "stuck",
                                 f"did not stop within {grace:g} s of the interrupt "
                                 "(blocked in C code, e.g. an MPI receive?)")
            request.replies[rank] = {
                "status": "error", "ename": "RankStuck", "evalue": info.reason,
                "traceback": ["The rank is marked stuck. Run %restart_ranks to replace the "
                              "ranks."]}
            if request.merger is not None:
                request.merger.rank_done(rank)
        self.finish(request)
