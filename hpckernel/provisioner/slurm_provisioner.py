"""``SlurmProvisioner``: starts the hub of a "Slurm MPI" kernel inside a Slurm batch job.

jupyter_client's KernelManager calls the methods below in its usual order (pre_launch →
launch_kernel → poll… → shutdown_requested → wait → cleanup); each docstring names its
caller. The work is done by ``KernelJob`` (``kernel_job.py``), which the argv bridge for
front ends without provisioners uses too. The provisioner and the batch job meet in the
kernel's job directory: the provisioner writes the connection file (key, ports 0) there as
``hub-start.json``; the batch script starts the hub on it; the hub binds its ports and
rewrites it as ``connection.json``, which the provisioner reads back. No secret is ever on
a command line.
"""

from __future__ import annotations

import asyncio
from typing import Any

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import TraitError

from ..jobrequest import SETTING_NAMES, JobSettings
from ..slurm import SubmitError
from .errors import KernelStartError, LoginError, PortTakenError, ProvisionerError
from .jobdir import JobDir
from .kernel_job import KernelJob
from .ssh import SSHConnection


# mypy cannot see that KernelProvisionerMeta derives from HasTraits' metaclass (it is
# built from type(LoggingConfigurable)).
class SlurmProvisioner(KernelProvisionerBase, JobSettings):  # type: ignore[metaclass]
    """Runs the kernel's hub in a Slurm allocation; its ranks span the allocation.

    Its settings (partition, nodes, …, login, ssh_args, launch_timeout, …) are the traits
    of ``JobSettings``, so that a kernelspec's provisioner config or
    ``c.SlurmProvisioner.partition`` sets them."""

    def __init__(self, **kwargs: object) -> None:
        # A typo in a kernelspec's provisioner config must not be silently ignored.
        unknown = sorted(set(kwargs) - set(self.class_trait_names()) - {"parent", "config"})
        if unknown:
            raise TraitError(f"unknown SlurmProvisioner setting {', '.join(unknown)} in the "
                             f"kernelspec; the settings are: {', '.join(SETTING_NAMES)}")
        super().__init__(**kwargs)

    _job: KernelJob | None = None

    @property
    def job(self) -> KernelJob:
        """The kernel's job, made from the traits' values on first use."""
        if self._job is None:
            self._job = KernelJob(self.snapshot(), self.log)
        return self._job

    @property
    def job_id(self) -> str | None:
        """The kernel's Slurm job id, once submitted (for logs, tests, ``%ranks``)."""
        return self.job.job_id

    @property
    def job_dir(self) -> JobDir | None:
        """Where the provisioner and the batch job meet (see the module docstring)."""
        return self.job.job_dir

    @property
    def ssh(self) -> SSHConnection | None:
        """The SSH master connection to the login node, while there is one."""
        return self.job.access.ssh

    @property
    def has_process(self) -> bool:
        """Whether a job runs for this kernel. Read by ``KernelManager.has_kernel``."""
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
        hub = await job.start(self.connection_info, self.kernel_id or "",
                              kwargs.get("cwd"), env=kwargs.get("env"),
                              export=list(self.kernel_spec.env or {}))
        if job.access.ssh is not None:
            hub = await job.tunnel(hub, self.connection_info)
        self.connection_info.update(hub)
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

    async def get_provisioner_info(self) -> dict[str, object]:
        """Called by servers that persist kernels, so a restarted one can re-attach."""
        info: dict[str, object] = await super().get_provisioner_info()
        info.update(self.job.info())
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, object]) -> None:
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


__all__ = ["KernelStartError", "LoginError", "PortTakenError", "ProvisionerError",
           "SlurmProvisioner", "SubmitError"]
