"""The "Slurm MPI" kernel's provisioner: a jupyter_client kernel provisioner that runs the
hub inside a Slurm batch allocation (entry point ``slurm-provisioner``). Its errors are
``ProvisionerError``s (``errors.py``); its settings are declared in
``hpckernel.jobrequest``."""

from .errors import KernelStartError, LoginError, PortTakenError, ProvisionerError
from .slurm_provisioner import SlurmProvisioner

__all__ = ["KernelStartError", "LoginError", "PortTakenError", "ProvisionerError",
           "SlurmProvisioner"]
