"""Interrupts, stuck and dying ranks, restarts: the notebook never hangs, nothing leaks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .harness import Kernel, Result, job_dir, mpi_files, orphaned_session_dirs, wait_gone


def _run_and_interrupt(kernel: Kernel, code: str) -> tuple[Result, float]:
    """Run ``code`` after every rank printed a marker, then press the interrupt button."""
    msg_id = kernel.submit(f"print('started', flush=True)\n{code}")
    assert kernel.collect(msg_id, until="[stdout:0-3] started") is None
    t0 = time.monotonic()
    kernel.km.interrupt_kernel()
    result = kernel.collect(msg_id, timeout=60)
    assert result is not None
    return result, time.monotonic() - t0


@pytest.mark.parametrize("code", ["import time\ntime.sleep(60)", "while True:\n    pass"])
def test_interrupt_reaches_every_busy_rank(fresh_kernel: Kernel, code: str) -> None:
    result, elapsed = _run_and_interrupt(fresh_kernel, code)
    assert result.status == "error"
    assert result.content["ename"] == "KeyboardInterrupt"
    assert result.content["evalue"].startswith("ranks 0-3: KeyboardInterrupt")
    assert elapsed < 30  # the cell would run 60 s or forever otherwise
    assert fresh_kernel.ok("print('alive')").text() == "[stdout:0-3] alive\n"


def test_rank_stuck_in_mpi_is_named_and_restart_recovers(fresh_kernel: Kernel) -> None:
    old = fresh_kernel.rank_pids()
    result, _ = _run_and_interrupt(
        fresh_kernel, "from mpi4py import MPI\nimport time\n"
        "if rank == 2:\n    MPI.COMM_WORLD.recv(source=0)\nelse:\n    time.sleep(60)")
    assert result.status == "error"
    assert "rank 2: RankStuck: did not stop within 5 s" in result.content["evalue"]
    assert "ranks 0-1,3: KeyboardInterrupt" in result.content["evalue"]
    states = fresh_kernel.ok("%ranks").text()
    assert [line.split()[1] for line in states.splitlines() if line.startswith("   2 ")] == [
        "stuck"]
    blocked = fresh_kernel.run("print(1)")
    assert blocked.status == "error" and "rank 2 is stuck" in blocked.content["evalue"]
    assert "%restart_ranks" in blocked.content["evalue"]
    assert "4 fresh ranks ready" in fresh_kernel.ok("%restart_ranks").text()
    assert wait_gone(old) == [], "old ranks survived %restart_ranks"
    assert fresh_kernel.ok("print(rank)").text().count("[stdout:") == 4


@pytest.mark.parametrize(("code", "how"), [
    ("import os\nos._exit(7)", "exited with code 7"),
    ("import ctypes\nctypes.string_at(0)", "killed by SIGSEGV (signal 11)"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL (signal 9)"),
])
def test_dead_rank_is_named_and_the_kernel_stays_up(fresh_kernel: Kernel, code: str,
                                                    how: str) -> None:
    old = fresh_kernel.rank_pids()
    result = fresh_kernel.run("print('before', flush=True)\nimport time\n"
                              "if rank == 1:\n    time.sleep(0.3)\n"
                              + "".join(f"    {line}\n" for line in code.splitlines())
                              + "time.sleep(30)", timeout=60)
    assert result.status == "error"
    assert result.content["ename"] == "RankDied"
    assert f"rank 1: RankDied: {how}" in result.content["evalue"]
    assert "[stdout:0-3] before" in result.text()  # output from before the death is kept
    # The hub is alive: local cells work and px cells say what to do.
    assert fresh_kernel.ok("%%local\nprint('hub ok')").text() == "hub ok\n"
    dead = fresh_kernel.run("print(1)")
    assert dead.status == "error" and "%restart_ranks" in dead.content["evalue"]
    fresh_kernel.ok("%restart_ranks")
    assert wait_gone(old) == [], "ranks of the failed MPI job are still running"
    assert fresh_kernel.ok("print('back')").text() == "[stdout:0-3] back\n"


def test_jupyter_restart_gives_fresh_ranks(fresh_kernel: Kernel) -> None:
    fresh_kernel.ok("x = 5")
    old_ranks = fresh_kernel.rank_pids()
    old_tree = fresh_kernel.process_tree()
    fresh_kernel.km.restart_kernel(now=False)
    fresh_kernel.kc.wait_for_ready(timeout=60)
    assert wait_gone(old_tree) == []
    missing = fresh_kernel.run("x")
    assert missing.status == "error" and missing.content["ename"] == "NameError"
    assert set(fresh_kernel.rank_pids()).isdisjoint(old_ranks)


def test_killed_hub_takes_its_ranks_along(tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, ranks=2)
    try:
        tree = kernel.process_tree()
        ranks = kernel.rank_pids()
        assert set(ranks) <= set(tree)
        kernel.km.provisioner.process.kill()  # type: ignore[union-attr]
        assert wait_gone(tree, timeout=20) == [], "ranks outlived a SIGKILLed hub"
    finally:
        kernel.shutdown()


def test_missing_mpiexec_is_a_clear_error(tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, ranks=2, extra=["--LocalLauncher.mpiexec=/nonexistent/mpiexec"],
                    wait_ranks=False)
    try:
        result = kernel.run("print(1)")
        assert result.status == "error"
        assert "mpiexec not found" in result.content["evalue"]
        assert "hpckernel[mpich]" in result.content["evalue"]
        assert kernel.ok("%%local\nprint('hub ok')").text() == "hub ok\n"
    finally:
        kernel.shutdown()


def test_mpi4py_without_an_mpi_library_is_a_clear_error(tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, ranks=2, env={"MPI4PY_LIBMPI": "/nonexistent/libmpi.so"},
                    wait_ranks=False)
    try:
        tree = kernel.process_tree()
        result = kernel.run("print(1)", timeout=120)
        assert result.status == "error"
        assert result.content["ename"] == "LaunchError"
        assert "cannot start" in result.content["evalue"]
        assert "mpi4py finds an MPI library" in result.content["evalue"]
    finally:
        kernel.shutdown()
    assert wait_gone(tree) == []


@pytest.mark.parametrize("end", ["abort", "restart_busy"])
def test_ranks_that_end_abnormally_leave_no_mpi_shared_memory(fresh_kernel: Kernel,
                                                              end: str) -> None:
    # MPICH removes its /dev/shm files only in MPI_Finalize, which killed ranks never reach
    # (Open MPI's launcher removes its own, unless it is killed itself); the ranks of a node
    # unlink them as soon as all have mapped them.
    files = mpi_files(fresh_kernel)
    assert [f for f in files if Path(f).exists()] == []
    if end == "abort":
        result = fresh_kernel.run("from mpi4py import MPI\nimport time\nif rank == 1:\n"
                                  "    MPI.COMM_WORLD.Abort(4)\ntime.sleep(30)", timeout=60)
        assert result.status == "error"
    else:
        fresh_kernel.ok("%%px --noblock\nimport time\ntime.sleep(60)")  # busy: terminated
    assert "fresh ranks ready" in fresh_kernel.ok("%restart_ranks", timeout=60).text()
    again = mpi_files(fresh_kernel)
    assert set(again).isdisjoint(files)
    assert [f for f in files + again if Path(f).exists()] == []
    # Open MPI's launcher's: in the job directory
    assert orphaned_session_dirs(job_dir(fresh_kernel)) == [] == orphaned_session_dirs()
