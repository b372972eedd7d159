"""Starting the hub: a new batch job (``sbatch``), or a job step of an allocation the user
already holds (``srun --jobid``). Restarts in the same allocation need neither: the running
batch script starts the next hub when a new hub-start file appears (``launcher/slurm-job.sh``).
"""

from __future__ import annotations

import asyncio
import os

from jupyter_client.connect import KernelConnectionInfo

from ..jobrequest import JobSettings
from ..jobrequest.sbatch import sbatch_options, walltime_warning
from ..jupyter_channels import PORTS
from ..slurm import check_partition
from .access import ClusterAccess, Log
from .batch import render_script
from .errors import KernelStartError
from .jobdir import JobDir


def hub_start_file(connection_info: KernelConnectionInfo, keep_ports: bool
                   ) -> dict[str, object]:
    """The connection file the hub starts from (key and CurveZMQ keys included), as JSON
    data. A new job's hub picks free ports; a restart in the same job keeps them, so
    connected clients (and a server's websockets) carry on."""
    info = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in connection_info.items()}
    if not keep_ports:
        info.update({port: 0 for port in PORTS})
    info.pop("ip", None)  # the hub binds its own node's address
    return info


def hub_args(settings: JobSettings, job_dir: JobDir) -> list[str]:
    """The hub's command-line options in the batch job: ``SrunLauncher`` for the ranks,
    the plane files in the job directory, the client lease."""
    return [f"--ip={settings.hub_ip}",
            "--HubKernel.launcher_class=hpckernel.hub.rank_launchers.SrunLauncher",
            f"--RankLauncher.ranks={settings.ranks}",
            f"--HubKernel.job_dir_parent={job_dir}",
            f"--HubKernel.plane_ip={settings.hub_ip}",
            f"--HubKernel.client_timeout={settings.client_timeout:g}",
            f"--HubApp.ready_file={job_dir}/hub.ready"]


async def submit_job(access: ClusterAccess, job_dir: JobDir, name: str, cwd: str | None,
                     log: Log, env: dict[str, str] | None = None) -> str:
    """Check the request against the partition, then ``sbatch`` the hub's batch job; its
    id. ``cwd``: the hub's working directory (None: the home directory on the cluster);
    ``env``: sbatch's environment where it runs here (see ``batch.job_env``)."""
    settings = access.settings
    slurm = access.slurm
    await check_partition(slurm, settings.partition or None, nodes=settings.nodes,
                          time=settings.time)
    script = render_script(job_dir=str(job_dir), python=settings.python,
                           hub_args=hub_args(settings, job_dir), setup=settings.setup,
                           workdir=cwd or "", relaunch_timeout=settings.relaunch_timeout)
    warning = walltime_warning(settings)
    if settings.walltime_warning > 0 and not warning:
        log.info("no walltime warning: the walltime %s is not longer than walltime_warning "
                 "(%d s)", settings.time, settings.walltime_warning)
    options = sbatch_options(settings, job_name=f"hpckernel-{name[:8]}",
                             output=f"{job_dir}/slurm-%j.out", walltime_warning=warning)
    job_id = await slurm.submit(script, options, env=env)
    log.info("Slurm job %s submitted: %d node(s) x %d rank(s), walltime %s", job_id,
             settings.nodes, settings.ntasks_per_node, settings.time)
    return job_id


def local_cwd(access: ClusterAccess, cwd: str | None) -> str | None:
    """A local working directory means nothing on the login node: there, use the home."""
    return None if access.ssh is not None else (cwd or os.getcwd())


async def start_step(access: ClusterAccess, job_dir: JobDir, log: Log,
                     env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start the batch script as a one-task step of the existing allocation ``jobid``; the
    step lives as long as the returned ``srun`` (a child of this process, or of ssh)."""
    settings = access.settings
    info = await access.slurm.job(settings.jobid)
    if info is None or not info.running:
        raise KernelStartError(
            f"Slurm job {settings.jobid} is {'unknown' if info is None else info.state}: "
            "SlurmProvisioner.jobid must name a running allocation (salloc --no-shell)")
    script = render_script(job_dir=str(job_dir), python=settings.python,
                           hub_args=hub_args(settings, job_dir), setup=settings.setup,
                           relaunch_timeout=settings.relaunch_timeout)
    argv = ["srun", f"--jobid={settings.jobid}", "--overlap", "--nodes=1", "--ntasks=1",
            f"--output={job_dir}/slurm-{settings.jobid}.out", "bash", "-s"]
    if access.ssh is not None:
        step = await access.ssh.spawn(argv, asyncio.subprocess.DEVNULL)
    else:
        step = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True, env=env)
    assert step.stdin is not None
    step.stdin.write(script.encode())
    await step.stdin.drain()
    step.stdin.close()
    log.info("Slurm job %s: hub started as a job step on %s", settings.jobid, info.nodelist)
    return step


async def end_step(step: asyncio.subprocess.Process, job_dir: JobDir, wait: float,
                   log: Log) -> None:
    """Stop our step in the user's allocation; the allocation itself stays."""
    if step.returncode is not None:
        return
    await job_dir.touch("stop")
    step.terminate()  # srun passes it on to the step's processes
    try:
        await asyncio.wait_for(step.wait(), wait)
    except asyncio.TimeoutError:
        step.kill()
        await step.wait()
    log.info("Slurm job: hub step ended; the allocation stays")
