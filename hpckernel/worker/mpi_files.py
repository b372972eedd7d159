"""MPI's shared-memory files of the ranks: unlinked as soon as every rank of the node has
mapped them.

MPICH keeps its intra-node buffers in ``/dev/shm/mpich_shm_*`` and removes them only in
``MPI_Finalize``; Open MPI keeps one ``/dev/shm/sm_segment.<host>.<uid>.<job>.<rank>`` per
rank, which its launcher removes when the job ends, unless the launcher itself is killed
(and under ``srun --mpi=pmix`` nobody does). Ranks that never get to their clean-up (a
crash, ``MPI.Abort``, busy ranks terminated on restart, a killed hub, a lost node) would
leave them in memory for good, and no clean-up after the fact is sure to run (``srun`` and
Slurm SIGKILL whatever would do it). So right after ``MPI_Init`` the ranks of each node wait
for each other and the first unlinks the files they map (both libraries map every segment
of the node in ``MPI_Init``): the mappings stay valid, and the memory goes back when the
last rank of the node exits, however it ends. The libraries' own clean-up then finds them
gone, which both accept.
"""

from __future__ import annotations

import os


def mapped_files() -> list[str]:
    """The ``/dev/shm`` files this process maps that still have a name."""
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split(None, 5)[5].strip() for line in maps
                           if " /dev/shm/" in line and not line.endswith("(deleted)\n")})
    except (OSError, IndexError):
        return []  # no /proc: nothing known


def release() -> None:
    """Unlink MPI's shared-memory files of this node; call it right after ``MPI_Init``.
    Collective: every rank of ``MPI.COMM_WORLD`` calls it."""
    from mpi4py import MPI

    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        files = mapped_files()
        node.Barrier()  # every rank of the node has mapped them
        if node.rank == 0:
            for path in files:
                try:
                    os.unlink(path)
                except OSError:
                    pass  # not ours to remove, or gone already
    finally:
        node.Free()
