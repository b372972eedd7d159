"""Requests from a live job's endpoint to its ranks, answered once per node by the node
agents (``nreply``, ``agent/replies.py``): the endpoint merges the nodes' answers into one
per request, in the same form, for the notebook that asked."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..agent.replies import NodeRequest
from ..plane import Message, pack
from ..targets import format_sorted, parse_ranks


def merge_node_reply(request: NodeRequest, msg: Message) -> None:
    """Add one agent's ``nreply`` to ``request`` (values, groups of alike replies, lost)."""
    header = msg.header
    at = 0
    for rank, count, *_ in header.get("values", []):
        request.values[rank] = msg.buffers[at:at + count]
        at += count
    for ranks, common in header.get("groups", []):
        request.group(parse_ranks(ranks), common)
    for rank in parse_ranks(header.get("lost") or ""):
        request.lose(rank)


def decode_reply(msg: Message) -> tuple[dict[int, dict[str, Any]], dict[int, Any], list[int]]:
    """A merged ``nreply`` as (each rank's reply header, each rank's value, lost ranks);
    used by the notebook side."""
    replies: dict[int, dict[str, Any]] = {}
    for ranks, common in msg.header.get("groups", []):
        for rank in parse_ranks(ranks):
            replies[rank] = common
    values: dict[int, Any] = {}
    at = 0
    for rank, count, *_ in msg.header.get("values", []):
        frames = msg.buffers[at:at + count]
        at += count
        if frames:
            values[rank] = Message("reply", {}, frames[0], frames[1:]).value()
    return replies, values, parse_ranks(msg.header.get("lost") or "")


@dataclass
class Pending:
    """A request the endpoint sent to ranks, and who gets the merged answer."""

    request: NodeRequest
    client: bytes | None  # None: the endpoint's own (a cell's arm, run or cancel)
    client_id: str = ""  # the id the notebook gave it
    cell: Any = None  # root.Cell: the cell whose arm or run this is


@dataclass
class Routes:
    """Which agent each rank's requests go to (its node's, or the top of its subtree)."""

    node_of: dict[int, str] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # node -> host
    dead: set[str] = field(default_factory=set)

    def register(self, header: dict[str, Any]) -> list[int]:
        route = header.get("via") or header.get("node") or ""
        node = header.get("node") or route
        if header.get("host"):
            self.hosts[node] = header["host"]
        added = []
        for rank_header in header.get("registered", []):
            rank = rank_header.get("rank")
            if isinstance(rank, int):
                self.node_of[rank] = route
                added.append(rank)
        return added

    def frames_for(self, kind: str, header: dict[str, Any], targets: list[int],
                   value: Any = None) -> tuple[NodeRequest, list[tuple[str, list[Any]]]]:
        """A request to ``targets``: its bookkeeping (ranks not reachable are lost at once)
        and the frames for each agent that has targets."""
        request_id = header.get("id") or uuid.uuid4().hex
        request = NodeRequest(request_id, kind, targets, kind in ("peek", "where"))
        header = {**header, "id": request_id, "targets": format_sorted(targets)}
        frames = pack(kind, header, value, has_value=value is not None)
        nodes = set()
        for rank in targets:
            node = self.node_of.get(rank)
            if node is None or node in self.dead:
                request.lose(rank)
            else:
                nodes.add(node)
        return request, [(node, frames) for node in sorted(nodes)]


def reply_frames(pending: Pending) -> list[Any]:
    """The merged answer for the notebook, with its own request id."""
    frames = pending.request.take() or [b"nreply", json.dumps(
        {"id": pending.request.id, "groups": [], "lost": "", "values": []}).encode(), b""]
    header = json.loads(bytes(frames[1]))
    header["id"] = pending.client_id
    return [b"lreply", json.dumps(header).encode(), *frames[2:]]
