"""Exceptions raised by `hpckernel.bridge`, all under `BridgeError`.

The bridge also meets the provisioner's errors (`ProvisionerError`: the job did not start,
the login node is gone) and Slurm's (`SlurmError`); it prints each one's message as the
front end's kernel log, without a traceback.
"""

from __future__ import annotations


class BridgeError(Exception):
    """The bridge cannot connect the front end to a Slurm kernel."""


class ConnectionFileError(BridgeError, ValueError):
    """The front end's connection file cannot be read or asks for what the bridge cannot
    serve (a transport other than tcp, a missing port)."""


class RelayError(BridgeError):
    """The relay cannot take the front end's ports (another process holds one)."""
