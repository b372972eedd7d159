"""The mission as a user meets it: JupyterLab in a real browser, the "Slurm MPI" kernel picked
for a notebook (the server's kernel provisioner submits the job), a cell on ranks on two
nodes of the virtual cluster, the toolbar's interrupt and restart, and the kernel's shutdown
ending the job."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from hpckernel.kernelspec import SLURM_DISPLAY
from tests.slurm.test_provisioner import queued

from .lab import CELL_TIMEOUT, UI_TIMEOUT, Lab

# In the cluster group, not the UI one: the job needs two of the three nodes, which the
# other cluster tests fill and take down; this worker starts a JupyterLab of its own.
pytestmark = [pytest.mark.ui, pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.timeout(900), pytest.mark.usefixtures("cluster_env")]

WHERE = "import os\nprint(rank, os.environ['SLURMD_NODENAME'], os.environ['SLURM_JOB_ID'])"


def test_slurm_mpi_kernel_in_jupyterlab(lab: Lab) -> None:
    nb = lab.new_notebook("slurm", SLURM_DISPLAY)
    where = nb.run(WHERE)
    expect(where.outputs.last).to_contain_text("[stdout:1] 1 n", timeout=CELL_TIMEOUT)
    lines = [line for line in where.output_text(where.outputs.count() - 1).splitlines()
             if line.startswith("[stdout:")]
    found = [re.fullmatch(r"\[stdout:(\d)\] (\d) (n\d) (\d+)", line) for line in lines]
    assert all(found) and len(found) == 2, lines
    ranks, nodes, jobs = zip(*((m[2], m[3], m[4]) for m in found if m), strict=True)
    assert ranks == ("0", "1") and len(set(nodes)) == 2 and len(set(jobs)) == 1, lines
    job_id = jobs[0]
    assert queued(job_id)

    # The toolbar's stop button interrupts a cell running on the ranks.
    toolbar = nb.panel.locator(".jp-NotebookPanel-toolbar")
    busy = nb.cell(nb.cells.count() - 1)
    busy.editor.click()
    busy.editor.fill("import time\nprint('sleeping', flush=True)\ntime.sleep(120)")
    nb.page.keyboard.press("Shift+Enter")
    expect(busy.outputs.first).to_contain_text("sleeping", timeout=CELL_TIMEOUT)
    toolbar.locator("[data-command='notebook:interrupt-kernel']").click()
    expect(busy.locator).to_contain_text("KeyboardInterrupt", timeout=UI_TIMEOUT)
    busy.wait_done(UI_TIMEOUT)

    # Restart keeps the allocation: fresh ranks in the same job, no new queue wait.
    toolbar.locator("[data-command='notebook:restart-kernel']").click()
    nb.page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()  # "Restart"
    nb.wait_kernel_idle()
    again = nb.run(WHERE)
    expect(again.outputs.last).to_contain_text(f"[stdout:1] 1 {nodes[1]} {job_id}",
                                               timeout=CELL_TIMEOUT)
    nb.screenshot("slurm-mpi.png")

    # Shutting the kernel down (as the Kernel menu does) ends the job.
    for kernel in lab.api("GET", "/api/kernels"):
        lab.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=60)
    assert not queued(job_id), "the kernel's job outlived its shutdown"
