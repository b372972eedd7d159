"""``SlurmProvisioner``: starts the hub of a "Slurm MPI" kernel inside a Slurm batch job.

jupyter_client's KernelManager calls the methods below in its usual order (pre_launch →
launch_kernel → poll… → shutdown_requested → wait → cleanup); each docstring names its
caller. The work is done by ``KernelJob`` (``kernel_job.py``), which the argv launcher for
front ends without provisioners uses too. The provisioner and the batch job meet in the
kernel's job directory: the provisioner writes the connection file (key, ports 0) there as
``launch.json``; the batch script starts the hub on it; the hub binds its ports and
rewrites it as ``connection.json``, which the provisioner reads back. No secret is ever on
a command line.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, validate

from ..slurm import SubmitError
from .jobdir import JobDir
from .kernel_job import KernelJob
from .settings import (
    SETTING_NAMES,
    JobSettings,
    SettingError,
    check_login,
    check_positive,
    check_time,
)
from .ssh import SSHConnection
from .start import KernelStartError


class SlurmProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Runs the kernel's hub in a Slurm allocation; its ranks span the allocation."""

    partition = Unicode("", help="Slurm partition (default: the cluster's default).").tag(
        config=True)
    nodes = Integer(1, help="Number of nodes.").tag(config=True)
    ntasks_per_node = Integer(1, help="MPI ranks per node.").tag(config=True)
    time = Unicode("01:00:00", help="Walltime, in any Slurm time format "
                   "(minutes, HH:MM:SS, D-HH:MM:SS).").tag(config=True)
    account = Unicode("", help="Slurm account to charge.").tag(config=True)
    qos = Unicode("", help="Slurm quality of service.").tag(config=True)
    constraint = Unicode("", help="Slurm node features (--constraint).").tag(config=True)
    sbatch_args = List(Unicode(), help="More sbatch options, e.g. ['--exclusive'].").tag(
        config=True)
    setup = Unicode("", help="Shell lines run in the job before the hub starts, e.g. "
                    "'module load python'.").tag(config=True)
    python = Unicode(sys.executable, help="Python on the compute nodes that has hpckernel "
                     "installed (default: this one, on a shared file system).").tag(config=True)
    job_root = Unicode("", help="Where job directories are made; the compute nodes must "
                       "see it (default: ~/.hpckernel/jobs where sbatch runs).").tag(config=True)
    jobid = Unicode("", help="Run in this existing allocation (e.g. from `salloc "
                    "--no-shell`) as a job step, instead of submitting a job; the allocation "
                    "is left running at shutdown.").tag(config=True)
    login = Unicode("", help="Reach the cluster through this login node: anything `ssh` "
                    "accepts (user@host, a Host alias of ~/.ssh/config).").tag(config=True)
    ssh_args = List(Unicode(), help="More options for ssh, e.g. ['-F', 'my_config'].").tag(
        config=True)
    connect_timeout = Float(20.0, help="Seconds to wait for the login node to answer.").tag(
        config=True)
    login_timeout = Float(120.0, help="Seconds the login node may stay unreachable before "
                          "the kernel is reported dead.").tag(config=True)
    launch_timeout = Float(600.0, help="Seconds the job may stay pending before it is "
                           "cancelled and the start fails; 0: wait forever.").tag(config=True)
    walltime_warning = Integer(300, help="Warn in the notebook this many seconds before the "
                               "walltime ends (0: no warning).").tag(config=True)
    client_timeout = Float(600.0, help="The hub ends itself, releasing the allocation, after "
                           "this many seconds without a client (the Jupyter server died)."
                           ).tag(config=True)
    relaunch_timeout = Integer(300, help="Seconds the job waits for the next hub after a "
                               "restart before it ends.").tag(config=True)
    poll_interval = Float(5.0, help="Seconds between checks of the job with Slurm while the "
                          "kernel runs.").tag(config=True)
    hub_ip = Unicode("auto", help="Address the hub binds on its node ('auto': the address of "
                     "the node's name).").tag(config=True)
    encryption = Bool(True, help="Encrypt the kernel's channels with CurveZMQ.").tag(
        config=True)

    def __init__(self, **kwargs: Any) -> None:
        # A typo in a kernelspec's provisioner config must not be silently ignored.
        unknown = sorted(set(kwargs) - set(self.class_trait_names()) - {"parent", "config"})
        if unknown:
            settings = sorted(self.class_trait_names(config=True))
            raise TraitError(f"unknown SlurmProvisioner setting {', '.join(unknown)} in the "
                             f"kernelspec; the settings are: {', '.join(settings)}")
        super().__init__(**kwargs)

    @validate("nodes", "ntasks_per_node")
    def _positive(self, proposal: dict[str, Any]) -> int:
        return _checked(check_positive, proposal["trait"].name, proposal["value"])

    @validate("time")
    def _check_time(self, proposal: dict[str, Any]) -> str:
        return _checked(check_time, proposal["value"])

    @validate("login")
    def _check_login(self, proposal: dict[str, Any]) -> str:
        return _checked(check_login, proposal["value"])

    _job: KernelJob | None = None

    @property
    def job(self) -> KernelJob:
        """The kernel's job, made from the traits' values on first use."""
        if self._job is None:
            settings = JobSettings(**{name: getattr(self, name) for name in SETTING_NAMES})
            self._job = KernelJob(settings, self.log)
        return self._job

    @property
    def job_id(self) -> str | None:
        return self.job.job_id

    @property
    def job_dir(self) -> JobDir | None:
        return self.job.job_dir

    @property
    def ssh(self) -> SSHConnection | None:
        """The SSH master connection to the login node, while there is one."""
        return self.job.access.ssh

    @property
    def ranks(self) -> int:
        return self.nodes * self.ntasks_per_node

    @property
    def has_process(self) -> bool:
        return self.job.running

    # -- start ----------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Prepare the connection info (key, CurveZMQ keys) the hub will use.

        Called from ``KernelManager.pre_start_kernel()``, at start and restart."""
        km = self.parent
        assert km is not None, "a provisioner is created by a KernelManager"
        if self.encryption and zmq.has("curve") and km.curve_publickey is None:
            km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
        self.connection_info = km.get_connection_info()
        kwargs.pop("extra_arguments", None)
        return await super().pre_launch(cmd=list(self.kernel_spec.argv), **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Submit the batch job (or, on restart, ask the running job for a fresh hub) and
        wait until the hub listens; its connection info.

        Called from ``KernelManager.launch_kernel()``."""
        job = self.job
        hub = await job.start(dict(self.connection_info), self.kernel_id or "",
                              kwargs.get("cwd"))
        if job.access.ssh is not None:
            hub = await job.tunnel(hub, dict(self.connection_info))
        self.connection_info.update(hub)  # type: ignore[typeddict-item]
        return self.connection_info

    # -- running ----------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the hub runs, else an exit code.

        Called from ``KernelManager.is_alive()`` — by jupyter_server's restarter every few
        seconds; Slurm itself is asked at most every ``poll_interval`` seconds; a lost SSH
        master is rebuilt here."""
        return await self.job.poll()

    async def wait(self) -> int | None:
        """Wait until the hub (or the job) has ended.

        Called from ``KernelManager`` while it finishes a shutdown."""
        # Slurm has no event to wait on: poll (poll() itself limits how often Slurm is asked).
        while (code := await self.poll()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        return code

    async def send_signal(self, signum: int) -> None:
        """Signal the batch job (which passes USR1/TERM on to the hub).

        Called from ``KernelManager.signal_kernel()``; interrupts use messages instead."""
        await self.job.signal(signum)

    async def kill(self, restart: bool = False) -> None:
        """End the job. Called from ``KernelManager`` when a hub did not stop by itself."""
        await self.job.cancel(self.get_shutdown_wait_time())

    async def terminate(self, restart: bool = False) -> None:
        """End the job. Called from ``KernelManager`` when a hub did not stop by itself."""
        await self.job.cancel(self.get_shutdown_wait_time())

    async def shutdown_requested(self, restart: bool = False) -> None:
        """Tell the batch job whether a new hub follows this one.

        Called from ``KernelManager.request_shutdown()`` before the shutdown message."""
        await self.job.ask_stop(restart)

    async def cleanup(self, restart: bool = False) -> None:
        """On a real shutdown: cancel the job, wait until Slurm reports it gone, remove the
        job directory's secrets, close the SSH master and its tunnels.

        Called from ``KernelManager.cleanup_resources()``."""
        if not restart:
            await self.job.close(self.get_shutdown_wait_time())

    # -- persistence and timing ---------------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        """Called by servers that persist kernels, so a restarted one can re-attach."""
        info: dict[str, Any] = await super().get_provisioner_info()
        info.update(self.job.info())
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        """The inverse of ``get_provisioner_info``: re-attach to a running job.

        Called by servers that persist kernels, when they start again."""
        await super().load_provisioner_info(provisioner_info)
        await self.job.attach(provisioner_info)

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        """Called from ``KernelManager.finish_shutdown()``: scancel takes a few seconds."""
        return max(recommended, 30.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        """Called from ``KernelManager`` (restart throttling): a start includes the queue
        wait."""
        return max(recommended, self.launch_timeout or 3600.0)


def _checked(check: Any, *args: Any) -> Any:
    """A settings check as a trait validation: its error as a TraitError."""
    try:
        return check(*args)
    except SettingError as e:
        raise TraitError(str(e)) from None


__all__ = ["KernelStartError", "SlurmProvisioner", "SubmitError"]
