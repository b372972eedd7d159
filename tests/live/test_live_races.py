"""The racy parts of live jobs, each looped 20 times on one ``mpiexec`` live job attached
from this process: attach and detach; interrupting a running cell (stopped alike on every
rank) and a queued one (dropped); and a cell whose ranks cannot all stop alike (one is in a
collective), which goes on instead of leaving its partner waiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hpckernel
from hpckernel.hub.px_controller import PxHandle
from hpckernel.hub.requests import RemoteError
from hpckernel.live.client import LiveJob

from .conftest import LiveRun, plain_result

ROUNDS = 20
SPIN = "while True:\n    pass"


@pytest.fixture
def job(live_run: LiveRun) -> Iterator[LiveJob]:
    handle = hpckernel.attach(live_run.job, job_root=str(live_run.root))
    handle.peek("step")  # the program's loop runs
    yield handle
    handle.detach()


def _cell(job: LiveJob, code: str) -> PxHandle:
    return job.px.submit("execute", [0, 1], {"code": code}, label="test")


def _peek_until(job: LiveJob, name: str, value: dict[int, object]) -> None:
    """Peek until ``name`` has ``value`` on the ranks (each peek a round trip: no sleep)."""
    for _ in range(2000):
        try:
            if job.peek(name) == value:
                return
        except RemoteError:  # not defined yet
            pass
    pytest.fail(f"{name} never became {value}")


def _errors(handle: PxHandle) -> dict[int, str]:
    assert handle.wait(30), "the cell did not end"
    return {r: f"{h.get('ename')}: {h.get('evalue')}" for r, h in handle.request.errors.items()}


@pytest.mark.live_steps(100_000)
def test_attach_and_detach(live_run: LiveRun, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(ROUNDS):
        job = hpckernel.attach(live_run.job, job_root=str(live_run.root))
        steps = job.peek("step")
        assert sorted(steps) == [0, 1]
        job.execute(f"print({i}, comm.allreduce(1))")
        assert capsys.readouterr().out == f"[stdout:0-1] {i} 2\n"
        job.detach()


@pytest.mark.live_steps(100_000)
def test_a_running_cell_is_stopped_alike_and_a_queued_one_dropped(
        job: LiveJob, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(ROUNDS):
        running = _cell(job, f"n = {i}\n{SPIN}")
        queued = _cell(job, "n = -1")
        _peek_until(job, "n", {0: i, 1: i})  # the spinning cell runs on both ranks
        job.pool.interrupt()
        assert _errors(running) == {
            0: "KeyboardInterrupt: stopped from the notebook",
            1: "KeyboardInterrupt: stopped from the notebook"}
        assert _errors(queued) == {0: "KeyboardInterrupt: interrupted before it ran",
                                   1: "KeyboardInterrupt: interrupted before it ran"}
        job.execute("print(n, comm.allreduce(rank))")  # the program and MPI go on
        assert capsys.readouterr().out.endswith(f"[stdout:0-1] {i} 1\n")


@pytest.mark.live_steps(300)
def test_a_cell_one_rank_cannot_stop_goes_on(live_run: LiveRun, job: LiveJob,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Rank 1 waits in the barrier (a call: it cannot hold the cell), rank 0 computes in
    # Python and then joins: stopping rank 0 would leave rank 1 in the barrier for ever.
    cell = _cell(job, "import time\nif rank == 0:\n    t = time.time()\n"
                      "    while time.time() - t < 3:\n        pass\ncomm.barrier()\n"
                      "print('through')")
    for _ in range(2000):  # each where a round trip: no sleep
        if "comm.barrier" in job.where(targets=[1])[1]:
            break
    job.pool.interrupt()
    assert _errors(cell) == {}, "a rank was stopped alone"
    out = capsys.readouterr()
    assert "the cell was not stopped: not every rank could hold it" in out.err, out
    assert out.out == "[stdout:0-1] through\n", out
    assert live_run.result() == plain_result(live_run.steps)
