"""The dashboard and the Slurm job table as a user sees them in JupyterLab."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from hpckernel.kernelspec import LOCAL_DISPLAY
from tests.cluster.fixtures import testbed_env

from .lab import CELL_TIMEOUT, Lab

pytestmark = [pytest.mark.ui, pytest.mark.xdist_group("ui"), pytest.mark.timeout(900)]


def test_dashboard_follows_a_running_cell(lab: Lab) -> None:
    nb = lab.new_notebook("dashboard", LOCAL_DISPLAY)
    nb.run("from mpi4py import MPI")
    board = nb.run("%dashboard")
    panel = board.outputs.first
    expect(panel).to_contain_text("local", timeout=CELL_TIMEOUT)
    expect(panel).to_contain_text("idle", timeout=CELL_TIMEOUT)
    expect(panel.get_by_role("button", name="Interrupt")).to_be_visible()
    # While a --noblock cell keeps the ranks busy, the table (fed by the hub, once a second)
    # says so; afterwards it says idle again.
    nb.run("%%px --noblock\nimport time\ntime.sleep(15)")
    expect(panel).to_contain_text("busy", timeout=30_000)
    nb.screenshot("dashboard-busy.png")
    expect(panel).not_to_contain_text("busy", timeout=60_000)
    expect(panel).to_contain_text("idle")


def test_liveplot_draws_in_the_browser(lab: Lab) -> None:
    nb = lab.new_notebook("liveplot", LOCAL_DISPLAY)
    nb.run("%%px --noblock\nimport time, hpckernel\nfor i in range(80):\n"
           "    hpckernel.publish('loss', rank + i / 80)\n    time.sleep(0.05)")
    plot = nb.run("%liveplot loss").outputs.first.locator(".hpc-liveplot")
    lines = plot.locator("polyline.hpc-line")
    expect(lines).to_have_count(4, timeout=CELL_TIMEOUT)  # one per rank
    # The browser adds the new points it is sent: each line grows to all 80.
    for rank in range(4):
        expect(plot.locator(f"polyline[data-label='{rank}']")).to_have_attribute(
            "points", re.compile(r"^(\S+ ){79}\S+$"), timeout=60_000)
    expect(plot.locator(".hpc-legend")).to_have_text(re.compile(r"rank 0.*rank 3"))
    expect(plot.locator("svg text", has_text="published value number")).to_be_visible()
    expect(plot.locator("svg text", has_text=re.compile(r"^3(\.5)?$")).first).to_be_visible()
    # Hovering a point of rank 3's line names the rank, the value's number and the value.
    x, y = (float(v) for v in lines.nth(3).get_attribute("points").split()[40].split(","))
    box = plot.locator("svg").bounding_box()
    assert box is not None
    lab.page.mouse.move(box["x"] + x, box["y"] + y)
    expect(plot.locator(".hpc-tip")).to_have_text(re.compile(r"^rank 3: #40 = 3\.5$"))
    nb.screenshot("liveplot.png")


@pytest.mark.cluster
def test_squeue_table_in_the_browser(lab: Lab) -> None:
    # The JupyterLab server's kernels inherit this environment (tests/run-all.sh exports
    # the virtual cluster's); the job table then shows the cluster's jobs.
    assert os.environ.get("SLURM_CONF") == testbed_env()["SLURM_CONF"], (
        "run the UI tests with the cluster's environment: eval \"$(python3 "
        "tests/cluster/testbed.py env)\"")
    nb = lab.new_notebook("squeue", LOCAL_DISPLAY)
    job = nb.run("%%sbatch --job-name=ui-sleeper --time=2\nsleep 120")
    expect(job.outputs.first).to_contain_text(re.compile(r"job \d+: (PENDING|RUNNING)"),
                                              timeout=CELL_TIMEOUT)
    table = nb.run("%squeue")
    expect(table.outputs.first).to_contain_text("ui-sleeper", timeout=CELL_TIMEOUT)
    expect(table.outputs.first.get_by_role("button", name="Cancel").first).to_be_visible()
    nb.screenshot("squeue.png")
    done = nb.run("%%local\nimport subprocess\n"
                  "subprocess.run(['scancel', '--name=ui-sleeper'], check=True)\n"
                  "print('cancelled')")
    expect(done.outputs.first).to_contain_text("cancelled", timeout=CELL_TIMEOUT)
