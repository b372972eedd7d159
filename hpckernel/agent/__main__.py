"""``python -m hpckernel.agent JOB_DIR NODE``: started by ``launcher/rank.sh`` in the first
rank of each node when the hub uses node agents."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from ..deathsig import die_with_parent
from ..plane import read_plane_info
from ..plane.credentials import PLANE_FILE
from ..plane.nodes import agent_plane_file, wait_for_plane_info
from .agent import NodeAgent
from .tree import place


def main(argv: list[str] | None = None) -> None:
    """Run this node's agent until the hub says ``shutdown`` or falls silent."""
    parser = argparse.ArgumentParser(prog="python -m hpckernel.agent")
    parser.add_argument("job_dir", type=Path, help="the kernel's job directory")
    parser.add_argument("node", help="this node's key (rank.sh: HPCKERNEL_NODE)")
    parser.add_argument("--hub-timeout", type=float, default=30.0,
                        help="exit when the hub has been silent this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    die_with_parent()  # rank.sh, its parent, outlives it unless killed
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the ranks
    hub = read_plane_info(args.job_dir / PLANE_FILE)
    parent, kids = place(args.node)
    up = (hub if parent is None else
          wait_for_plane_info(agent_plane_file(args.job_dir, parent), args.hub_timeout))
    NodeAgent(up, hub, args.job_dir, args.node, args.hub_timeout, kids).run()


if __name__ == "__main__":
    main()
