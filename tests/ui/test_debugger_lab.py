"""JupyterLab's debugger on the ranks, as a user drives it in the browser: the bug icon,
a breakpoint clicked in a cell's gutter, the cell paused on rank 0, the Variables panel
with rank 0's values, Continue."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, expect

from hpckernel.kernelspec import LOCAL_DISPLAY

from .lab import CELL_TIMEOUT, UI_TIMEOUT, Lab
from .server import LabServer

pytestmark = [pytest.mark.ui, pytest.mark.xdist_group("ui"), pytest.mark.timeout(900)]

CELL = "def f(x):\n    y = x * 10 + 7\n    return y\n\nresult = f(rank)\nprint('done', result)"


def test_breakpoint_pauses_rank_0_and_shows_its_variables(lab: Lab,
                                                          lab_server: LabServer) -> None:
    nb = lab.new_notebook("debugger", LOCAL_DISPLAY)
    nb.run("from mpi4py import MPI")  # the ranks are up
    page = nb.page
    cell = nb.cell(nb.cells.count() - 1)
    cell.editor.click()
    cell.editor.fill(CELL)

    # The bug icon: enabled (the kernelspec offers the debugger), pressed once clicked.
    bug = nb.panel.locator(".jp-DebuggerBugButton")
    button = bug.locator("button")
    expect(button).to_be_enabled(timeout=UI_TIMEOUT)
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true", timeout=UI_TIMEOUT)

    # A breakpoint on line 3 (return y): a click in the breakpoint gutter beside it.
    lines = cell.locator.locator(".cm-line")
    expect(lines).to_have_count(6, timeout=UI_TIMEOUT)
    gutter = cell.locator.locator(".cm-gutter.cm-breakpoint-gutter")
    expect(gutter).to_be_visible(timeout=UI_TIMEOUT)
    line, strip = lines.nth(2).bounding_box(), gutter.bounding_box()
    assert line is not None and strip is not None
    page.mouse.click(strip["x"] + strip["width"] / 2, line["y"] + line["height"] / 2)
    # (not the gutter's hidden spacer, which holds a marker too)
    marker = gutter.locator(".cm-gutterElement:not([style*='visibility: hidden']) svg")
    expect(marker).to_have_count(1, timeout=UI_TIMEOUT)

    # Run: the cell pauses on rank 0, its line highlighted.
    cell.editor.click()
    page.keyboard.press("Control+Enter")
    expect(cell.locator.locator(".jp-DebuggerEditor-highlight")).to_have_count(
        1, timeout=CELL_TIMEOUT)
    expect(cell.prompt).to_have_text(re.compile(r"\[\*\]"), timeout=UI_TIMEOUT)

    # The debugger's sidebar: the call stack names the cell's function, the Variables panel
    # shows rank 0's x and y.
    sidebar = page.locator(".jp-DebuggerSidebar")
    if not sidebar.is_visible():
        page.locator(".jp-SideBar.jp-mod-right [data-id='jp-debugger-sidebar']").click()
    expect(sidebar).to_be_visible(timeout=UI_TIMEOUT)
    expect(sidebar.locator(".jp-DebuggerCallstackFrame-name").first).to_have_text(
        "f", timeout=UI_TIMEOUT)
    variables = sidebar.locator(".jp-DebuggerVariables-body:not(.lm-mod-hidden)")

    def value(name: str) -> Locator:
        item = variables.locator("jp-tree-item").filter(
            has=page.locator(".jp-DebuggerVariables-name").get_by_text(name, exact=True))
        return item.locator(".jp-DebuggerVariables-detail").first

    expect(value("x")).to_have_text("0", timeout=UI_TIMEOUT)
    expect(value("y")).to_have_text("7", timeout=UI_TIMEOUT)
    nb.screenshot("debugger.png")  # examples/screenshots/debugger.png

    # Continue: the cell ends on every rank.
    sidebar.get_by_title(re.compile(r"^Continue")).first.click()
    cell.wait_done()
    expected = [f"[stdout:{r}] done {r * 10 + 7}" for r in range(lab_server.ranks)]
    expect(cell.outputs.first).to_contain_text(expected[0], timeout=CELL_TIMEOUT)
    assert sorted(cell.output_lines()) == expected
