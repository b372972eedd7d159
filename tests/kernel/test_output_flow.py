"""Flow control of output (HubKernel.output_window): ranks that print faster than the hub
takes their output in wait in print, so the hub's memory for output in transit stays within
a window per sender; nothing is lost, and such ranks stay interruptible. Direct, and through
node agents (2 pretended nodes)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import psutil
import pytest

from hpckernel.hub.outputs import WRITE_BACKLOG

from .conftest import _close
from .harness import Kernel, PeakRss, expand_ranks

MB = 10**6
RANKS = 4
WINDOW = 1 * MB
MEMORY = 16 * MB  # HubKernel.output_memory: the rest of the flood goes to a file
#: What the hub's merger may hold of a stream's text (merge.OutputBudget.burst_bytes).
HELD = 1 * MB
#: The rest of the hub's memory in a flood: a flush's joined text, decoded messages, the
#: allocator's freed but not returned memory. Spilled lines waiting for the writer thread
#: come on top, up to outputs.WRITE_BACKLOG: the writer falls behind when the disk or the
#: CPU is busy. The hub grew 22-41 MB in all in this flood (28 runs, both fan-ins at once,
#: up to 31 MB waiting for the writer) and 58 MB once in the whole suite; without flow
#: control 200-420 MB.
SLACK = 32 * MB
LINES = 250_000  # 25 MB per rank, 100 MB in all: several times what the bound allows
#: Each line numbered, so that a gap would show.
FLOOD = ("import sys\nfor i in range({lines}):\n"
         "    sys.stdout.write(f'{{i:09d}}' + 'x' * 90 + '\\n')\nprint('done', rank)")
MODES = {"direct": {"HPCKERNEL_FANIN": "direct"},
         "agents": {"HPCKERNEL_FANIN": "agents", "HPCKERNEL_NODES": "2"}}


@pytest.fixture(scope="module", params=sorted(MODES))
def flow_kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Kernel, int]]:
    """A kernel with a 1 MB window, and how many senders the hub has (ranks, or agents)."""
    k = Kernel(tmp_path_factory.mktemp("flow"), ranks=RANKS, env=MODES[request.param],
               extra=[f"--HubKernel.output_window={WINDOW}",
                      f"--HubKernel.output_memory={MEMORY}",
                      "--HubKernel.interrupt_grace=5"])
    yield k, RANKS if request.param == "direct" else 2
    _close(k)


def test_a_flood_waits_at_its_senders_and_every_line_is_kept(
        flow_kernel: tuple[Kernel, int]) -> None:
    k, senders = flow_kernel
    k.ok(FLOOD.format(lines=1000))  # the hub's spill file and merger code paths warmed up
    before = psutil.Process(k.hub_pid).memory_info().rss
    with PeakRss(k.hub_pid) as rss:
        flood = k.run(FLOOD.format(lines=LINES), timeout=240)
    assert flood.status == "ok", flood.content
    grown = rss.peak - before
    # Kept, a window per sender in transit (queued, and as much again decoded), held.
    bound = MEMORY + 2 * WINDOW * senders + HELD + WRITE_BACKLOG + SLACK
    assert grown < bound, f"hub RSS grew {grown / MB:.0f} MB in the flood, bound {bound / MB:.0f}"
    # Every line of every rank, in order, is readable from the hub.
    kept = k.ok("%%local\nfor r, t in enumerate(_px.stdout):\n"
                "    lines = t.splitlines()\n"
                "    print(r, lines[-1], len(lines), all(x[:9] == f'{i:09d}' and len(x) == 99"
                " for i, x in enumerate(lines[:-1])))")
    assert kept.text().splitlines() == [f"{r} done {r} {LINES + 1} True" for r in range(RANKS)]
    assert k.ok("print('alive')").text() == f"[stdout:0-{RANKS - 1}] alive\n"


def test_ranks_waiting_in_print_stop_at_an_interrupt(flow_kernel: tuple[Kernel, int]
                                                     ) -> None:
    k, _ = flow_kernel
    msg_id = k.submit("import sys\nprint('started', flush=True)\ni = 0\nwhile True:\n"
                      "    sys.stdout.write(f'{i:09d}' + 'x' * 90 + '\\n')\n    i += 1")
    # The ranks fill their windows within milliseconds of this line, and wait in print.
    assert k.collect(msg_id, until="started") is None
    t0 = time.monotonic()
    k.km.interrupt_kernel()
    result = k.collect(msg_id, timeout=60)
    elapsed = time.monotonic() - t0
    assert result is not None and result.status == "error", result and result.content
    # Every rank stopped (none stuck), some maybe in print, some in the loop: the
    # tracebacks, so the groups of the error, differ.
    stopped = re.findall(r"ranks? ([0-9,-]+): (\w+)", result.content["evalue"])
    assert {name for _, name in stopped} == {"KeyboardInterrupt"}, result.content["evalue"]
    assert sorted(r for ranks, _ in stopped for r in expand_ranks(ranks)) == list(range(RANKS))
    assert elapsed < 5, f"the interrupt took {elapsed:.1f} s"
    # What the ranks printed before the interrupt is all kept, no line missing.
    kept = k.ok("%%local\nprint(all(x[:9] == f'{i:09d}' for t in _px.stdout "
                "for i, x in enumerate(t.splitlines()[1:])))")
    assert kept.text() == "True\n"
    assert k.ok("print('alive')").text() == f"[stdout:0-{RANKS - 1}] alive\n"
