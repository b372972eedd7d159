"""Which node a process is on, and which address a hub on it should bind.

Under Slurm the node name comes from ``SLURMD_NODENAME``, so that the virtual test cluster
(several slurmd on one host) behaves like a real one; elsewhere it is the host name.
"""

from __future__ import annotations

import os
import socket


def node_name() -> str:
    """This node's name: Slurm's for it, else the host name (compared with a plane file's
    ``node`` to choose IPC over TCP)."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def node_ip(value: str = "auto") -> str:
    """``auto``: the address this node's name resolves to (its interconnect, usually);
    anything else is returned as given."""
    if value != "auto":
        return value
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
