"""MPI's shared-memory files of the ranks, listed in the job directory.

MPICH keeps its intra-node buffers in ``/dev/shm/mpich_shm_*`` and removes them in
``MPI_Finalize``; ranks that are killed (a crash, ``MPI.Abort``, busy ranks terminated on
restart) leave them behind, in memory, for good. Right after ``MPI_Init`` each rank lists
the ``/dev/shm`` files it maps in ``JOB_DIR/shm.RANK`` (:func:`record`). When a rank ends
``launcher/rank.sh`` removes its rank's (gone already after ``MPI_Finalize``), also when the
hub was killed (``srun`` is told with USR2, which it passes on, not TERM, which it answers
with SIGKILL); once all ranks are gone the hub removes those of its own node
(:func:`remove_listed`): on ``MPI.Abort`` the launcher kills ``rank.sh`` too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .addresses import node_name

_PLAIN = re.compile(r"^/dev/shm/[^/]+$")  # a file directly in /dev/shm, no "..", no subdir


def record(job_dir: Path, rank: int) -> None:
    """List the ``/dev/shm`` files this process maps (MPI's, right after MPI_Init)."""
    try:
        with open("/proc/self/maps") as maps:
            files = sorted({line.split(None, 5)[5].strip() for line in maps
                            if " /dev/shm/" in line and not line.endswith("(deleted)\n")})
    except (OSError, IndexError):
        return  # no /proc: nothing to record
    tmp = job_dir / f"shm.{rank}.tmp"
    try:
        # The first line names the node: the hub removes only its own node's files.
        tmp.write_text(f"# node {node_name()}\n" + "".join(f"{f}\n" for f in files))
        tmp.replace(job_dir / f"shm.{rank}")
    except OSError:
        pass  # a read-only or vanished job directory only costs the clean-up


def remove_listed(job_dir: Path) -> None:
    """Remove the listed files of ranks on this node, and the lists; call it only when no
    rank of the job is left."""
    here = f"# node {node_name()}"
    for listing in job_dir.glob("shm.*"):
        try:
            lines = listing.read_text().splitlines()
            listing.unlink()
        except OSError:
            continue
        if lines[:1] != [here]:
            continue
        for path in lines[1:]:
            if _PLAIN.match(path) and ".." not in path:
                try:
                    os.unlink(path)
                except OSError:
                    pass  # MPI_Finalize (or rank.sh, or another rank's list) was first
