"""The "Slurm MPI" kernel's provisioner: a jupyter_client kernel provisioner that runs the
hub inside a Slurm batch allocation (entry point ``slurm-provisioner``)."""

from .slurm_provisioner import SlurmProvisioner

__all__ = ["SlurmProvisioner"]
