"""The node's output on its way up: what the node's ranks print in one flush interval goes
to the hub as one ``nstream`` message per request and stream, identical text collapsed into
a rank range; identical displays (the same pickled content) as one ``display`` message.

The hub's ``OutputMerger`` then merges the nodes' batches as it merges ranks' text, so the
notebook sees what it sees without agents.
"""

from __future__ import annotations

import json
from typing import Any

from ..hub.merge import group_equal
from ..plane.headers import PlaneHeader
from ..targets import format_ranks


class NodeOutput:
    """Output of the node's ranks not yet sent up, in arrival order per rank."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], dict[int, str]] = {}  # (id, name) -> rank -> text
        self._displays: dict[tuple[str, str, bytes], tuple[list[Any], list[int]]] = {}

    def add_stream(self, rank: int, request_id: str, name: str, text: str) -> None:
        texts = self._streams.setdefault((request_id, name), {})
        texts[rank] = texts.get(rank, "") + text

    def add_display(self, rank: int, request_id: str, msg_type: str,
                    frames: list[Any]) -> list[list[Any]]:
        """Queue a display; returns the text of ``request_id`` that must go up before it."""
        before = self.take(request_id, displays=False)
        key = (request_id, msg_type, b"".join(bytes(f) for f in frames))
        self._displays.setdefault(key, (frames, []))[1].append(rank)
        return before

    def take(self, request_id: str | None = None, displays: bool = True) -> list[list[Any]]:
        """Messages (frames) for everything pending (of ``request_id`` only, if given):
        displays first, since text queued after a display was printed after it."""
        out: list[list[Any]] = []
        if displays:
            for key in [k for k in self._displays if request_id in (None, k[0])]:
                frames, ranks = self._displays.pop(key)
                header: PlaneHeader = {"id": key[0], "msg_type": key[1],
                                       "ranks": format_ranks(ranks)}
                out.append([b"display", json.dumps(header).encode(), *frames])
        for request, name in [k for k in self._streams if request_id in (None, k[0])]:
            texts = self._streams.pop((request, name))
            stream: PlaneHeader = {"id": request, "name": name,
                                   "parts": [[format_ranks(ranks), text]
                                             for text, ranks in group_equal(texts)]}
            out.append([b"nstream", json.dumps(stream).encode(), b""])
        return out
