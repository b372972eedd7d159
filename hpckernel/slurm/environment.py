"""The environment a batch job gets: an allow-list of this process's variables, plus the
ones asked for by name — never the whole environment.

sbatch copies its own environment into the job (``--export=ALL``, its default), and where
``AccountingStoreFlags=job_env`` is set, into slurmdbd. A Jupyter server's environment holds
tokens (``JUPYTERHUB_API_TOKEN``, cloud credentials) that have no business on the compute
nodes. What a job does need: where programs and libraries are (``PATH``, the Python, venv,
conda and module-system variables), who and where the user is, the locale, Slurm's and
MPI's own settings, and what Jupyter tells the kernel (``JPY_SESSION_NAME``: the notebook).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR",
    "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "PKG_CONFIG_PATH", "MANPATH",
    "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "VIRTUAL_ENV",
    "JUPYTER_PATH", "JUPYTER_CONFIG_DIR", "JUPYTER_CONFIG_PATH", "JUPYTER_DATA_DIR",
    "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
    "MODULEPATH", "MODULESHOME", "LOADEDMODULES", "_LMFILES_",
    "BASH_FUNC_module%%", "BASH_FUNC_ml%%",
    "JPY_SESSION_NAME",  # the notebook's path: provenance goes beside it
})
PREFIXES = ("LC_", "SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "CONDA_", "LMOD_", "__LMOD_",
            "MODULES_", "SPACK_", "OMP_", "MKL_", "OPENBLAS_", "MPICH_", "MPIR_CVAR_",
            "I_MPI_", "OMPI_", "UCX_", "FI_", "CUDA_", "HPCKERNEL_")
VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def allowed(name: str) -> bool:
    """Whether the variable ``name`` passes into jobs without being asked for."""
    return name in NAMES or name.startswith(PREFIXES)


def job_environment(source: Mapping[str, str], also: Iterable[str] = ()) -> dict[str, str]:
    """The variables of ``source`` that a job gets: the allow-list, and the names ``also``
    (a user's ``export_env``, the kernelspec's ``env``)."""
    extra = set(also)
    return {k: v for k, v in source.items() if allowed(k) or k in extra}


def check_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list; ``ValueError`` naming the first that is not a variable name."""
    names = list(names)
    for name in names:
        if not VALID_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
    return names
