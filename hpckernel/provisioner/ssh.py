"""Reaching the cluster through a login node: one OpenSSH master connection per kernel.

Every Slurm command, every job-directory file operation and every channel tunnel of a
kernel goes through one ControlMaster connection (its socket in a private 0700 directory),
so a kernel start costs one SSH handshake. The user's own ``ssh`` does the work: their
``~/.ssh/config`` aliases, jump hosts, keys and agent apply. Host keys are always checked
(``StrictHostKeyChecking=yes``); no password prompt is ever shown (``BatchMode=yes``).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import shutil
import socket
from collections.abc import Mapping, Sequence

import psutil

from ..plane import make_job_dir
from ..slurm import CommandResult, CommandRunner, LocalRunner, SlurmError, SlurmNotFoundError
from .errors import LoginError, PortTakenError

log = logging.getLogger(__name__)


def explain_ssh_failure(destination: str, stderr: str) -> str:
    """Turn ssh's stderr into one actionable sentence."""
    text = stderr.strip()
    if "Host key verification failed" in text or "No ED25519 host key is known" in text or (
            "host key" in text.lower() and "known" in text.lower()):
        why = (f"the host key of {destination} is unknown or has changed: connect once "
               f"with `ssh {destination}` yourself and check the fingerprint")
    elif "Permission denied" in text:
        why = (f"{destination} refused the login (no accepted key): check that "
               f"`ssh {destination}` works without a password (ssh-agent or IdentityFile)")
    elif "Could not resolve hostname" in text:
        why = f"the host name of {destination} does not resolve"
    elif "Connection refused" in text or "Connection timed out" in text or (
            "timed out" in text):
        why = f"{destination} did not accept an SSH connection"
    else:
        why = f"ssh to {destination} failed"
    return f"{why}\nssh said: {text}" if text else why


class SSHConnection:
    """The kernel's master connection to ``destination`` (anything ``ssh`` accepts)."""

    def __init__(self, destination: str, ssh_args: Sequence[str] = (),
                 connect_timeout: float = 20.0, ssh: str = "ssh") -> None:
        self.destination = destination
        self.ssh_args = list(ssh_args)
        self.connect_timeout = connect_timeout
        self.ssh = ssh
        self.master: asyncio.subprocess.Process | None = None
        self._dir = make_job_dir()  # short: socket paths must stay under ~104 bytes
        self.control_path = str(self._dir / "cm")
        self._local = LocalRunner()

    def _base(self) -> list[str]:
        return [self.ssh, "-S", self.control_path, *self.ssh_args,
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                # Keepalives: idle tunnels stay up for hours, a dead link is noticed.
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]

    @property
    def alive(self) -> bool:
        """Whether the master process still runs (asked of the OS: an event loop that is
        not running would not have reaped it yet)."""
        if self.master is None or self.master.returncode is not None:
            return False
        try:
            return psutil.Process(self.master.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    async def open(self) -> None:
        """Start the master connection; raises LoginError with ssh's reason."""
        if shutil.which(self.ssh) is None:
            raise LoginError(f"`{self.ssh}` not found: install the OpenSSH client "
                             "(Debian: apt-get install openssh-client)")
        self.master = await asyncio.create_subprocess_exec(
            *self._base(), "-M", "-N", "-o", "ControlPersist=no", self.destination,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        deadline = asyncio.get_running_loop().time() + self.connect_timeout + 5
        while asyncio.get_running_loop().time() < deadline:
            if self.master.returncode is not None:
                break
            check = await self._control("check")
            if check.ok:
                log.info("SSH master connection to %s is up", self.destination)
                return
            try:
                await asyncio.wait_for(self.master.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        stderr = b""
        if self.master.returncode is not None and self.master.stderr is not None:
            stderr = await self.master.stderr.read()
        await self.close()
        raise LoginError(explain_ssh_failure(self.destination, stderr.decode(errors="replace")
                                             or "no connection within the connect timeout"))

    async def _control(self, command: str, *args: str) -> CommandResult:
        return await self._local.run([*self._base(), "-O", command, *args, self.destination],
                                     timeout=self.connect_timeout)

    def command(self, argv: Sequence[str]) -> list[str]:
        """The local command that runs ``argv`` on the login node through the master."""
        return [*self._base(), self.destination, "--", shlex.join(argv)]

    async def run(self, argv: Sequence[str], *, input: bytes | None = None,
                  timeout: float) -> CommandResult:
        """Run ``argv`` on the login node (through the master) and return its result."""
        return await self._local.run(self.command(argv), input=input, timeout=timeout)

    async def spawn(self, argv: Sequence[str], output: int | None = None
                    ) -> asyncio.subprocess.Process:
        """Start ``argv`` on the login node and leave it running (stdin is a pipe)."""
        return await asyncio.create_subprocess_exec(
            *self.command(argv), stdin=asyncio.subprocess.PIPE, stdout=output,
            stderr=output)

    async def forward(self, remote_host: str, remote_port: int,
                      local_port: int | None = None) -> int:
        """Forward a loopback port of this machine to ``remote_host:remote_port`` as seen
        from the login node; the local port."""
        port = local_port or free_local_port()
        if local_port is not None:
            # The port was ours before (a rebuilt master, or the front end's choice): in
            # the meantime someone else may have bound it.
            await asyncio.to_thread(self._check_port_free, port)
        spec = f"127.0.0.1:{port}:{remote_host}:{remote_port}"
        result = await self._control("forward", "-L", spec)
        if not result.ok and local_port is not None and self.alive:
            # The master is up and still cannot bind the port: someone holds it (perhaps
            # another user's process, which psutil cannot see).
            raise PortTakenError(f"cannot forward local port {port}, a tunnel of this "
                                 f"kernel, again: {result.stderr.strip()}; the kernel is "
                                 "stopped so that no client sends its messages elsewhere")
        if not result.ok:
            raise LoginError(f"cannot forward local port {port} to {remote_host}:"
                             f"{remote_port} through {self.destination}: "
                             f"{result.stderr.strip()}")
        return port

    def _check_port_free(self, port: int) -> None:
        owners = {c.pid for c in psutil.net_connections("tcp")
                  if c.status == psutil.CONN_LISTEN and c.laddr.port == port
                  and c.laddr.ip in ("127.0.0.1", "0.0.0.0", "::", "::1")}
        owners.discard(self.master.pid if self.master is not None else None)
        if owners:
            who = ", ".join("another user's process" if pid is None else f"process {pid}"
                            for pid in owners)
            raise PortTakenError(
                f"local port {port}, a tunnel of this kernel, is now held by {who}: the "
                "kernel is stopped so that no client sends its messages there; start it "
                "again (it gets new ports)")

    async def close(self) -> None:
        """End the master (and with it every tunnel) and remove its socket directory."""
        master, self.master = self.master, None
        if master is not None and master.returncode is None:
            await self._control("exit")
            try:
                await asyncio.wait_for(master.wait(), 5)
            except asyncio.TimeoutError:
                master.kill()
                await master.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def free_local_port() -> int:
    """A free TCP port on the loopback interface (the tunnels listen on loopback only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SSHRunner(CommandRunner):
    """Runs Slurm's commands on the login node, for ``hpckernel.slurm.Slurm``."""

    def __init__(self, connection: SSHConnection) -> None:
        self.connection = connection

    async def run(self, argv: Sequence[str], *, input: bytes | None = None,
                  timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
        # ``env`` is this machine's: on the login node commands have its own environment.
        """Run ``argv`` on the login node; an ssh failure is a `SlurmError` naming the host."""
        result = await self.connection.run(argv, input=input, timeout=timeout)
        if result.returncode == 255:  # ssh's own failure, not the command's
            raise SlurmError(explain_ssh_failure(self.connection.destination, result.stderr),
                             argv, result.stderr)
        if result.returncode == 127:
            raise SlurmNotFoundError(
                f"{argv[0]} not found on the login node {self.connection.destination}: is "
                "Slurm installed there, and on the PATH of non-interactive shells?", argv,
                result.stderr)
        return result
