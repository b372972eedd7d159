"""Exceptions raised by `hpckernel.provisioner`, all under `ProvisionerError`.

Each message says what happened and what to do next; Slurm's own errors (`SlurmError`,
with the command and Slurm's words) reach callers unchanged. The argv bridge catches
`ProvisionerError` to print the message instead of a traceback.
"""

from __future__ import annotations


class ProvisionerError(RuntimeError):
    """A Slurm kernel could not be started, reached or kept running."""


class KernelStartError(ProvisionerError):
    """The kernel's batch job could not start; the message carries Slurm's reason."""


class LoginError(ProvisionerError):
    """The login node could not be reached; the message names the host and the cause."""


class PortTakenError(ProvisionerError):
    """A local tunnel port the kernel's clients use is held by another process: they must
    not be sent there (without CurveZMQ it would read every cell)."""
