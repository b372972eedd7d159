"""A live batch job as a user meets it in JupyterLab: an sbatch'ed simulation (2 nodes x 2
ranks of the virtual cluster, ``srun python -m hpckernel.live``) marked live in
``%squeue``, attached with its Attach button (the job's dashboard shows), a live plot of
what it publishes drawing in the browser, and a cell run in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from hpckernel.kernelspec import LOCAL_DISPLAY
from hpckernel.live.files import job_root
from tests.slurm.test_live_jobs import LiveSim

from .lab import CELL_TIMEOUT, Lab

pytestmark = [pytest.mark.ui, pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.timeout(900), pytest.mark.usefixtures("cluster_env")]


def test_a_running_batch_job_attached_and_plotted_in_jupyterlab(lab: Lab,
                                                                tmp_path: Path) -> None:
    # The server's kernels look in the default job root: the job's live files go there.
    sim = LiveSim(tmp_path, steps=100_000, pause=0.02, root=job_root())
    try:
        nb = lab.new_notebook("live", LOCAL_DISPLAY)
        table = nb.run("%squeue").outputs.first
        attach = table.get_by_role("button", name="Attach")
        expect(attach).to_be_visible(timeout=CELL_TIMEOUT)
        expect(table).to_contain_text(sim.job)
        attach.click()
        expect(table).to_contain_text(f"attached to live job {sim.job}", timeout=CELL_TIMEOUT)
        expect(table.locator(".hpc-ranks")).to_contain_text("n2", timeout=CELL_TIMEOUT)
        expect(table.locator(".hpc-ranks tr")).to_have_count(5)  # a header and 4 ranks
        nb.screenshot("live-attach.png")

        plot = nb.run(f"%liveplot --job {sim.job} energy").outputs.first.locator(
            ".hpc-liveplot")
        expect(plot.locator("polyline.hpc-line")).to_have_count(4, timeout=CELL_TIMEOUT)
        # The ranks' kept history first, then what they publish as the plot shows: grows.
        first = len(plot.locator("polyline[data-label='0']").get_attribute("points").split())
        expect(plot.locator("polyline[data-label='0']")).not_to_have_attribute(
            "points", re.compile(rf"^(\S+ ){{{first - 1}}}\S+$"), timeout=CELL_TIMEOUT)
        nb.screenshot("live-plot.png")

        cell = nb.run(f"%%px --job {sim.job}\nprint(comm.allreduce(rank), step > 0)")
        expect(cell.outputs.first).to_have_text("[stdout:0-3] 6 True", timeout=CELL_TIMEOUT)
    finally:
        sim.cancel()
