"""The node's output on its way up: what the node's ranks print in one flush interval goes
to the hub as ``nstream`` messages per request and stream, identical text collapsed into a
rank range; identical displays (the same pickled content) as one ``display`` message.

The hub's ``OutputMerger`` then merges the nodes' batches as it merges ranks' text, so the
notebook sees what it sees without agents.

Messages wait in ``ready``, in the order they must reach the hub, until the agent's output
window has room for them (``plane/credit.py``); replies queue there too, behind the output
of their request. Each message notes how far it takes each rank's (or agent below's) output,
which that sender is told once the message has gone up.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

import zmq

from ..plane import kinds
from ..plane.groups import group_equal
from ..plane.headers import PlaneHeader
from ..plane.wire import OutFrame
from ..targets import format_ranks

#: A sender of output to this agent: a rank, or an agent below (its identity).
Sender = int | bytes


@dataclass
class Outgoing:
    """One message for the hub."""

    #: its frames; with ``header``, the header frame is made when it is sent (stamped)
    frames: list[OutFrame]
    header: PlaneHeader | None = None
    size: int = 0  # bytes counted against the window (0: not output, such as a reply)
    credits: dict[Sender, int] = field(default_factory=dict)  # sender -> stamp it takes

    def encode(self, stamp: int | None) -> list[OutFrame]:
        """Its frames to send, with ``stamp`` as the header's ``sent`` (output only)."""
        if self.header is None:
            return self.frames
        header = self.header if stamp is None else {**self.header, "sent": stamp}
        return [self.frames[0], json.dumps(header).encode(), *self.frames[2:]]


class NodeOutput:
    """Output of the node's ranks not yet sent up, in arrival order per rank."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes  # most text in one nstream message
        # (id, name) -> rank -> its pieces of text and their stamps, joined once when
        # sent: adding each piece to a string copied all of a flood's text again for
        # every piece
        self._streams: dict[tuple[str, str], dict[int, list[tuple[str, int | None]]]] = {}
        self._displays: dict[tuple[str, str, bytes],
                             tuple[list[zmq.Frame], dict[int, int | None]]] = {}
        self.ready: deque[Outgoing] = deque()

    def add_stream(self, rank: int, request_id: str, name: str, text: str,
                   stamp: int | None) -> None:
        """Queue text ``rank`` printed (its ``stream`` message), batched at the next
        ``take``."""
        self._streams.setdefault((request_id, name), {}).setdefault(rank, []).append(
            (text, stamp))

    def add_display(self, rank: int, request_id: str, msg_type: str,
                    frames: list[zmq.Frame], stamp: int | None) -> None:
        """Queue a display. What ``rank`` sent of ``request_id`` before it is made ready
        first: its displays still pending (with the other ranks' copies), then its text."""
        for key in [k for k, (_, ranks) in self._displays.items()
                    if k[0] == request_id and rank in ranks]:
            self._ready_display(key)
        for request, name in [k for k in self._streams if k[0] == request_id]:
            pieces = self._streams[(request, name)].pop(rank, None)
            if pieces:
                self._batch(request, name, {rank: pieces})
        key = (request_id, msg_type, b"".join(f.bytes for f in frames))
        self._displays.setdefault(key, (frames, {}))[1][rank] = stamp

    def take(self, request_id: str | None = None) -> None:
        """Make everything pending (of ``request_id`` only, if given) ready: displays first,
        since a rank's text still pending was printed after its displays still pending."""
        for key in [k for k in self._displays if request_id in (None, k[0])]:
            self._ready_display(key)
        for request, name in [k for k in self._streams if request_id in (None, k[0])]:
            self._batch(request, name, self._streams.pop((request, name)))

    def _ready_display(self, key: tuple[str, str, bytes]) -> None:
        frames, ranks = self._displays.pop(key)
        header: PlaneHeader = {"id": key[0], "msg_type": key[1], "ranks": format_ranks(ranks)}
        self.ready.append(Outgoing([kinds.DISPLAY.encode(), b"", *frames], header,
                                   sum(len(f) for f in frames),
                                   {r: s for r, s in ranks.items() if s is not None}))

    def _batch(self, request: str, name: str,
               by_rank: dict[int, list[tuple[str, int | None]]]) -> None:
        """Messages of at most ``max_bytes`` of text (a larger piece goes alone)."""
        texts: dict[int, list[str]] = {}
        credits: dict[Sender, int] = {}
        size = 0
        for rank, pieces in by_rank.items():
            for text, stamp in pieces:
                if size and size + len(text) > self.max_bytes:
                    self._nstream(request, name, texts, size, credits)
                    texts, credits, size = {}, {}, 0
                texts.setdefault(rank, []).append(text)
                size += len(text)
                if stamp is not None:
                    credits[rank] = stamp
        if texts:
            self._nstream(request, name, texts, size, credits)

    def _nstream(self, request: str, name: str, texts: dict[int, list[str]], size: int,
                 credits: dict[Sender, int]) -> None:
        joined = {rank: "".join(parts) for rank, parts in texts.items()}
        header: PlaneHeader = {"id": request, "name": name,
                               "parts": [[format_ranks(ranks), text]
                                         for text, ranks in group_equal(joined)]}
        self.ready.append(Outgoing([kinds.NSTREAM.encode(), b"", b""], header, size, credits))
