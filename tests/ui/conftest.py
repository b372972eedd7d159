"""Fixtures of the real-browser UI tests: a JupyterLab server with the "MPI (local)" kernel
(`server.py`), and headless Debian chromium driven by Playwright's sync API.

The browser comes from `bash tests/ui/install.sh`, the Python side from the `test` extra.
A missing browser is a failure that says how to install it, never a silent skip.
Screenshots (and the page's HTML on failure) go to `artifacts/ui/`.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from .lab import ARTIFACTS, Lab
from .server import LabServer

CHROMIUM = Path("/usr/bin/chromium")
#: ranks of the "MPI (local)" kernel the server offers
RANKS = 4
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on 127.0.0.1 (a free port, a token, a temporary root directory) offering
    "MPI (local)" with ``RANKS`` ranks and "Slurm MPI" on 2 nodes of the virtual cluster;
    its log is `artifacts/ui/jupyterlab[-<xdist worker>].log`. At the
    end its kernels are shut down through the REST API and the server is stopped; a hub or
    rank left behind is an error of the test that ran last."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # The cluster tests' worker may start a server of its own (tests/ui/test_slurm_lab.py).
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    log = ARTIFACTS / (f"jupyterlab-{worker}.log" if worker else "jupyterlab.log")
    log.unlink(missing_ok=True)
    server = LabServer.start(tmp_path_factory.mktemp("jupyterlab"), log, RANKS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium (a module's tests share it; each test gets its own page)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install it with `bash tests/ui/install.sh`")
    with sync_playwright() as playwright:
        # As root chromium needs --no-sandbox; /dev/shm may be small in containers.
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, for the page fixture's final screenshot."""
    report = yield
    setattr(item, f"ui_report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh 1280x900 page. At the end its screenshot goes to `artifacts/ui/<test>.png`,
    or to `<test>-FAILED.png`, with the page's HTML beside it, if the test failed."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    name = request.node.name.replace("/", "_")
    failed = any(getattr(getattr(request.node, f"ui_report_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    for stale in (f"{name}.png", f"{name}-FAILED.png", f"{name}-FAILED.html"):
        (ARTIFACTS / stale).unlink(missing_ok=True)
    target = ARTIFACTS / (f"{name}-FAILED.png" if failed else f"{name}.png")
    try:
        tab.screenshot(path=str(target), full_page=True)
        if failed:
            target.with_suffix(".html").write_text(tab.content())
    finally:
        context.close()


@pytest.fixture
def lab(lab_server: LabServer, page: Page) -> Lab:
    """The JupyterLab of ``lab_server`` in ``page``."""
    return Lab(page, lab_server.url, lab_server.token, lab_server.root)
