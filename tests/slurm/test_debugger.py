"""JupyterLab's debugger on the Slurm kernel: 3 nodes of the virtual cluster, one rank each,
reached through the node agents (fan-in "auto" picks them for several nodes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.harness import Kernel
from tests.kernel.lab_debugger import LabDebugger
from tests.kernel.test_debugger import CELL, check_lab_sequence

from .test_provisioner import queued, settings

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]


@pytest.fixture
def slurm_lab(tmp_path: Path) -> Iterator[tuple[Kernel, LabDebugger]]:
    kernel = Kernel(tmp_path, slurm=settings(tmp_path))
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    lab = LabDebugger(kernel.kc)
    lab.connect()
    yield kernel, lab
    kernel.shutdown()
    assert not queued(job_id), "the kernel's job outlived its shutdown"


def test_debugger_stops_ranks_on_other_nodes(slurm_lab: tuple[Kernel, LabDebugger]) -> None:
    kernel, lab = slurm_lab
    assert check_lab_sequence(lab, CELL, {"x": "0", "y": "0"}) == 1
    # Rank 2 is on node n3: its debugger is reached through n3's agent.
    reply, text = lab.finish(lab.execute("%pxconfig --debug 2"))
    assert reply["status"] == "ok" and "debugger stops on ranks 2" in text
    msg_id = lab.execute(CELL)
    assert lab.event("stopped")["body"]["threadId"] == 3
    top = lab.frames()[0]
    assert lab.variables(top)["Locals"]["y"]["value"] == "20"
    where = lab.request("evaluate", {"context": "repl", "frameId": top["id"],
                                     "expression": "__import__('os').environ['SLURMD_NODENAME']"})
    assert where["body"]["result"] == "'n3'", where
    # The interrupt button while rank 2 is paused ends the cell on every rank.
    kernel.km.interrupt_kernel()
    reply, text = lab.finish(msg_id, timeout=60)
    assert reply["ename"] == "KeyboardInterrupt" and reply["evalue"].startswith("rank 2:")
    assert sorted(text.splitlines()) == ["[stdout:0] done 0", "[stdout:1] done 10"]
    lab.stop()
