"""Batch jobs from sync code: ``hpckernel.slurm.submit(script, *options) -> Job``.

The programmatic twins of ``%%sbatch``, ``%scancel`` and ``%sacct``: each method runs one
`Slurm` coroutine on the private loop of `sync`, so they work in a plain script, in
ipykernel and in the hub's ``%%local`` cells alike. Errors are `SlurmError`s with Slurm's
own message (`SlurmNotFoundError` without Slurm, `SubmitError` for a refused script).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from . import sync
from .errors import SlurmError
from .jobs import Slurm
from .models import JobInfo
from .poller import Poller
from .wait import wait_gone

#: lines of the output file `Job.output` returns by default
TAIL_LINES = 20


def _script(text: str) -> str:
    # sbatch wants an interpreter line; a cell body is a shell script by default.
    return text if text.startswith("#!") else f"#!/bin/bash\n{text}"


def tail(info: JobInfo, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the job's output file (empty if not written yet)."""
    if not info.stdout:
        raise SlurmError(f"Slurm does not say where job {info.job_id} writes its output "
                         "(an old job known only to sacct?)")
    try:
        with Path(info.stdout).open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except FileNotFoundError:
        return ""


def submit(script: str, *options: str, slurm: Slurm | None = None) -> Job:
    """Submit ``script`` (a batch script; ``#!/bin/bash`` is added if it has no ``#!``
    line) with sbatch ``options`` on the command line, from the working directory."""
    slurm = slurm or Slurm()
    body = _script(script)
    job_id = sync.run(slurm.submit(body, list(options), workdir=os.getcwd()))
    return Job(job_id, body, tuple(options), slurm)


class Job:
    """One batch job; ``Job(id)`` follows any job by its id."""

    def __init__(self, job_id: str, script: str | None = None, options: Sequence[str] = (),
                 slurm: Slurm | None = None) -> None:
        self.id = str(job_id)
        self.script = script
        self.options = tuple(options)
        self.slurm = slurm or Slurm()

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def info(self) -> JobInfo:
        """What Slurm says of the job now; `SlurmError` if it does not know the id."""
        info = sync.run(self.slurm.job(self.id))
        if info is None:
            raise SlurmError(f"job {self.id} is unknown to Slurm (not in scontrol or sacct): "
                             "check the id (squeue and sacct list your jobs)")
        return info

    @property
    def state(self) -> str:
        """"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", ..."""
        return self.info().state

    def wait(self, timeout: float | None = None) -> JobInfo:
        """Wait until the job has ended and return its last state (`SlurmTimeoutError`
        after ``timeout`` seconds, default: no limit). Follows the job with the process's
        `Poller`: the first look at once, then after 2 s, 4 s, ... up to 60 s."""
        limit = float("inf") if timeout is None else timeout
        info = sync.run(wait_gone(self.slurm, self.id, limit))
        if info is None:
            raise SlurmError(f"job {self.id} vanished from Slurm while waiting for its end")
        return info

    def cancel(self) -> None:
        """scancel the job (not an error once it has ended; an unknown id is)."""
        self.info()  # scancel itself only warns about an unknown id
        sync.run(self.slurm.cancel(self.id))
        Poller.of(self.slurm).poke()  # the widgets following it show it at once

    def output(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the job's output file (empty if not written yet)."""
        return tail(self.info(), lines)

    def resubmit(self) -> Job:
        """Submit the same script with the same options again; the new job."""
        if self.script is None:
            raise SlurmError(f"job {self.id} was not submitted from here: its script is "
                             "unknown, so it cannot be resubmitted")
        return submit(self.script, *self.options, slurm=self.slurm)
