"""The kernel's job directory on the cluster: where the provisioner and the batch job meet.

It must be readable by the compute nodes (a shared home or scratch file system). Files:
``launch.json`` (the connection file with the key, ports 0, written 0600 by the
provisioner), ``connection.json`` (the same after the hub bound its ports), ``hub.exit``,
``restart``, ``stop`` (markers), ``slurm-<id>.out`` (the job's output), the hub's plane files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path, PurePosixPath

from ..plane.credentials import write_private
from ..slurm import CommandResult
from .ssh import LoginError, SSHConnection, explain_ssh_failure


class LocalJobDir:
    """A job directory on a file system this process can reach directly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    async def create(self) -> None:
        """Make the directory 0700 (before any secret is written into it)."""
        await asyncio.to_thread(_make_private_dir, self.path)

    async def write_private(self, name: str, text: str) -> None:
        await asyncio.to_thread(write_private, self.path / name, text)

    async def read(self, name: str) -> str | None:
        """The file's text, or None if it does not exist."""
        try:
            return await asyncio.to_thread((self.path / name).read_text)
        except FileNotFoundError:
            return None

    async def touch(self, name: str) -> None:
        await asyncio.to_thread((self.path / name).touch)

    async def remove(self, name: str) -> None:
        await asyncio.to_thread((self.path / name).unlink, True)

    async def delete(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.path, True)


def _make_private_dir(path: Path) -> None:
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)
    path.chmod(0o700)


class RemoteJobDir:
    """The same operations on the login node, through the kernel's SSH connection.

    Contents travel on stdin and stdout, never on a command line."""

    def __init__(self, connection: SSHConnection, path: str) -> None:
        self.connection = connection
        self.path = PurePosixPath(path)

    def __str__(self) -> str:
        return str(self.path)

    async def _sh(self, script: str, name: str = "", input: bytes | None = None
                  ) -> CommandResult:
        target = str(self.path / name) if name else str(self.path)
        result = await self.connection.run(["sh", "-c", script, "sh", target], input=input,
                                           timeout=self.connection.connect_timeout + 10)
        if result.returncode == 255:
            raise LoginError(explain_ssh_failure(self.connection.destination, result.stderr))
        return result

    async def _check(self, script: str, name: str = "", input: bytes | None = None) -> None:
        result = await self._sh(script, name, input)
        if not result.ok:
            raise OSError(f"on {self.connection.destination}: {result.stderr.strip()}")

    async def create(self) -> None:
        await self._check('umask 077 && mkdir -p "$1" && chmod 700 "$1"')

    async def write_private(self, name: str, text: str) -> None:
        await self._check('umask 077 && cat > "$1.tmp" && mv -f "$1.tmp" "$1"', name,
                          text.encode())

    async def read(self, name: str) -> str | None:
        result = await self._sh('[ -e "$1" ] || exit 3; cat "$1"', name)
        if result.returncode == 3:
            return None
        if not result.ok:
            raise OSError(f"on {self.connection.destination}: {result.stderr.strip()}")
        return result.stdout

    async def touch(self, name: str) -> None:
        await self._check('touch "$1"', name)

    async def remove(self, name: str) -> None:
        await self._check('rm -f "$1"', name)

    async def delete(self) -> None:
        await self._check('rm -rf "$1"')


async def remote_home(connection: SSHConnection) -> str:
    """The login node's $HOME, where job directories go by default."""
    result = await connection.run(["sh", "-c", 'printf %s "$HOME"'],
                                  timeout=connection.connect_timeout + 10)
    if not result.ok or not result.stdout.startswith("/"):
        raise LoginError(explain_ssh_failure(connection.destination, result.stderr))
    return result.stdout


JobDir = LocalJobDir | RemoteJobDir
