"""Which MPI library mpi4py runs on, and what goes with it: how ranks are started.

The hub learns it before it starts any rank, from a short probe: the ranks' Python (the
launcher's environment) imports mpi4py without initialising MPI and prints
``MPI_Get_library_version()`` (callable before ``MPI_Init``). The hub itself never loads
MPI: an initialised MPI in the kernel process would tie it to a process manager it is not
started by. mpi4py's wheels pick their library at import (``MPI4PY_LIBMPI``,
``MPI4PY_MPIABI``, else the first ``libmpi.so*`` found in the environment, then the system
search path), so the probe sees exactly what the ranks will load. Its answer is cached per
Python and environment: a restart of the ranks does not probe again.

The family of the library decides the launcher's flags (``LocalLauncher``) and, under Slurm,
the ``srun --mpi`` plugin or the MPI's own ``mpirun`` inside the allocation
(``SrunLauncher``); each is a setting, and ``auto`` means this table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ..provenance import mpi_summary

log = logging.getLogger(__name__)

PROBE = ("import mpi4py; mpi4py.rc.initialize = mpi4py.rc.finalize = False; "
         "from mpi4py import MPI; print(MPI.Get_library_version())")
#: What decides which library mpi4py loads, besides the Python itself.
PROBE_ENV = ("MPI4PY_LIBMPI", "MPI4PY_MPIABI", "LD_LIBRARY_PATH", "LD_PRELOAD", "PATH")


@dataclass(frozen=True)
class Family:
    """One kind of MPI library: how its own launcher is asked for rank-prefixed output
    and oversubscription, and the ``srun --mpi`` plugin its ranks need."""

    name: str  # shown to users: "Open MPI", "MPICH", ...
    key: str  # openmpi, mpich, cray-mpich, intel-mpi, unknown
    srun_mpi: str
    #: flags of its mpiexec: output prefixed with the rank, and more ranks than cores
    tag_output: tuple[str, ...]
    oversubscribe: tuple[str, ...] = ()
    #: environment that makes oversubscribed ranks yield the CPU while they wait in MPI
    yield_env: tuple[tuple[str, str], ...] = ()


# Oversubscribed MPICH ranks must not busy-poll (TESTBED.md).
_MPICH_YIELD = (
    ("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "true"),
    ("MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT", "1"),
    ("MPIR_CVAR_POLLS_BEFORE_YIELD", "1"),
)
OPENMPI = Family("Open MPI", "openmpi", "pmix", ("--tag-output",), ("--oversubscribe",),
                 (("OMPI_MCA_mpi_yield_when_idle", "1"),))
MPICH = Family("MPICH", "mpich", "pmi2", ("-prepend-rank",), (), _MPICH_YIELD)
CRAY_MPICH = Family("Cray MPICH", "cray-mpich", "cray_shasta", ("-prepend-rank",))
INTEL_MPI = Family("Intel MPI", "intel-mpi", "pmi2", ("-prepend-rank",))
#: mpi4py could not be imported, or names a library this table does not know: MPICH's
#: ways (the launcher's defaults before this table existed), and the ranks say the rest.
UNKNOWN = Family("unknown MPI", "unknown", "pmi2", ("-prepend-rank",), (), _MPICH_YIELD)
FAMILIES = (OPENMPI, MPICH, CRAY_MPICH, INTEL_MPI)


def family_of(version: str) -> Family:
    """The family of an ``MPI_Get_library_version()`` string (MVAPICH and other MPICH
    derivatives count as MPICH)."""
    if re.match(r"\s*Open MPI\b", version):
        return OPENMPI
    if re.search(r"CRAY MPICH", version, re.IGNORECASE):
        return CRAY_MPICH
    if re.search(r"Intel\(R\) MPI", version):
        return INTEL_MPI
    if re.search(r"\bMPICH\b|\bMVAPICH", version, re.IGNORECASE):
        return MPICH
    return UNKNOWN


@dataclass(frozen=True)
class MPILibrary:
    """What the probe found: the library's version text (empty if none) and its family."""

    version: str
    family: Family
    error: str = ""  # why the probe failed, if it did

    @property
    def summary(self) -> str:
        """The version's first line, spaces collapsed (MPICH's is 20 lines)."""
        return mpi_summary(self.version)

    @property
    def name(self) -> str:
        """Name and version: ``Open MPI v5.0.11``, ``MPICH Version: 4.2.0``."""
        return self.summary.split(",")[0]


_cache: dict[tuple[str, tuple[tuple[str, str | None], ...]], MPILibrary] = {}


async def probe(env: Mapping[str, str], python: str = sys.executable,
                timeout: float = 30.0) -> MPILibrary:
    """The MPI library mpi4py loads for ``python`` in ``env`` (called by the launchers
    before each start; cached, so only the first costs a process: ≈0.2 s)."""
    key = (python, tuple((name, env.get(name)) for name in PROBE_ENV))
    if key in _cache:
        return _cache[key]
    try:
        code, out, err = await _run([python, "-c", PROBE], env, timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return MPILibrary("", UNKNOWN, f"cannot run {python}: {e or 'timed out'}")
    if code != 0:
        lines = err.strip().splitlines()
        library = MPILibrary("", UNKNOWN, lines[-1] if lines else f"exit {code}")
        log.warning("cannot tell which MPI mpi4py runs on: %s", library.error)
        return library  # not cached: the user may install an MPI and restart the ranks
    version = out.strip()
    library = _cache[key] = MPILibrary(version, family_of(version))
    log.info("mpi4py runs on %s (%s)", library.summary, library.family.name)
    return library


def running_as_root() -> bool:
    """Open MPI's launcher refuses root unless told (``--allow-run-as-root``)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


_launchers: dict[str, Family | None] = {}


async def launcher_family(path: str, env: Mapping[str, str]) -> Family | None:
    """Whose ``mpiexec`` ``path`` is (its ``--version``, asked once per path); None if it
    does not say in a way this table knows."""
    if path not in _launchers:
        try:
            _, text, err = await _run([path, "--version"], env, 30)
        except (OSError, asyncio.TimeoutError):
            return None
        text += err
        # Open MPI: "mpiexec (Open MPI) 5.0.x"; MPICH's Hydra: "HYDRA build details"
        _launchers[path] = (OPENMPI if "Open MPI" in text else INTEL_MPI if "Intel(R) MPI"
                            in text else MPICH if "HYDRA" in text else None)
    return _launchers[path]


async def _run(argv: list[str], env: Mapping[str, str], timeout: float
               ) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of a short command (killed after ``timeout``)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(env))
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
