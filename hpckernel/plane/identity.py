"""Who is on the other end of a plane socket: identities of ranks and node agents.

A peer's ZMQ identity names the launch it belongs to (``RankPool`` counts launches: the
first start, then each restart of the ranks) and who it is: ``b"<launch>.<rank>"`` for a
rank, ``b"@<launch>.<node>"`` for a node agent. A message from a peer of an earlier launch
(a rank of the old set still printing while the new set starts) is dropped by whoever
receives it, so nothing the old ranks send can touch the new ones (mark them dead, take
their credits, answer their requests).

The launch number reaches the processes in their environment (``LAUNCH_ENV``, set by the
hub's rank launcher), beside the plane file that says where to connect.
"""

from __future__ import annotations

import os

#: Environment variable with the launch number (``RankLauncher.start`` sets it).
LAUNCH_ENV = "HPCKERNEL_LAUNCH"
#: A node agent's identity starts with this byte; a rank's is its launch and number.
AGENT_PREFIX = b"@"


def current_launch() -> int:
    """The launch this process belongs to (0 outside a launch, e.g. a test's own peer)."""
    try:
        return int(os.environ.get(LAUNCH_ENV) or 0)
    except ValueError:
        return 0


def rank_identity(launch: int, rank: int) -> bytes:
    """The ZMQ identity of ``rank`` of ``launch`` (set by the rank, routed to by its agent)."""
    return f"{launch}.{rank}".encode()


def agent_identity(launch: int, node: str) -> bytes:
    """The ZMQ identity of the agent of ``node`` in ``launch`` (``agent/link.py`` sets it)."""
    return AGENT_PREFIX + f"{launch}.{node}".encode()


def parse_identity(identity: bytes) -> tuple[int, int | str]:
    """(launch, rank) for a rank's identity, (launch, node) for an agent's; ``ValueError``
    for anything else."""
    agent = identity[:1] == AGENT_PREFIX
    text = (identity[1:] if agent else identity).decode("ascii")
    launch, sep, who = text.partition(".")
    if not sep or not who or not launch.isdigit() or not (agent or who.isdigit()):
        raise ValueError(f"bad plane identity {identity[:40]!r}")
    return int(launch), who if agent else int(who)
