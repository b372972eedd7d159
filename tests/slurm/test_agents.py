"""Node agents on the virtual cluster: 3 nodes x 4 ranks (a test node has 2 CPUs: the kernel
overcommits them, ``SlurmProvisioner.overcommit``), one agent per node (fanin "auto" picks
agents for a multi-node allocation); a killed agent is started again on its node and the
cell of collectives it was killed in goes on, its loss and return said in the cell."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.kernel.harness import Kernel
from tests.kernel.test_agents import BARRIERS

from .test_provisioner import queued, settings

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]


@pytest.fixture(params=[64, 2], ids=["flat", "tree"])
def kernel12(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Kernel, int]]:
    """12 ranks on 3 nodes, and the fan-out: with 2 the agents of n1 and n2 form a group,
    n2's agent talking to n1's over TCP with CurveZMQ."""
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, ntasks_per_node=4, overcommit=True,
                                             setup=f"export HPCKERNEL_FANOUT={request.param}"))
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    yield kernel, request.param
    kernel.shutdown()
    assert not queued(job_id), "the kernel's job outlived its shutdown"


def _agents(tmp_path: Path) -> dict[str, psutil.Process]:
    """This kernel's agents (their job directory is under ``tmp_path``), by node index."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "hpckernel.agent" in cmd and any(str(tmp_path) in c for c in cmd):
            found[cmd[-1]] = proc
    return found


def test_three_nodes_of_four_ranks_through_agents(kernel12: tuple[Kernel, int],
                                                  tmp_path: Path) -> None:
    kernel, fanout = kernel12
    result = kernel.ok("import os\nfrom mpi4py import MPI\n"
                          "print(MPI.COMM_WORLD.allreduce(1), os.environ['SLURMD_NODENAME'])")
    assert result.text() == "[stdout:0-3] 12 n1\n[stdout:4-7] 12 n2\n[stdout:8-11] 12 n3\n"
    assert sorted(_agents(tmp_path)) == ["0", "1", "2"]
    # Flat: node n2's agent; tree: node n1's, which n2's talks to (over TCP).
    node, ranks = ("1", "4-7") if fanout == 64 else ("0", "0-3")
    msg_id = kernel.submit(BARRIERS)
    assert kernel.collect(msg_id, until="[stdout:0-11] started") is None
    killed = _agents(tmp_path)[node]
    killed.send_signal(signal.SIGKILL)
    result = kernel.collect(msg_id, timeout=90)
    assert result is not None and result.status == "ok", result.content
    text = result.text()
    assert "[stdout:0-11] total 66" in text, text
    assert f"was started again: ranks {ranks} are reached again" in text, text
    assert "RankDied" not in text, text
    assert _agents(tmp_path)[node].pid != killed.pid
    again = kernel.ok("import os\nprint(os.environ['SLURMD_NODENAME'])").text()
    assert again == "[stdout:0-3] n1\n[stdout:4-7] n2\n[stdout:8-11] n3\n"
