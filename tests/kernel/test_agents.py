"""Node agents (HubKernel.fanin = agents) with real ranks on 2 pretended nodes: what a user
sees is what direct mode shows; a killed agent is started again and the cell goes on, its
loss and return said in words for the user; an agent that cannot come back ends the ranks,
none called dead while it runs."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .conftest import _close
from .harness import Kernel, Result, wait_gone

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


#: A cell of collectives that runs for a few seconds and ends with a result every rank
#: agrees on: if a rank were lost, or called dead while it runs, it could not end so.
BARRIERS = ("from mpi4py import MPI\nimport time\nprint('started', flush=True)\n"
            "for _ in range(300):\n    MPI.COMM_WORLD.Barrier()\n    time.sleep(0.01)\n"
            "total = MPI.COMM_WORLD.allreduce(rank)\nprint('total', total)")


def kill_agent_mid_cell(k: Kernel, node: str, sig: signal.Signals = signal.SIGKILL
                        ) -> tuple[psutil.Process, Result]:
    """Send ``sig`` to the agent of ``node`` while the ranks run ``BARRIERS``; the agent
    and the cell's result."""
    msg_id = k.submit(BARRIERS)
    assert k.collect(msg_id, until=f"[stdout:0-{k.ranks - 1}] started") is None
    agent = _agents(k)[node]
    agent.send_signal(sig)
    result = k.collect(msg_id, timeout=60)
    assert result is not None
    return agent, result


def test_agents_show_what_direct_mode_shows(agent_kernel: Kernel) -> None:
    assert sorted(_agents(agent_kernel)) == ["0", "1"]
    assert agent_kernel.ok("print('same')").text() == "[stdout:0-3] same\n"
    assert agent_kernel.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(4)}
    failed = agent_kernel.run("1/(rank-2)")
    assert failed.content["evalue"] == "rank 2: ZeroDivisionError: division by zero"
    table = agent_kernel.ok("%ranks").text().splitlines()
    assert table[0].startswith("MPI: ")
    assert [row.split()[1] for row in table[2:6]] == ["idle"] * 4


def test_a_killed_agent_comes_back_and_the_cell_goes_on(agent_kernel: Kernel) -> None:
    killed, result = kill_agent_mid_cell(agent_kernel, "1")  # node 1: ranks 2-3
    assert result.status == "ok", result.content
    text = result.text()
    assert "[stdout:0-3] total 6" in text, text
    assert "[hpckernel] the agent of node " in text and "(1) stopped" in text, text
    assert "was started again: ranks 2-3 are reached again; output they printed while it " \
        "was down may be missing" in text, text
    assert "RankDied" not in text and "WARNING" not in text, text
    again = _agents(agent_kernel)["1"]
    assert again.pid != killed.pid
    table = agent_kernel.ok("%ranks").text().splitlines()
    assert [row.split()[1] for row in table[2:6]] == ["idle"] * 4
    assert agent_kernel.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(4)}


def test_an_agent_that_cannot_come_back_ends_every_rank(tmp_path: Path) -> None:
    """A stopped agent (SIGSTOP: it neither answers nor dies, so rank.sh cannot start it
    again) leaves its ranks unreachable: after HubKernel.agent_timeout + agent_return the
    cell ends naming the node, and every rank is really ended; %restart_ranks recovers."""
    k = Kernel(tmp_path, ranks=4, env=AGENTS,
               extra=["--HubKernel.agent_timeout=2", "--HubKernel.agent_return=2"])
    try:
        pids = k.rank_pids()
        stopped, result = kill_agent_mid_cell(k, "1", signal.SIGSTOP)
        assert result.status == "error"
        evalue = str(result.content["evalue"])
        assert "did not come back within 2 s" in evalue and "(1)" in evalue, evalue
        # Ranks 0-1 end the cell or are ended with the others, as the timing falls.
        assert "ranks 2-3: RankDied: the agent of node " in evalue, evalue
        assert "[hpckernel] the agent of node " in result.text()
        assert wait_gone(pids) == [], "ranks called dead still run"
        table = k.ok("%ranks").text()
        assert table.count("dead") == 4 and "ended with the others" in table, table
        with contextlib.suppress(psutil.NoSuchProcess):  # ended with the ranks, as a rule
            stopped.send_signal(signal.SIGKILL)
        assert "4 fresh ranks ready" in k.ok("%restart_ranks").text()
        assert k.ok("print('back')").text() == "[stdout:0-3] back\n"
    finally:
        _close(k)


def test_agents_form_a_tree_above_the_fanout(tmp_path: Path) -> None:
    """6 ranks on 3 pretended nodes, fan-out 2: node 1's agent talks to node 0's, which
    talks to the hub with node 2's. Same output; a killed agent, below another or the one
    others talk through, comes back and the cell goes on."""
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
        _, result = kill_agent_mid_cell(k, "1")  # below node 0's agent
        assert result.status == "ok" and "[stdout:0-5] total 15" in result.text(), \
            (result.content["evalue"], result.text())
        assert k.ok("print('back')").text() == "[stdout:0-5] back\n"
        # The agent the others of its group talk through: they reconnect to its successor.
        _, result = kill_agent_mid_cell(k, "0")
        assert result.status == "ok" and "[stdout:0-5] total 15" in result.text(), \
            (result.content["evalue"], result.text())
        assert "ranks 2-3 cannot be reached" in result.text(), result.text()
        assert k.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(6)}
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
