"""``python -m hpckernel.worker PLANE_FILE`` — started once per rank by mpiexec or srun."""

import gc

# No cyclic garbage collection while the rank imports and starts (see runner.main, which
# freezes what the start made and turns collection back on): ≈10 ms of each rank's CPU.
gc.disable()

from .runner import main  # noqa: E402

if __name__ == "__main__":
    main()
