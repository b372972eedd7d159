"""Exceptions raised by `hpckernel.slurm`.

Every error that comes from a Slurm command carries the command line and Slurm's own stderr
text, and puts that text in the message: "sbatch: error: Batch job submission failed:
Invalid partition name specified" tells a notebook user more than any paraphrase. Callers
(the Slurm provisioner, the `%sbatch`-style magics, the workflow module) catch `SlurmError`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class SlurmError(Exception):
    """A Slurm command failed or said something this package could not understand.

    `argv` is the command that ran (empty if none did) and `stderr` is what it printed,
    stripped; both are part of `str(error)`.
    """

    def __init__(self, message: str, argv: Sequence[str] = (), stderr: str = "") -> None:
        self.argv = tuple(argv)
        self.stderr = stderr.strip()
        if self.stderr and self.stderr not in message:
            message = f"{message}\n{self.stderr}"
        super().__init__(message)

    @property
    def command(self) -> str:
        """The command line, quoted for a shell, for log messages."""
        return shlex.join(self.argv)


class SlurmNotFoundError(SlurmError):
    """A Slurm command is not installed or not on PATH (e.g. running on a laptop)."""


class SlurmBusyError(SlurmError):
    """Slurm is overloaded, rate-limits this user or is briefly unreachable ("Socket timed
    out on send/recv operation", "Resource temporarily unavailable"): try again later."""


class SlurmTimeoutError(SlurmError, TimeoutError):
    """A Slurm command, or a wait for a job state, did not finish in time."""


class SubmitError(SlurmError):
    """`sbatch` refused a job, or a request was checked against a partition and cannot run."""


class ParseError(SlurmError):
    """Slurm output that `hpckernel.slurm.parse` cannot read (an unexpected Slurm version?)."""
