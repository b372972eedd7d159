"""The hub's own log (its records, its threads' tracebacks, its event loop's errors) goes to
the kernel's log — the hub's stderr from before ipykernel captures it — never into a cell,
and a flood of records costs a bounded amount of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.conftest import _close
from tests.kernel.harness import Kernel
from tests.reliability.test_hostile_input import wait_for_log


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kernel, Path]]:
    tmp = tmp_path_factory.mktemp("hublog")
    k = Kernel(tmp, ranks=1, log=tmp / "hub.log")
    yield k, tmp / "hub.log"
    _close(k)


# Each line makes the hub log something of its own, as its code or threads would.
SOURCES = {
    "record": "import logging\nlogging.getLogger('hpckernel.hub.outputs').warning('{m}')",
    "thread": "import threading\nt = threading.Thread(target=lambda: 1 / 0, "
              "name='hpckernel-{m}')\nt.start()\nt.join()",
    "plane loop": "def fail():\n    raise RuntimeError('{m}')\n"
                  "get_ipython().kernel.pool.loop.call_soon_threadsafe(fail)",
    # ipykernel's message handlers (a bad control message) log through tornado's logger
    "handler": "import logging\nlogging.getLogger('tornado.general').error('{m}')",
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_hubs_log_never_reaches_a_cell(logged: tuple[Kernel, Path], source: str) -> None:
    kernel, log = logged
    marker = f"hub-log-marker-{source.replace(' ', '-')}"
    start = log.stat().st_size
    cell = kernel.run("%%local\n" + SOURCES[source].format(m=marker))
    wait_for_log(log, marker, start)
    # ipykernel forwards what reaches descriptor 2 from a thread of its own: a later cell
    # would show what came too late for this one.
    after = kernel.ok("%%local\nimport sys\nsys.stderr.flush()\nprint('next cell')")
    assert marker not in cell.text() + after.text(), cell.text() + after.text()
    assert after.text() == "next cell\n"


def test_a_flood_of_hub_log_records_is_bounded(logged: tuple[Kernel, Path]) -> None:
    kernel, log = logged
    start = log.stat().st_size
    kernel.ok("%%local\nimport logging\nlog = logging.getLogger('hpckernel.hub.outputs')\n"
              "for i in range(20000):\n    log.warning('flood %d ' + 'x' * 10000, i)\n"
              "log.warning('flood over')")
    text = wait_for_log(log, "flood", start)
    kernel.ok("%%local\nimport time\ntime.sleep(1)\nlog.warning('after the flood')")
    text = wait_for_log(log, "after the flood", start)
    assert len(text) < 2 * 10**6, f"{len(text)} bytes of log for one flood"
    assert "log records dropped" in text
