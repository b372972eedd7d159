"""One kernel's Slurm job, from submission to cancellation, without a KernelManager.

``KernelJob`` strings the parts together: ``ClusterAccess`` (SSH login, job directory,
tunnels), ``start`` (sbatch or a job step), ``watch`` (queue wait, liveness). The Slurm
provisioner drives it for jupyter_client; the argv bridge (``hpckernel.bridge``) drives
it for front ends that run kernel.json's argv themselves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TypedDict

from jupyter_client.connect import KernelConnectionInfo

from ..jobrequest import JobSettings
from ..jupyter_channels import ChannelAddress
from ..slurm import SlurmError, wait_gone
from .access import ClusterAccess, Log
from .batch import ENV_FILE, job_env
from .jobdir import CONNECTION_FILE, HUB_START_FILE, JobDir
from .probe import iopub_works
from .start import end_step, hub_start_file, local_cwd, start_step, submit_job
from .watch import Liveness, wait_for_hub


class OrphanOrders(TypedDict, total=False):
    """What the bridge's watchdog does if the process that started the job dies: run
    ``cancel`` (scancel, through the login node if there is one), end the ``kill`` pids."""

    job_id: str
    kill: list[int]
    cancel: list[str]


class JobRecord(TypedDict):
    """What a new process needs to re-attach to a kernel's job (no secret: those are in
    the connection file); a server that persists kernels keeps it."""

    job_id: str | None
    job_dir: str
    tunnels: dict[int, int] | None
    hub_ip: str | None


class KernelJob:
    """The batch job (or job step) that runs one kernel's hub."""

    def __init__(self, settings: JobSettings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.access = ClusterAccess(settings, log)
        self.job_id: str | None = None
        self.job_dir: JobDir | None = None
        self.exit_code: int | None = None
        self.liveness: Liveness | None = None
        self.stopping = False  # no hub is to follow (shutdown, also while pending)
        self.ending = False  # the hub ends because it was asked to (shutdown or restart)
        self._step: asyncio.subprocess.Process | None = None  # our srun, with ``jobid``
        self.client_info: KernelConnectionInfo = {}  # what clients use, through the tunnels
        self.job_env: dict[str, str] | None = None  # sbatch's (and srun's) environment here

    @property
    def running(self) -> bool:
        """Whether the job was submitted and has not ended."""
        return self.job_id is not None and self.exit_code is None

    async def start(self, connection_info: KernelConnectionInfo, name: str,
                    cwd: str | None = None, submitted: Callable[[], None] | None = None, *,
                    env: Mapping[str, str] | None = None, export: Iterable[str] = ()
                    ) -> ChannelAddress:
        """Submit the job (or, when one runs, ask it for a fresh hub on the same ports) and
        wait until the hub listens; the hub's address and ports, as seen from the cluster.
        ``submitted`` is called once the job exists (before the queue wait). ``env``: the
        kernel's environment (default: this process's), of which the job gets the
        allow-list, ``settings.export_env`` and the ``export`` names (the kernelspec's
        ``env``), never the whole (it may hold the server's tokens)."""
        self.stopping = self.ending = False
        await self.access.open()
        if self.job_dir is None:
            self.job_dir = await self.access.new_job_dir(name)
        for stale in ("hub.exit", "hub.ready", "stop"):
            await self.job_dir.remove(stale)
        await self.job_dir.write_private(HUB_START_FILE, json.dumps(
            hub_start_file(connection_info, keep_ports=self.job_id is not None)))
        self.job_env, env_file = job_env(env, [*self.settings.export_env, *export])
        await self.job_dir.write_private(ENV_FILE, env_file)
        self.exit_code = None
        if self.job_id is None and self.settings.jobid:
            self._step = await start_step(self.access, self.job_dir, self.log, self.job_env)
            self.job_id = self.settings.jobid
        elif self.job_id is None:
            self.job_id = await submit_job(self.access, self.job_dir, name,
                                           local_cwd(self.access, cwd), self.log, self.job_env)
        else:
            self.log.info("Slurm job %s: restarting the hub in the same allocation",
                          self.job_id)
        if self.liveness is not None:
            self.liveness.close()
        self.liveness = Liveness(lambda: self.access.slurm, self.job_id, self.job_dir,
                                 self.settings.poll_interval, self.log)
        if submitted is not None:
            submitted()
        try:
            return await wait_for_hub(self.access.slurm, self.job_id, self.job_dir,
                                      self.settings, lambda: self.stopping, self.log)
        except BaseException:
            # A failed or cancelled start (shutdown while pending) must not leave a job.
            await asyncio.shield(self.cancel())
            raise

    async def tunnel(self, hub: ChannelAddress, connection_info: KernelConnectionInfo,
                     local: dict[str, int] | None = None) -> ChannelAddress:
        """Forward loopback ports to the hub through the login node (``local``: the ports
        to use, e.g. a front end's); the address and ports clients use."""
        ports = await self.access.tunnel(hub, local)
        self.client_info = KernelConnectionInfo(**connection_info)
        self.client_info.update(ports)
        return ports

    async def poll(self) -> int | None:
        """None while the hub runs, else an exit code; repairs a lost SSH master."""
        if self.job_id is None or self.liveness is None:
            return 0
        if self.exit_code is not None:
            return self.exit_code
        repaired = await self.access.repair()
        if repaired is False:
            # A dead kernel must not keep its allocation (nor its SSH master) either; the
            # cancel may fail if the login node stays away: then the hub's lease ends it.
            await self.close(wait=15.0)
            self.exit_code = 1
            return 1
        if repaired and self.client_info:
            # The request channels work again at once; IOPub only once a subscription has
            # reached the hub again: output sent before that would be lost.
            if await iopub_works(self.client_info, timeout=15.0):
                self.log.info("Slurm job %s: IOPub works through the rebuilt tunnels",
                              self.job_id)
            else:
                self.log.warning("Slurm job %s: no IOPub message through the rebuilt "
                                 "tunnels within 15 s", self.job_id)
        if self.access.lost_at is not None:
            return None  # still reconnecting: nothing can be read from the cluster
        code = await self.liveness.check(expected=self.ending)
        if code is not None and self.liveness.reason:  # ended for good, not a restart
            self.exit_code = code or 1 if not self.ending else code
        return self.exit_code if self.exit_code is not None else code

    async def ask_stop(self, restart: bool) -> None:
        """Tell the batch job whether a new hub follows the one about to end."""
        self.stopping = not restart
        self.ending = True
        if self.job_dir is not None:
            await self.job_dir.touch("restart" if restart else "stop")

    async def signal(self, signum: int) -> None:
        """Signal the batch job (which passes USR1/TERM on to the hub)."""
        if self.job_id is not None and signum:
            await self.access.slurm.cancel(self.job_id, signal=str(signum))

    async def cancel(self, wait: float = 30.0) -> None:
        """End the job (or only our step of the user's allocation) and wait until Slurm
        reports it gone."""
        job_id, self.job_id = self.job_id, None
        if job_id is None:
            return
        step, self._step = self._step, None
        if step is not None:
            if self.job_dir is not None:
                await end_step(step, self.job_dir, wait, self.log)
            return
        try:
            await self.access.slurm.cancel(job_id)
            info = await wait_gone(self.access.slurm, job_id, timeout=wait)
            self.log.info("Slurm job %s ended%s", job_id, f": {info.state}" if info else "")
        except (SlurmError, TimeoutError) as e:
            self.log.error("could not cancel Slurm job %s: %s — cancel it with scancel",
                           job_id, e)

    async def close(self, wait: float = 30.0) -> None:
        """Cancel the job, remove the job directory's secrets, close the SSH master."""
        if self.liveness is not None:
            self.liveness.close()
        await self.cancel(wait)
        try:
            if self.job_dir is not None:
                for name in (HUB_START_FILE, CONNECTION_FILE, ENV_FILE):
                    await self.job_dir.remove(name)
        finally:
            await self.access.close()

    def orphan_orders(self) -> OrphanOrders:
        """What another process must do if this one dies without cleaning up: the command
        that cancels the job (or the pids of our step), the processes to end (the SSH
        master with its tunnels)."""
        if self.job_id is None:
            return {}
        ssh = self.access.ssh
        kill = [ssh.master.pid] if ssh is not None and ssh.master is not None else []
        if self._step is not None:
            return {"job_id": self.job_id, "kill": [self._step.pid, *kill]}
        cancel = ["scancel", self.job_id]
        return {"job_id": self.job_id, "kill": kill,
                "cancel": ssh.command(cancel) if ssh is not None else cancel}

    # -- re-attach ------------------------------------------------------------------------

    def info(self) -> JobRecord:
        """What a new process needs to re-attach."""
        return {"job_id": self.job_id, "job_dir": str(self.job_dir or ""),
                "tunnels": self.access.tunnels or None, "hub_ip": self.access.hub_ip or None}

    async def attach(self, info: Mapping[str, object]) -> None:
        """The inverse of :meth:`info` (a record read back, perhaps through JSON: its keys
        may be strings): re-attach to a running job, tunnels included."""
        job_id, job_dir, tunnels = info.get("job_id"), info.get("job_dir"), info.get("tunnels")
        self.job_id = str(job_id) if job_id else None
        self.access.tunnels = ({int(k): int(v) for k, v in tunnels.items()}
                               if isinstance(tunnels, dict) else {})
        self.access.hub_ip = str(info.get("hub_ip") or "")
        await self.access.open()
        await self.access.restore_tunnels()
        if job_dir:
            self.job_dir = self.access.job_dir(str(job_dir))
        if self.job_id is not None and self.job_dir is not None:
            self.liveness = Liveness(lambda: self.access.slurm, self.job_id, self.job_dir,
                                     self.settings.poll_interval, self.log)
