"""``python -m hpckernel.worker PLANE_FILE`` — started once per rank by mpiexec or srun."""

from .runner import main

if __name__ == "__main__":
    main()
