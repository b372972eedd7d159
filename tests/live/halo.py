"""A small mpi4py simulation for live-job tests and the overhead benchmark: a 1-D field
split across the ranks, a halo exchange with both neighbours and a smoothing step per
iteration; ``publish`` every 10 steps and ``safepoint()`` every step. Its result (printed
by rank 0) does not depend on timing, so a run that was attached to prints the same.

usage: python [-m hpckernel.live] halo.py STEPS [SLEEP] [CELLS] [CRASH_AT]

With CRASH_AT, the last rank dies (exit code 3) at that step: a crashed rank. The time
printed is the loop's from step ``$HALO_WARMUP`` on (0: all of it; the overhead benchmark
leaves out the start, while a live job's endpoint and agents start beside it).
"""

import os
import sys
import time

import numpy as np
from mpi4py import MPI

import hpckernel
from hpckernel.live import safepoint


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, size = comm.rank, comm.size
    steps = int(sys.argv[1])
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    cells = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
    crash = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    u = np.sin(np.linspace(0, 3, cells + 2) + rank)
    left, right = (rank - 1) % size, (rank + 1) % size
    warmup = int(os.environ.get("HALO_WARMUP") or 0)
    started = time.perf_counter()
    for step in range(steps):
        if step == warmup:
            started = time.perf_counter()
        if step == crash and rank == size - 1:
            os._exit(3)
        u[0] = comm.sendrecv(u[-2], dest=right, source=left)  # LOOP: the halo exchange
        u[-1] = comm.sendrecv(u[1], dest=left, source=right)
        u[1:-1] = 0.25 * u[:-2] + 0.5 * u[1:-1] + 0.25 * u[2:]
        if step % 10 == 0:
            hpckernel.publish("energy", float(u[1:-1] @ u[1:-1]))
        if pause:
            time.sleep(pause)
        safepoint()
    elapsed = comm.allreduce(time.perf_counter() - started, op=MPI.MAX)
    total = comm.allreduce(float(u[1:-1].sum()))
    if rank == 0:
        print(f"RESULT {total:.9f} steps {steps} seconds {elapsed:.4f}", flush=True)


if __name__ == "__main__":
    main()
