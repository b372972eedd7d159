"""Node agents (HubKernel.fanin = agents) with real ranks on 2 pretended nodes: what a user
sees is what direct mode shows, and a dead agent ends the cell naming its node and ranks."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .conftest import _close
from .harness import Kernel

AGENTS = {"HPCKERNEL_FANIN": "agents", "HPCKERNEL_NODES": "2"}


@pytest.fixture
def agent_kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(tmp_path, ranks=4, env=AGENTS)
    yield k
    _close(k)


def _agents(k: Kernel) -> dict[str, psutil.Process]:
    """The kernel's agent processes by node key (the last argument of their command)."""
    found = {}
    for proc in psutil.Process(k.hub_pid).children(recursive=True):
        try:
            cmd = proc.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "hpckernel.agent" in cmd:
            found[cmd[-1]] = proc
    return found


def test_agents_show_what_direct_mode_shows(agent_kernel: Kernel) -> None:
    assert sorted(_agents(agent_kernel)) == ["0", "1"]
    assert agent_kernel.ok("print('same')").text() == "[stdout:0-3] same\n"
    assert agent_kernel.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(4)}
    failed = agent_kernel.run("1/(rank-2)")
    assert failed.content["evalue"] == "rank 2: ZeroDivisionError: division by zero"
    table = agent_kernel.ok("%ranks").text().splitlines()
    assert [row.split()[1] for row in table[1:5]] == ["idle"] * 4


def test_dead_agent_ends_the_cell_naming_its_node_and_restart_recovers(
        agent_kernel: Kernel) -> None:
    agent = _agents(agent_kernel)["1"]  # ranks 2-3
    msg_id = agent_kernel.submit("print('started', flush=True)\n"
                                 "import time\nif rank >= 2:\n    time.sleep(120)")
    assert agent_kernel.collect(msg_id, until="[stdout:0-3] started") is None
    t0 = time.monotonic()
    agent.send_signal(signal.SIGKILL)
    result = agent_kernel.collect(msg_id, timeout=30)
    assert result is not None and time.monotonic() - t0 < 5
    assert result.status == "error"
    evalue = result.content["evalue"]
    assert evalue.startswith("ranks 2-3: RankDied: lost with the agent of node ")
    assert "(1)" in evalue
    blocked = agent_kernel.run("print(1)")
    assert blocked.status == "error" and "ranks 2-3 are dead" in blocked.content["evalue"]
    assert "4 fresh ranks ready" in agent_kernel.ok("%restart_ranks").text()
    assert agent_kernel.ok("print('back')").text() == "[stdout:0-3] back\n"
    assert sorted(_agents(agent_kernel)) == ["0", "1"]
