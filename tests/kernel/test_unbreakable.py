"""What ranks print, how fast users interrupt and what a neighbour sends cannot break the
kernel: every failure is one cell's error, never a dead, wedged or bloated kernel (both
fan-in modes: CI runs tests/kernel again through agents).

The racy tests loop (``HPCKERNEL_TEST_LOOPS``, 10 by default; 50 when hunting races):
a failure once in twenty runs is a defect, not noise.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from .conftest import _close
from .harness import Kernel, expand_ranks

LOOPS = int(os.environ.get("HPCKERNEL_TEST_LOOPS") or 10)
RANKS = 4


@pytest.fixture(scope="module")
def sturdy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """A kernel whose ranks get 5 s to obey an interrupt (a loaded 2-core machine)."""
    k = Kernel(tmp_path_factory.mktemp("sturdy"), ranks=RANKS,
               extra=["--HubKernel.interrupt_grace=5"])
    yield k
    _close(k)


def _all_interrupted(evalue: str) -> None:
    """Every rank stopped with KeyboardInterrupt (none stuck, none dead)."""
    stopped = re.findall(r"ranks? ([0-9,-]+): (\w+)", evalue)
    assert {name for _, name in stopped} == {"KeyboardInterrupt"}, evalue
    assert sorted(r for ranks, _ in stopped for r in expand_ranks(ranks)) == \
        list(range(RANKS)), evalue


def test_what_json_cannot_carry_is_shown_escaped_and_the_next_cell_runs(
        sturdy: Kernel) -> None:
    printed = sturdy.run("print('x\\ud800y')")
    assert printed.status == "ok", printed.content
    assert printed.text() == f"[stdout:0-{RANKS - 1}] x\\ud800y\n"
    raised = sturdy.run("raise ValueError('bad \\ud800 text')")
    assert raised.status == "error"
    assert "ValueError: bad \\ud800 text" in raised.content["evalue"]
    # Metadata the JSON packer refuses: the cell still ends, its output shown.
    odd = sturdy.run("display({'text/plain': 'hi'}, raw=True, metadata={'k': object()})")
    assert odd.status == "ok", odd.content
    assert odd.plain() == [f"[display:0-{RANKS - 1}] hi"]
    assert sturdy.ok("print('fine')").text() == f"[stdout:0-{RANKS - 1}] fine\n"


def _interrupt_when_busy(k: Kernel, code: str, until: str | None = None) -> float:
    """Submit ``code``, interrupt as soon as the kernel says it is busy with it (or once a
    stream with ``until`` came), and return how long the cell took to end after that."""
    msg_id = k.submit(code)
    if until is None:
        deadline = time.monotonic() + 30
        while True:
            msg = k._iopub(msg_id, deadline)
            k._pending.setdefault(msg_id, [])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy":
                break
    else:
        assert k.collect(msg_id, until=until) is None
    t0 = time.monotonic()
    k.km.interrupt_kernel()
    result = k.collect(msg_id, timeout=60)
    assert result is not None and result.status == "error", result and result.content
    _all_interrupted(result.content["evalue"])
    return time.monotonic() - t0


@pytest.mark.parametrize("cycle", range(LOOPS))
def test_an_interrupt_right_after_the_cell_is_sent_is_never_lost(sturdy: Kernel,
                                                                 cycle: int) -> None:
    assert _interrupt_when_busy(sturdy, "import time\ntime.sleep(60)") < 5
    assert sturdy.ok("print('next')").text() == f"[stdout:0-{RANKS - 1}] next\n"


SMALL_MESSAGES = {
    "clear and print": "from IPython.display import clear_output\nprint('started', "
                       "flush=True)\ni = 0\nwhile True:\n    clear_output(wait=True)\n"
                       "    print(i, flush=True)\n    i += 1",
    "tiny displays": "print('started', flush=True)\ni = 0\nwhile True:\n    display(i)\n"
                     "    i += 1",
}


@pytest.mark.parametrize("cycle", range(LOOPS))
@pytest.mark.parametrize("flood", sorted(SMALL_MESSAGES))
def test_an_interrupt_stops_a_flood_of_small_messages(sturdy: Kernel, flood: str,
                                                      cycle: int) -> None:
    assert _interrupt_when_busy(sturdy, SMALL_MESSAGES[flood], until="started") < 5
    assert sturdy.ok("print('next')").text() == f"[stdout:0-{RANKS - 1}] next\n"


def test_a_rank_late_to_stop_is_interrupted_again(sturdy: Kernel) -> None:
    """A rank that catches the first interrupt (and goes on) gets another, half the grace
    later: it is stopped, not called stuck."""
    code = ("import time\nprint('started', flush=True)\ntry:\n    time.sleep(60)\n"
            "except KeyboardInterrupt:\n    time.sleep(60)")
    assert _interrupt_when_busy(sturdy, code, until="started") < 5


def test_fresh_ranks_are_never_called_dead_after_a_restart(tmp_path: Path) -> None:
    """Flood, interrupt, restart, next cell: nothing the old ranks still send (output,
    exit codes) may mark a new rank dead."""
    k = Kernel(tmp_path, ranks=RANKS, extra=["--HubKernel.interrupt_grace=5"])
    try:
        for _ in range(max(LOOPS // 2, 3)):
            _interrupt_when_busy(k, "import sys\nprint('started', flush=True)\nwhile True:"
                                 "\n    sys.stdout.write('x' * 99 + '\\n')", until="started")
            assert "fresh ranks ready" in k.ok("%restart_ranks").text()
            assert k.ok("print(rank)").per_rank() == {r: [str(r)] for r in range(RANKS)}
    finally:
        _close(k)


def test_a_strangers_connection_flood_cannot_take_the_hubs_descriptors(
        sturdy: Kernel, intruder: str) -> None:
    """Another Unix user opens far more raw TCP connections to the hub's plane port than
    the hub may hold descriptors: the plane's guard shuts down those beyond its limits, the
    hub keeps its descriptors, and the kernel (heartbeats, cells) goes on."""
    hub = psutil.Process(sturdy.hub_pid)
    hub.rlimit(psutil.RLIMIT_NOFILE, (1024, 1024))  # as at a site with the usual limit
    plane_file = sturdy.ok("%%local\nprint(get_ipython().kernel.pool.plane_file)").text()
    port = int(json_field(Path(plane_file.strip()), "tcp_url").rsplit(":", 1)[1])
    flood = ("import resource, socket, time\n"
             "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
             "resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))\n"
             "held = []\nfor _ in range(1100):\n"
             "    s = socket.socket()\n    try:\n        s.connect(('127.0.0.1', "
             f"{port}))\n    except OSError:\n        continue\n    held.append(s)\n"
             "print(len(held), flush=True)\ntime.sleep(8)\n")
    attack = subprocess.Popen(["/usr/sbin/runuser", "-u", intruder, "--", "/usr/bin/python3",
                               "-I", "-c", flood], stdout=subprocess.PIPE, text=True)
    try:
        assert attack.stdout is not None
        opened = int(attack.stdout.readline())
        assert opened > 1000, "the flood did not even connect"
        fds = hub.num_fds()
        assert fds < 600, f"the hub holds {fds} descriptors under the flood"
        assert sturdy.ok("print('alive')").text() == f"[stdout:0-{RANKS - 1}] alive\n"
    finally:
        attack.wait(timeout=60)
    # After the flood: heartbeats went on (no rank left for want of word from the hub).
    assert sturdy.ok("print('still')").text() == f"[stdout:0-{RANKS - 1}] still\n"


def json_field(path: Path, name: str) -> str:
    import json

    return str(json.loads(path.read_text())[name])


def test_the_hubs_tick_survives_a_failure_in_every_step(tmp_path: Path) -> None:
    """The plane thread's tick (flush output, notice exits, heartbeat, start timeout) runs
    every step even when one fails, each in turn: a rank's junk that makes one step raise
    must not stop the heartbeat, without which every rank would leave. A real pool with
    real ranks, in this process; each step is made to fail in turn."""
    from hpckernel.hub.rank_launchers import LocalLauncher
    from hpckernel.hub.rank_pool import PoolSettings, RankPool
    from hpckernel.plane import make_job_dir

    published: list[tuple[str, dict[str, object]]] = []
    pool = RankPool(LocalLauncher(ranks=2), make_job_dir(tmp_path),
                    lambda kind, content, meta, parent: published.append((kind, content)),
                    PoolSettings(flush_interval=0.05, heartbeat_interval=0.1))
    calls: dict[str, int] = {}

    def counted(name: str, step: Callable[[float], None], failing: list[str]
                ) -> Callable[[float], None]:
        def run(now: float) -> None:
            calls[name] = calls.get(name, 0) + 1
            if failing == [name]:
                raise RuntimeError(f"{name} failed on purpose")
            step(now)
        return run

    failing: list[str] = []
    pool._steps = [(name, counted(name, step, failing)) for name, step in pool._steps]
    pool.start()
    try:
        pool.ready.result(timeout=120)
        for name, _ in pool._steps:
            failing[:] = [name]
            before = dict(calls)
            request = pool.submit("execute", [0, 1], {"code": "print(rank)", "silent": False,
                                                      "execution_count": None})
            request.future.result(timeout=30)
            assert not request.errors, request.errors
            deadline = time.monotonic() + 10
            while min(calls[n] - before.get(n, 0) for n, _ in pool._steps) < 5:
                assert time.monotonic() < deadline, (name, calls, before)
                time.sleep(0.05)
        assert any(kind == "stream" for kind, _ in published)
    finally:
        failing.clear()
        pool.shutdown()
