"""A live job's MPI files in /dev/shm, as its ranks see them: shared by the live-job tests
with and without Slurm."""

from __future__ import annotations

import time

import pytest

from hpckernel.live.client import LiveJob

#: A cell: how many of MPI's shared-memory files the rank maps that still have a name.
NAMED_MPI_FILES = "from hpckernel.worker.mpi_files import mpi_segments\nlen(mpi_segments())"


def until_mpi_files_unlinked(job: LiveJob, capsys: pytest.CaptureFixture[str], ranks: str,
                             timeout: float = 10) -> None:
    """Ask the ranks (``ranks`` as the output labels them, e.g. ``0-3``), each ask a round
    trip to the program's next safepoint, until none maps a named MPI file."""
    deadline = time.monotonic() + timeout
    while True:
        capsys.readouterr()
        job.execute(NAMED_MPI_FILES)
        if capsys.readouterr().out == f"[out:{ranks}] 0\n":
            return
        assert time.monotonic() < deadline, "MPI's shared-memory files were not unlinked"
