"""How this process reaches the cluster: directly, or through a login node's SSH master.

``ClusterAccess`` owns the SSH master connection (when there is a login node), the
``Slurm`` commands that run through it, the kernel's job directory and the tunnels to the
hub's ports; it rebuilds a lost master with the tunnels on the same local ports. It needs
no KernelManager: the provisioner and the argv bridge use it alike.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from ..jobrequest import JobSettings
from ..jupyter_channels import PORTS, ChannelAddress, channel_address
from ..slurm import Slurm, SlurmError
from .errors import LoginError, PortTakenError
from .jobdir import JobDir, LocalJobDir, RemoteJobDir, remote_home
from .ssh import SSHConnection, SSHRunner

#: A logger, or a provisioner's adapter of one.
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


class ClusterAccess:
    """The cluster as one kernel sees it; ``ssh`` is None without a login node."""

    def __init__(self, settings: JobSettings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.ssh: SSHConnection | None = None
        self.tunnels: dict[int, int] = {}  # hub port -> local port
        self.hub_ip = ""
        self.lost_at: float | None = None  # when the master was found gone
        self._slurm: Slurm | None = None

    @property
    def slurm(self) -> Slurm:
        """Slurm's commands, run here or on the login node through the SSH master."""
        if self._slurm is None:
            self._slurm = Slurm(SSHRunner(self.ssh) if self.ssh is not None else None)
        return self._slurm

    async def open(self) -> None:
        """Open the SSH master connection to the login node, if there is one and it is not
        open; raises LoginError with ssh's reason."""
        login = self.settings.login
        if login and (self.ssh is None or not self.ssh.alive):
            self.ssh = SSHConnection(login, self.settings.ssh_args,
                                     self.settings.connect_timeout)
            await self.ssh.open()
            self._slurm = None

    async def new_job_dir(self, name: str | None) -> JobDir:
        """Create (0700) the kernel's job directory under ``job_root``."""
        root = self.settings.job_root
        if not root:
            home = await remote_home(self.ssh) if self.ssh is not None else str(Path.home())
            root = f"{home}/.hpckernel/jobs"
        job_dir = self.job_dir(f"{root}/{(name or uuid.uuid4().hex)[:8]}")
        await job_dir.create()
        return job_dir

    def job_dir(self, path: str) -> JobDir:
        """An existing job directory, reached the way this process reaches the cluster."""
        return RemoteJobDir(self.ssh, path) if self.ssh is not None else LocalJobDir(Path(path))

    async def tunnel(self, hub: ChannelAddress, local: dict[str, int] | None = None
                     ) -> ChannelAddress:
        """Forward a loopback port here to each of the hub's ports (through the login
        node): the ports in ``local`` (a front end's connection file) where given, else
        those forwarded before, else free ones. The connection info clients use."""
        assert self.ssh is not None
        ports: dict[str, int] = {}
        for name in PORTS:
            remote = hub[name]
            wanted = (local or {}).get(name) or self.tunnels.get(remote)
            self.tunnels[remote] = await self.ssh.forward(hub["ip"], remote, wanted)
            ports[name] = self.tunnels[remote]
        self.hub_ip = hub["ip"]
        return channel_address("127.0.0.1", ports)

    async def restore_tunnels(self) -> None:
        """Forward the same local ports again (after a new master, or a re-attach)."""
        if self.ssh is not None:
            for remote, local in self.tunnels.items():
                await self.ssh.forward(self.hub_ip, remote, local)

    async def repair(self) -> bool | None:
        """Check the SSH master; rebuild a lost one with its tunnels on the same local
        ports, so that connected clients just reconnect. True once repaired (the caller
        checks the path end to end), None while fine or still reconnecting, False once
        the login node has been gone for longer than ``login_timeout``."""
        # A repair cut short (a shutdown's timeout) goes on where it stopped: the master
        # may be back before its tunnels are.
        if self.ssh is None or (self.ssh.alive and self.lost_at is None):
            return None
        now = time.monotonic()
        if self.lost_at is None:
            self.lost_at = now
            self.log.warning("lost the SSH connection to %s; reconnecting",
                             self.settings.login)
        try:
            await self.open()
            await self.restore_tunnels()
        except PortTakenError as e:
            self.log.error("%s", e)
            return False
        except (LoginError, SlurmError) as e:
            if now - self.lost_at > self.settings.login_timeout:
                self.log.error("the login node %s has been unreachable for %.0f s: %s",
                               self.settings.login, now - self.lost_at, e)
                return False
            return None
        self.log.warning("SSH connection to %s restored after %.1f s; the tunnels are back",
                         self.settings.login, time.monotonic() - self.lost_at)
        self.lost_at = None
        return True

    async def close(self) -> None:
        """End the master connection, and with it every tunnel."""
        ssh, self.ssh = self.ssh, None
        self._slurm = None
        if ssh is not None:
            await ssh.close()
