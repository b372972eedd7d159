"""How ranks start in the allocation, for the MPI library mpi4py runs on (run with each
MPI's venv: tests/run-all.sh): srun with the library's plugin, and the MPI's own mpirun
across two nodes, each with its restart and clean shutdown; a plugin this Slurm lacks is an
error naming the setting. (The other Slurm tests use the default: srun for MPICH, Open MPI's
mpirun for Open MPI.)"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import psutil
import pytest

from hpckernel.hub.mpi_library import probe
from tests.kernel.harness import Kernel, orphaned_session_dirs, wait_gone

from .test_provisioner import queued, settings, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]


def _hub_config(tmp_path: Path, *lines: str) -> str:
    """A Jupyter config directory with the hub's settings; the job's ``setup`` that uses it."""
    config = tmp_path / "jupyter-config"
    config.mkdir()
    (config / "hpckernel_hub_config.py").write_text("".join(f"{line}\n" for line in lines))
    return f"export JUPYTER_CONFIG_DIR={config}"


def _launchers(job_id: str) -> dict[int, str]:
    """The job's rank launchers and MPI daemons (Open MPI's prterun and prted, MPICH's
    mpiexec and proxies), by pid."""
    found = {}
    for proc in psutil.process_iter(["name"]):
        if not re.search(r"prte|mpirun|mpiexec|hydra", proc.info["name"] or ""):
            continue
        try:
            if proc.environ().get("SLURM_JOB_ID") == job_id:
                found[proc.pid] = proc.info["name"]
        except psutil.Error:
            continue
    return found


def test_ranks_started_by_the_mpis_own_mpirun_in_the_allocation(tmp_path: Path) -> None:
    setup = _hub_config(tmp_path, "c.SrunLauncher.starter = 'mpirun'")
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=2, ntasks_per_node=2,
                                             setup=setup))
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    try:
        assert "(ranks started by mpirun in the allocation)" in kernel.ok("%ranks").text()
        cell = ("import os\nfrom mpi4py import MPI\n"
                "print(MPI.COMM_WORLD.allreduce(1), os.environ['SLURMD_NODENAME'])")
        # two nodes: node agents (HubKernel.fanin auto), keyed by Slurm's node name
        assert kernel.ok(cell).text() == "[stdout:0-1] 4 n1\n[stdout:2-3] 4 n2\n"
        daemons = _launchers(job_id)
        assert len(daemons) >= 2, daemons  # mpirun, and a daemon on n2
        assert "4 fresh ranks ready" in kernel.ok("%restart_ranks", timeout=120).text()
        assert kernel.ok(cell).text() == "[stdout:0-1] 4 n1\n[stdout:2-3] 4 n2\n"
        launchers = list(_launchers(job_id))
    finally:
        kernel.shutdown()
    wait_until(lambda: not queued(job_id), 60, "the job to end")
    assert wait_gone(launchers) == []
    assert orphaned_session_dirs() == []


def test_ranks_started_by_srun_with_the_librarys_plugin(tmp_path: Path) -> None:
    plugin = asyncio.run(probe(os.environ)).family.srun_mpi  # pmi2, or pmix for Open MPI
    setup = _hub_config(tmp_path, "c.SrunLauncher.starter = 'srun'")
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=1, ntasks_per_node=2,
                                             setup=setup))
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    try:
        assert f"(ranks started by srun --mpi={plugin})" in kernel.ok("%ranks").text()
        cell = "from mpi4py import MPI\nprint(MPI.COMM_WORLD.allreduce(1))"
        assert kernel.ok(cell).text() == "[stdout:0-1] 2\n"
        assert "2 fresh ranks ready" in kernel.ok("%restart_ranks", timeout=120).text()
        assert kernel.ok(cell).text() == "[stdout:0-1] 2\n"
    finally:
        kernel.shutdown()
    wait_until(lambda: not queued(job_id), 60, "the job to end")
    assert orphaned_session_dirs() == []


def test_a_plugin_this_slurm_lacks_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    setup = _hub_config(tmp_path, "c.SrunLauncher.mpi = 'pmi9'")
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=1, setup=setup), wait_ranks=False)
    try:
        result = kernel.run("pass", timeout=120)
        assert result.status == "error"
        assert "srun --mpi=pmi9, which this Slurm does not have" in result.content["evalue"]
        assert "set SrunLauncher.mpi" in result.content["evalue"]
    finally:
        kernel.shutdown()
