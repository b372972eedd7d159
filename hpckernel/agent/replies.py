"""Requests open at a node: which of the node's ranks still owe a reply, and the one answer
(``nreply``) the agent sends up for them all.

A node reply groups identical reply headers (``ok`` on 64 ranks is one entry), lists the
ranks the agent stopped waiting for (``lost``: dead or unreachable, the hub says how), and
carries the values of ``apply``/``pull`` as each rank's frames, unopened.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from ..plane import Message, kinds
from ..plane.headers import PlaneHeader
from ..plane.wire import OutFrame
from ..targets import format_ranks, parse_ranks

#: A rank's value as it arrived: its reply's [payload, *buffers], unopened.
ValueFrames = Sequence[bytes | memoryview]


def local_targets(intervals: list[tuple[int, int]], ranks: list[int]) -> list[int]:
    """The node's ``ranks`` (sorted) inside the request's target ``intervals``."""
    chosen: list[int] = []
    for lo, hi in intervals:
        chosen.extend(ranks[bisect_left(ranks, lo):bisect_left(ranks, hi + 1)])
    return chosen


class NodeRequest:
    """One request at this node (and, for a relay, at the nodes below it), until each of its
    ranks answered or was lost."""

    __slots__ = ("control", "groups", "id", "interrupted", "kind", "lost", "pending",
                 "segments", "targets", "values")

    def __init__(self, request_id: str, kind: str, targets: list[int], control: bool) -> None:
        self.id = request_id
        self.kind = kind
        self.targets = targets
        self.control = control
        self.pending = set(targets)
        #: replies not sent up: JSON of the reply header -> (that header, its ranks); a
        #: header a live job's endpoint makes itself is a plain dict (``live/endpoint.py``)
        self.groups: dict[str, tuple[PlaneHeader | dict[str, Any], list[int]]] = {}
        self.values: dict[int, ValueFrames] = {}
        #: rank -> its reply's shared-memory segments (the header's ``shm``, passed on)
        self.segments: dict[int, object] = {}
        self.lost: list[int] = []
        self.interrupted = False

    def add_targets(self, ranks: list[int]) -> None:
        """More of the node's ranks (sorted) to wait for: those registered since the
        request first came (a copy sent again after an agent was started again)."""
        new = [r for r in ranks if r not in self.pending and r not in self.targets]
        if new:
            self.targets = sorted({*self.targets, *new})
            self.pending.update(new)

    @property
    def done(self) -> bool:
        """Whether every target rank answered or was lost."""
        return not self.pending

    def reply(self, rank: int, header: PlaneHeader, frames: ValueFrames) -> None:
        """A rank's reply: its header and its [payload, *buffers] frames."""
        if rank not in self.pending:
            return  # a duplicate, or a rank already given up on
        # Without the fields that differ between ranks' replies without making them
        # different answers.
        common = header.copy()
        common.pop("id", None)
        common.pop("rank", None)
        common.pop("shm", None)
        self.group([rank], common)
        if len(frames) > 1 or (frames and len(frames[0])):
            self.values[rank] = frames
            if header.get("shm"):
                self.segments[rank] = header["shm"]

    def group(self, ranks: list[int], common: PlaneHeader | dict[str, Any]) -> None:
        """Ranks that answered alike (a rank's reply, or a group of a lower agent's)."""
        ranks = [r for r in ranks if r in self.pending]
        if not ranks:
            return
        self.pending.difference_update(ranks)
        key = json.dumps(common, sort_keys=True, default=str)
        self.groups.setdefault(key, (common, []))[1].extend(ranks)

    def merge(self, msg: Message, limit: int) -> None:
        """Add an ``nreply`` from below (ranks up to ``limit``): its values' frames, its
        groups of alike replies, its lost ranks. Called by an agent for the agents below it
        (``agent.py``) and by a live job's endpoint for its agents (``live/endpoint.py``)."""
        header = msg.header
        at = 0
        for entry in header.get("values", []):
            rank, count = entry[0], entry[1]
            self.values[rank] = msg.buffers[at:at + count]
            if len(entry) > 2 and entry[2]:
                self.segments[rank] = entry[2]
            at += count
        for ranks, common in header.get("groups", []):
            self.group(parse_ranks(ranks, limit), common)
        for rank in parse_ranks(header.get("lost") or "", limit):
            self.lose(rank)

    def lose(self, rank: int) -> None:
        """Stop waiting for ``rank`` (dead, unreachable): the reply names it ``lost``."""
        if rank in self.pending:
            self.pending.discard(rank)
            self.lost.append(rank)

    def take(self) -> list[OutFrame] | None:
        """The frames of one ``nreply`` with what arrived since the last one (None if
        nothing did)."""
        if not self.groups and not self.lost:
            return None
        frames: list[OutFrame] = []
        values: list[list[object]] = []
        for rank in sorted(self.values):
            parts = self.values[rank]
            segments = self.segments.get(rank)
            values.append([rank, len(parts), segments] if segments else [rank, len(parts)])
            frames.extend(parts)
        header: PlaneHeader = {
            "id": self.id, "request": self.kind,
            "groups": [[format_ranks(ranks), common] for common, ranks in self.groups.values()],
            "lost": format_ranks(self.lost), "values": values}
        self.groups, self.values, self.segments, self.lost = {}, {}, {}, []
        return [kinds.NREPLY.encode(), json.dumps(header).encode(), b"", *frames]
