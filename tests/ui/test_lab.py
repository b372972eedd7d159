"""The notebook as a user sees it: JupyterLab 4 in headless chromium, "MPI (local)" kernel."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from hpckernel.kernelspec import LOCAL_DISPLAY

from .lab import CELL_TIMEOUT, Lab
from .server import LabServer

# One worker runs the UI tests (they share one JupyterLab server); the first page load of
# JupyterLab and the kernel start count against the first test's time.
pytestmark = [pytest.mark.ui, pytest.mark.xdist_group("ui"), pytest.mark.timeout(900)]


def test_px_cell_output_collapses_in_the_browser(lab: Lab, lab_server: LabServer) -> None:
    last = lab_server.ranks - 1
    nb = lab.new_notebook("px-collapsed", LOCAL_DISPLAY)
    # A first cell as users write it; it also waits for the ranks to be up, so the cells
    # below show only their own output.
    nb.run("from mpi4py import MPI")

    same = nb.run("print('hello from every rank')")
    expect(same.outputs).to_have_count(1, timeout=CELL_TIMEOUT)
    expect(same.outputs).to_have_text(f"[stdout:0-{last}] hello from every rank",
                                      timeout=CELL_TIMEOUT)

    differing = nb.run("print(rank)")
    expected = [f"[stdout:{r}] {r}" for r in range(lab_server.ranks)]
    expect(differing.outputs).to_have_count(1, timeout=CELL_TIMEOUT)
    expect(differing.outputs).to_have_text(" ".join(expected), timeout=CELL_TIMEOUT)
    assert differing.output_lines() == expected

    zero = nb.run("%%px --targets 0\nprint('only zero')")
    expect(zero.outputs).to_have_count(1, timeout=CELL_TIMEOUT)
    expect(zero.outputs).to_have_text("[stdout:0] only zero", timeout=CELL_TIMEOUT)

    nb.screenshot("px-collapsed.png")
