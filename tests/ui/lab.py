"""Page objects for JupyterLab 4 in a real browser (Playwright, sync API).

Notebooks are created through the REST API with their kernel named in the metadata, then
opened by URL: no launcher clicks, no kernel-choice dialog. Every wait is a Playwright
locator or ``expect`` with a timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "ui"

#: JupyterLab's first load (≈10 MB of JavaScript) on a loaded 2-core machine
LOAD_TIMEOUT = 180_000
#: a kernel start: hub, mpiexec and the ranks
KERNEL_TIMEOUT = 180_000
#: a cell's run, output included
CELL_TIMEOUT = 120_000
#: DOM reactions to a key press or click
UI_TIMEOUT = 30_000


def api(url: str, token: str, method: str, path: str, body: Any = None,
        timeout: float = 30) -> Any:
    """One call of the Jupyter server's REST API with token auth (no XSRF cookie needed);
    the decoded JSON answer, or None for an empty one."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}{path}", data=data, method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


class Cell:
    """One code cell of an open notebook."""

    def __init__(self, locator: Locator) -> None:
        self.locator = locator
        self.prompt = locator.locator(".jp-InputArea-prompt")
        self.editor = locator.locator(".jp-InputArea-editor .cm-content")
        #: one per output block (consecutive stream text of one stream is one block)
        self.outputs = locator.locator(".jp-OutputArea-child")

    def wait_done(self, timeout: float = CELL_TIMEOUT) -> None:
        """Until the prompt shows an execution count (``[3]:``), not ``[*]:``."""
        expect(self.prompt).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=timeout)

    def output_text(self, index: int = 0) -> str:
        """The text of output block ``index`` as displayed (call after an ``expect``)."""
        return str(self.outputs.nth(index).locator(".jp-OutputArea-output").inner_text())

    def output_lines(self, index: int = 0) -> list[str]:
        return [line for line in self.output_text(index).splitlines() if line.strip()]


class Notebook:
    """An open notebook: its panel in the main area of the page.

    The kernel is idle before its ranks are up: the first cell that runs on the ranks shows
    a "[hpckernel] ... ranks started in ... s" line above its own output.
    """

    def __init__(self, page: Page, path: str, kernel_display_name: str) -> None:
        self.page = page
        self.path = path
        self.kernel_display_name = kernel_display_name
        # The one notebook panel on view (Lumino hides the others with lm-mod-hidden).
        self.panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")

    def wait_kernel_idle(self, timeout: float = KERNEL_TIMEOUT) -> None:
        """Until the notebook is connected to its kernel and the kernel is idle: the status
        bar says "MPI (local) | Idle" (it goes "No Kernel | Initializing", "… | Connecting",
        "… | Busy" before), and so does the toolbar's indicator. (The indicator alone says
        idle before any kernel is known.)"""
        status = self.page.locator("#jp-main-statusbar").get_by_title(
            f"Change kernel for {self.path}", exact=True)
        expect(status).to_have_text(f"{self.kernel_display_name} | Idle", timeout=timeout)
        toolbar = self.panel.locator(".jp-NotebookPanel-toolbar")
        expect(toolbar.locator(".jp-Toolbar-kernelName")).to_have_text(
            self.kernel_display_name, timeout=UI_TIMEOUT)
        expect(toolbar.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle", timeout=UI_TIMEOUT)

    def cell(self, index: int) -> Cell:
        return Cell(self.cells.nth(index))

    def run(self, code: str, timeout: float = CELL_TIMEOUT) -> Cell:
        """Type ``code`` into the last cell (empty: JupyterLab adds one below the cell it
        runs at the end), run it with Shift+Enter and wait until it is done."""
        count = self.cells.count()
        cell = self.cell(count - 1)
        expect(cell.editor).to_have_text("", timeout=UI_TIMEOUT)
        cell.editor.click()
        # fill() inserts the text as one edit: no auto-indent or bracket closing on the way.
        cell.editor.fill(code)
        expect(cell.editor).to_have_text(code.replace("\n", ""), timeout=UI_TIMEOUT)
        self.page.keyboard.press("Shift+Enter")
        cell.wait_done(timeout)
        expect(self.cells).to_have_count(count + 1, timeout=UI_TIMEOUT)
        return cell

    def screenshot(self, name: str) -> Path:
        """Save the page as `artifacts/ui/<name>`."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path


class Lab:
    """JupyterLab at ``url`` in ``page``; notebooks live in its root directory ``root``."""

    def __init__(self, page: Page, url: str, token: str, root: Path) -> None:
        self.page = page
        self.url = url
        self.token = token
        self.root = root

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        return api(self.url, self.token, method, path, body, timeout)

    def kernel_name(self, display_name: str) -> str:
        """The kernelspec name of the kernel shown as ``display_name`` in the launcher."""
        specs = self.api("GET", "/api/kernelspecs")["kernelspecs"]
        names = [str(name) for name, spec in specs.items()
                 if spec["spec"]["display_name"] == display_name]
        if not names:
            shown = sorted(spec["spec"]["display_name"] for spec in specs.values())
            raise LookupError(f"no kernel {display_name!r} on the server; it has {shown}")
        return names[0]

    def new_notebook(self, name: str, kernel_display_name: str,
                     timeout: float = LOAD_TIMEOUT) -> Notebook:
        """Create ``<name>.ipynb`` (one empty code cell) on ``kernel_display_name``, open it
        in a workspace of its own (nothing else restored) and wait for its idle kernel."""
        kernel = self.kernel_name(kernel_display_name)
        path = f"{name}.ipynb"
        notebook = {
            "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": kernel, "display_name": kernel_display_name,
                                        "language": "python"}},
            "cells": [{"cell_type": "code", "id": "first", "source": "", "metadata": {},
                       "outputs": [], "execution_count": None}],
        }
        quoted = urllib.parse.quote(path)
        self.api("PUT", f"/api/contents/{quoted}",
                 {"type": "notebook", "format": "json", "content": notebook})
        workspace = urllib.parse.quote(name)
        self.page.goto(f"{self.url}/lab/workspaces/{workspace}/tree/{quoted}"
                       f"?token={self.token}", timeout=timeout)
        nb = Notebook(self.page, path, kernel_display_name)
        expect(nb.cells.first).to_be_visible(timeout=timeout)
        nb.wait_kernel_idle(KERNEL_TIMEOUT)
        return nb
