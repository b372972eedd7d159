"""Where a node's agent tells its ranks to connect (``HubKernel.fanin``).

``launcher/rank.sh`` works out each rank's node (``HPCKERNEL_NODE``) and starts the agent in
the node's first rank; the agent writes ``agent-<node>.json`` (a :class:`PlaneInfo` with its
IPC address) in the job directory, and the node's ranks connect there instead of to the hub.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from .credentials import PlaneInfo, read_plane_info

#: Environment variable naming the rank's node; set by ``rank.sh`` when agents are used.
NODE_ENV = "HPCKERNEL_NODE"


def agent_plane_file(job_dir: Path, node: str) -> Path:
    """The plane file the agent of ``node`` writes in ``job_dir`` (its ranks, and the agents
    below it in a tree, read it)."""
    return job_dir / f"agent-{re.sub(r'[^A-Za-z0-9_.-]', '_', node)}.json"


def wait_for_plane_info(path: Path, timeout: float) -> PlaneInfo:
    """The plane file at ``path`` once its writer has made it (an agent starting beside the
    rank); ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read_plane_info(path)
        except (FileNotFoundError, ValueError):  # not there yet, or being renamed in
            if time.monotonic() > deadline:
                raise TimeoutError(f"no node agent wrote {path} within {timeout:g} s") from None
            time.sleep(0.01)


def rank_node() -> str | None:
    """This rank's node key when it talks to a node agent, else None (straight to the hub)."""
    return os.environ.get(NODE_ENV) or None
