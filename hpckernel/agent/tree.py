"""Where an agent sits in the tree of agents (``HubKernel.fanout``): with more nodes than
the fan-out, the nodes form groups of ``fanout`` consecutive node indices; the first agent
of each group talks to the hub and the others talk to it. ``launcher/rank.sh`` and the
launcher give each agent the node count and the fan-out in its environment."""

from __future__ import annotations

import os

#: Environment of the agents: how many nodes the ranks span, and the fan-out.
NODES_ENV = "HPCKERNEL_AGENT_NODES"
FANOUT_ENV = "HPCKERNEL_FANOUT"


def place(node: str, environ: dict[str, str] | None = None) -> tuple[str | None, bool]:
    """(the node key of this agent's parent, None for the hub; whether agents will connect
    to it). Only numbered nodes (Slurm's node index, pretended nodes) form a tree."""
    env = os.environ if environ is None else environ
    try:
        nodes, fanout, index = int(env.get(NODES_ENV, "0")), int(env.get(FANOUT_ENV, "0")), \
            int(node)
    except ValueError:
        return None, False
    if fanout < 2 or nodes <= fanout:
        return None, False
    first = index // fanout * fanout
    if first != index:
        return str(first), False
    return None, index + 1 < nodes
