"""Node agents on the virtual cluster: 3 nodes x 2 ranks (a test node has 2 CPUs), one agent
per node (fanin "auto" picks agents for a multi-node allocation); a killed agent ends the
cell naming its node and ranks."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.kernel.harness import Kernel

from .test_provisioner import queued, settings

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]


@pytest.fixture(params=[64, 2], ids=["flat", "tree"])
def kernel6(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Kernel]:
    """6 ranks on 3 nodes; with fan-out 2 the agents of n1 and n2 form a group, n2's agent
    talking to n1's over TCP with CurveZMQ."""
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, ntasks_per_node=2,
                                             setup=f"export HPCKERNEL_FANOUT={request.param}"))
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    yield kernel
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


def test_three_nodes_of_two_ranks_through_agents(kernel6: Kernel, tmp_path: Path) -> None:
    result = kernel6.ok("import os\nfrom mpi4py import MPI\n"
                         "print(MPI.COMM_WORLD.allreduce(1), os.environ['SLURMD_NODENAME'])")
    assert result.text() == "[stdout:0-1] 6 n1\n[stdout:2-3] 6 n2\n[stdout:4-5] 6 n3\n"
    assert sorted(_agents(tmp_path)) == ["0", "1", "2"]
    msg_id = kernel6.submit("print('started', flush=True)\n"
                             "import time\nif rank in (2, 3):\n    time.sleep(120)")
    assert kernel6.collect(msg_id, until="[stdout:0-5] started") is None
    t0 = time.monotonic()
    _agents(tmp_path)["1"].send_signal(signal.SIGKILL)  # node n2: ranks 2-3
    lost = kernel6.collect(msg_id, timeout=30)
    assert lost is not None and time.monotonic() - t0 < 5
    assert lost.content["evalue"].startswith("ranks 2-3: RankDied: lost with the agent of "
                                             "node n2 (1)")
    assert "6 fresh ranks ready" in kernel6.ok("%restart_ranks", timeout=120).text()
    assert kernel6.ok("print('back')").text() == "[stdout:0-5] back\n"
