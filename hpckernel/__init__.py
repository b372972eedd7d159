"""hpckernel: Jupyter kernels whose cells run on MPI ranks, locally or in a Slurm allocation."""

__version__ = "0.1.0"
