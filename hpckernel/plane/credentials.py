"""Job directory and the plane file that tells ranks how to reach the hub (``write_private``:
``private.py``).

Secrets (the CurveZMQ keys) are written only to a 0600 file in a 0700 directory — never
on a command line or in the environment — and ranks are given the file's path.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .private import check_parents, write_private

PLANE_FILE = "plane.json"
#: Bytes of output a sender may have in flight by default (``credit.py``).
DEFAULT_WINDOW = 4 * 2**20


@dataclass
class PlaneInfo:
    """Where and how ranks connect to the hub."""

    node: str  # the hub's node (addresses.node_name): ranks on it use ``ipc_url``
    ipc_url: str
    tcp_url: str
    server_public: str  # CurveZMQ keys, z85 text
    client_public: str
    client_secret: str
    size: int  # number of ranks expected
    #: bytes of output a sender may have in flight (``credit.py``, HubKernel.output_window)
    window: int = DEFAULT_WINDOW
    #: the hub maps the shared-memory segments of its node's ranks (a live job's endpoint,
    #: which passes replies on over TCP, does not: its node's agent maps them)
    shm: bool = True


class KeyCheck:
    """ZAP credentials provider for a plane's TCP sockets (the hub's, a tree agent's): only
    the plane's client key may connect."""

    def __init__(self, public: str) -> None:
        self.public = public

    def callback(self, domain: str, key: bytes | str) -> bool:
        """Whether ``key`` may connect (called by pyzmq's ``ThreadAuthenticator``)."""
        return (key.decode() if isinstance(key, bytes) else key) == self.public


def make_job_dir(parent: str | os.PathLike[str] | None = None) -> Path:
    """Create a fresh 0700 directory for one kernel's files (plane file, sockets, exit codes)
    in ``parent`` (default: the temp dir), which no other user may be able to change."""
    check_parents(parent if parent is not None else tempfile.gettempdir())
    old = os.umask(0o077)
    try:
        path = tempfile.mkdtemp(prefix="hpckernel-", dir=parent)
    finally:
        os.umask(old)
    return Path(path)


def write_plane_info(job_dir: Path, info: PlaneInfo) -> Path:
    """Write ``info`` as the 0600 plane file of ``job_dir`` (the hub, before it starts the
    ranks); its path."""
    path = job_dir / PLANE_FILE
    write_private(path, json.dumps(asdict(info)))
    return path


def read_plane_info(path: str | os.PathLike[str]) -> PlaneInfo:
    """The plane file at ``path`` (a rank, an agent, a live job's endpoint at its start)."""
    with open(path) as f:
        return PlaneInfo(**json.load(f))
