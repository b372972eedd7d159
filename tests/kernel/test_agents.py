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


def kill_agent_mid_cell(k: Kernel, node: str, sleepers: str) -> str:
    """Kill the agent of ``node`` while the ranks where ``sleepers`` (a condition on
    ``rank``) is true sleep in a cell; the cell's error, which must come within 5 s."""
    msg_id = k.submit(f"print('started', flush=True)\nimport time\nif {sleepers}:\n"
                      "    time.sleep(120)")
    assert k.collect(msg_id, until=f"[stdout:0-{k.ranks - 1}] started") is None
    t0 = time.monotonic()
    _agents(k)[node].send_signal(signal.SIGKILL)
    result = k.collect(msg_id, timeout=30)
    assert result is not None and time.monotonic() - t0 < 5
    assert result.status == "error"
    return str(result.content["evalue"])


def test_agents_show_what_direct_mode_shows(agent_kernel: Kernel) -> None:
    assert sorted(_agents(agent_kernel)) == ["0", "1"]
    assert agent_kernel.ok("print('same')").text() == "[stdout:0-3] same\n"
    assert agent_kernel.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(4)}
    failed = agent_kernel.run("1/(rank-2)")
    assert failed.content["evalue"] == "rank 2: ZeroDivisionError: division by zero"
    table = agent_kernel.ok("%ranks").text().splitlines()
    assert table[0].startswith("MPI: ")
    assert [row.split()[1] for row in table[2:6]] == ["idle"] * 4


def test_dead_agent_ends_the_cell_naming_its_node_and_restart_recovers(
        agent_kernel: Kernel) -> None:
    evalue = kill_agent_mid_cell(agent_kernel, "1", "rank >= 2")  # node 1: ranks 2-3
    assert evalue.startswith("ranks 2-3: RankDied: lost with the agent of node ")
    assert "(1)" in evalue
    blocked = agent_kernel.run("print(1)")
    assert blocked.status == "error" and "ranks 2-3 are dead" in blocked.content["evalue"]
    assert "4 fresh ranks ready" in agent_kernel.ok("%restart_ranks").text()
    assert agent_kernel.ok("print('back')").text() == "[stdout:0-3] back\n"
    assert sorted(_agents(agent_kernel)) == ["0", "1"]


def test_agents_form_a_tree_above_the_fanout(tmp_path: Path) -> None:
    """6 ranks on 3 pretended nodes, fan-out 2: node 1's agent talks to node 0's, which
    talks to the hub with node 2's. Same output; a dead agent below another is named."""
    k = Kernel(tmp_path, ranks=6, env={**AGENTS, "HPCKERNEL_NODES": "3"},
               extra=["--HubKernel.fanout=2"])
    try:
        assert sorted(_agents(k)) == ["0", "1", "2"]
        assert k.ok("print('same')").text() == "[stdout:0-5] same\n"
        assert k.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(6)}
        assert k.ok("%%local\nprint(ranks.apply(lambda: rank * 2))").text() == \
            "[0, 2, 4, 6, 8, 10]\n"
        failed = k.run("1/(rank-3)")
        assert failed.content["evalue"] == "rank 3: ZeroDivisionError: division by zero"
        evalue = kill_agent_mid_cell(k, "1", "rank in (2, 3)")
        assert evalue.startswith("ranks 2-3: RankDied: lost with the agent of node ")
        assert "6 fresh ranks ready" in k.ok("%restart_ranks").text()
        assert k.ok("print('back')").text() == "[stdout:0-5] back\n"
        # The agent the others of its group talk through: the whole group is lost.
        evalue = kill_agent_mid_cell(k, "0", "rank < 4")
        assert evalue.startswith("ranks 0-1: RankDied: lost with the agent of node "), evalue
        assert "; ranks 2-3: RankDied: " in evalue and "which it talks through, died" in evalue
    finally:
        _close(k)


def test_an_agent_under_a_stdout_flood_stays_alive_and_passes_all_of_it(
        agent_kernel: Kernel) -> None:
    """Ranks that print without pause for longer than HubKernel.agent_timeout: the agent
    still sends output and summaries up (it is not taken for dead) and the hub keeps every
    rank's whole output."""
    flood = agent_kernel.run(
        "import sys, time\nline = 'x' * 99 + '\\n'\nend = time.monotonic() + 6\n"
        "while time.monotonic() < end:\n    sys.stdout.write(line)\nprint('done', rank)",
        timeout=120)
    assert flood.status == "ok", flood.content
    kept = agent_kernel.ok("%%local\nprint(all(t.endswith(f'done {r}\\n') and "
                           "t.count('x' * 99) > 1000 for r, t in enumerate(_px.stdout)))")
    assert kept.text() == "True\n"
