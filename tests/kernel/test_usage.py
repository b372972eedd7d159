"""``usage_request`` (jupyter-resource-usage's kernel panel): the hub's figures and the
ranks' totals, per node."""

from __future__ import annotations

import time
from typing import Any

import psutil

from .harness import Kernel


def usage(kernel: Kernel) -> dict[str, Any]:
    msg = kernel.kc.session.msg("usage_request", {})
    kernel.kc.control_channel.send(msg)
    while True:
        reply = kernel.kc.get_control_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            assert reply["msg_type"] == "usage_reply"
            return dict(reply["content"])


def test_usage_counts_the_hub_and_every_rank(kernel: Kernel) -> None:
    deadline = time.monotonic() + 30
    content = usage(kernel)
    while content["hpckernel"]["ranks"]["reporting"] < 4:  # heartbeats come each second
        assert time.monotonic() < deadline, content
        time.sleep(0.5)
        content = usage(kernel)
    parts = content["hpckernel"]
    assert content["pid"] == kernel.hub_pid
    hub_rss = psutil.Process(kernel.hub_pid).memory_info().rss
    assert abs(parts["hub"]["memory"] - hub_rss) < 0.2 * hub_rss
    ranks_rss = sum(psutil.Process(p).memory_info().rss for p in kernel.rank_pids())
    assert parts["ranks"]["count"] == 4
    assert abs(parts["ranks"]["memory"] - ranks_rss) < 0.2 * ranks_rss
    assert content["kernel_memory"] == parts["hub"]["memory"] + parts["ranks"]["memory"]
    assert content["kernel_cpu"] >= parts["ranks"]["cpu"]
    assert [n["ranks"] for n in parts["nodes"]] == ["0-3"]  # one node here
    assert parts["nodes"][0]["memory"] == parts["ranks"]["memory"]
    for key in ("hostname", "cpu_count", "host_virtual_memory"):
        assert key in content
