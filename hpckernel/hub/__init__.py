"""The hub: the Jupyter kernel that runs outside MPI and drives the ranks."""
