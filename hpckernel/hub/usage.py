"""The kernel's ``usage_reply`` (jupyter-resource-usage's kernel panel): ipykernel's fields,
for the whole kernel — the hub and its ranks — and the parts under ``hpckernel``.

``kernel_cpu`` and ``kernel_memory`` are the hub's CPU % and memory plus every rank's (from
their heartbeats, the figures ``%ranks`` shows); ``hostname``, ``pid`` and the ``host_*``
fields are the hub's and its node's. ``hpckernel`` holds the hub's own figures, the ranks'
totals, and each node's.
"""

from __future__ import annotations

import os
import socket
from typing import TypedDict

import psutil

from ..targets import format_ranks
from .ranktable import RankInfo


class _Node(TypedDict):
    """What the ranks of one host use together."""

    ranks: list[int]
    cpu: float
    memory: int


class Usage:
    """Measures the hub process (its CPU % is taken between two calls, as psutil does)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        psutil.cpu_percent(None)

    def content(self, ranks: list[RankInfo]) -> dict[str, object]:
        """The ``usage_reply`` content, with ``ranks`` (a snapshot of the rank table)."""
        with self.process.oneshot():
            hub_cpu = self.process.cpu_percent(None)
            hub_memory = self.process.memory_info().rss
        nodes: dict[str, _Node] = {}
        reporting = [r for r in ranks if r.rss]  # ranks that answered a heartbeat
        for info in reporting:
            node = nodes.setdefault(info.host or "?", {"ranks": [], "cpu": 0.0, "memory": 0})
            node["ranks"].append(info.rank)
            node["cpu"] += info.cpu
            node["memory"] += info.rss
        ranks_cpu = round(sum(r.cpu for r in reporting), 1)
        ranks_memory = sum(r.rss for r in reporting)
        content: dict[str, object] = {
            "hostname": socket.gethostname(), "pid": os.getpid(),
            "kernel_cpu": round(hub_cpu + ranks_cpu, 1),
            "kernel_memory": hub_memory + ranks_memory,
            "cpu_count": psutil.cpu_count(logical=True),
            "host_virtual_memory": dict(psutil.virtual_memory()._asdict()),
            "hpckernel": {
                "hub": {"cpu": hub_cpu, "memory": hub_memory},
                "ranks": {"count": len(ranks), "reporting": len(reporting),
                          "cpu": ranks_cpu, "memory": ranks_memory},
                "nodes": [{"host": host, "ranks": format_ranks(node["ranks"]),
                           "cpu": round(node["cpu"], 1), "memory": node["memory"]}
                          for host, node in sorted(nodes.items())]}}
        host_cpu = psutil.cpu_percent(None)
        if host_cpu:  # the first call gives a meaningless 0.0 (ipykernel leaves it out too)
            content["host_cpu_percent"] = host_cpu
        return content
