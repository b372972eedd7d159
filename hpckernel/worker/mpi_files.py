"""MPI's shared-memory files of the ranks: unlinked as soon as every rank of the node has
mapped them.

MPICH keeps its intra-node buffers in ``/dev/shm/mpich_shm_*`` and removes them only in
``MPI_Finalize``; Open MPI keeps one ``/dev/shm/sm_segment.<host>.<uid>.<job>.<rank>`` per
rank, which its launcher removes when the job ends, unless the launcher itself is killed
(and under ``srun --mpi=pmix`` nobody does). Ranks that never get to their clean-up (a
crash, ``MPI.Abort``, busy ranks terminated on restart, a killed hub, a lost node) would
leave them in memory for good, and no clean-up after the fact is sure to run (``srun`` and
Slurm SIGKILL whatever would do it). So right after ``MPI_Init`` the ranks of each node wait
for each other and the first unlinks the files they map (Open MPI maps every segment of the
node in ``MPI_Init``, MPICH at a communicator's first use, which the split here is): the
mappings stay valid, and the memory goes back when the last rank of the node exits, however
it ends. The libraries' own clean-up then finds them gone, which both accept.

A live job's ranks (``live/rank.py``) cannot call into the program's MPI: the node's first
rank looks at its own maps and its siblings' instead (:func:`release_when_shared`).
"""

from __future__ import annotations

import os


def mapped_files(pid: int | str = "self") -> list[str]:
    """The ``/dev/shm`` files process ``pid`` maps that still have a name (none if its
    maps cannot be read: gone, or not ours)."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return sorted({line.split(None, 5)[5].strip() for line in maps
                           if " /dev/shm/" in line and not line.endswith("(deleted)\n")})
    except (OSError, IndexError):
        return []  # no /proc: nothing known


#: Names of MPI's segments: MPICH's (``mpich_shm_*``, ``mpich_vci_*``), Open MPI 5's and 4's.
MPI_PREFIXES = ("mpich_", "sm_segment.", "vader_segment.")


def mpi_segments() -> list[str]:
    """MPI's files in ``/dev/shm`` that this process maps and that still have a name."""
    return [path for path in mapped_files() if os.path.basename(path).startswith(MPI_PREFIXES)]


def siblings() -> list[int]:
    """The other processes this one's parent started: the node's other ranks, as srun's
    slurmstepd, Hydra's proxy and Open MPI's daemon start each rank as a child of theirs
    (after MPI_Init all of them are running). None if a per-rank wrapper stands between."""
    parent, me = os.getppid(), os.getpid()
    found: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task}/children") as children:
                found.update(int(pid) for pid in children.read().split())
    except OSError:
        return []
    found.discard(me)
    return sorted(found)


def release_when_shared() -> tuple[int, int]:
    """Unlink the MPI segments this process maps once every sibling maps them too: how
    many were unlinked and how many are left for later. For ranks that cannot call
    :func:`release` (a live job's program owns MPI): MPICH makes its node's segment at a
    communicator's first use, each rank on its own, and one that finds no file makes a new
    one, so unlinking before the last rank has it would cut that rank off."""
    mine = mpi_segments()
    if not mine:
        return 0, 0
    theirs = [set(mapped_files(pid)) for pid in siblings()]
    unlinked = left = 0
    for path in mine:
        if not all(path in files for files in theirs):
            left += 1
            continue
        try:
            os.unlink(path)
            unlinked += 1
        except OSError:
            pass  # gone already
    return unlinked, left


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
