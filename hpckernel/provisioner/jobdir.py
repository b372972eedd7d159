"""The kernel's job directory on the cluster: where the provisioner and the batch job meet.

It must be readable by the compute nodes (a shared home or scratch file system). Files:
``hub-start.json`` (:data:`HUB_START_FILE`: the connection file the next hub starts from,
with the key, written 0600 by the provisioner; the batch script waits for it),
``connection.json`` (the same after the hub bound its ports), ``hub.exit``, ``restart``,
``stop`` (markers), ``slurm-<id>.out`` (the job's output), the hub's plane files.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path, PurePosixPath

from ..plane.private import make_private_dir, write_private
from ..slurm import CommandResult
from .errors import LoginError
from .ssh import SSHConnection, explain_ssh_failure

#: The connection file the next hub starts from: the key and CurveZMQ keys, with ports 0
#: for a new job or the old ports for a restart in it. ``launcher/slurm-job.sh`` starts a
#: hub whenever this file appears, renaming it :data:`CONNECTION_FILE`.
HUB_START_FILE = "hub-start.json"
#: The hub's connection file, rewritten by the hub once it has bound its ports.
CONNECTION_FILE = "connection.json"


class LocalJobDir:
    """A job directory on a file system this process can reach directly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    async def create(self) -> None:
        """Make the directory 0700 (before any secret is written into it); refuse one that
        another user could change (``UnsafeDirectoryError``)."""
        await asyncio.to_thread(make_private_dir, self.path)

    async def write_private(self, name: str, text: str) -> None:
        """Write a file only the user can read (0600), never through a planted link."""
        await asyncio.to_thread(write_private, self.path / name, text)

    async def read(self, name: str) -> str | None:
        """The file's text, or None if it does not exist."""
        try:
            return await asyncio.to_thread((self.path / name).read_text)
        except FileNotFoundError:
            return None

    async def touch(self, name: str) -> None:
        """Create a marker file (``stop``, ``restart``)."""
        await asyncio.to_thread((self.path / name).touch)

    async def remove(self, name: str) -> None:
        """Remove a file; a missing one is no error."""
        await asyncio.to_thread((self.path / name).unlink, True)

    async def delete(self) -> None:
        """Remove the directory with everything in it."""
        await asyncio.to_thread(shutil.rmtree, self.path, True)


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
        """The same checks as ``LocalJobDir.create``, by the login node's shell."""
        await self._check(_MAKE_PRIVATE_DIR)

    async def write_private(self, name: str, text: str) -> None:
        """``LocalJobDir.write_private`` on the login node: the text travels on stdin."""
        # set -C: the fresh file is created O_EXCL (a planted link is not followed).
        await self._check('umask 077 && set -C && t="$1.$$.tmp" && cat > "$t" && '
                          'mv -f "$t" "$1"', name, text.encode())

    async def read(self, name: str) -> str | None:
        """The file's text, or None if it does not exist."""
        result = await self._sh('[ -e "$1" ] || exit 3; cat "$1"', name)
        if result.returncode == 3:
            return None
        if not result.ok:
            raise OSError(f"on {self.connection.destination}: {result.stderr.strip()}")
        return result.stdout

    async def touch(self, name: str) -> None:
        """Create a marker file (``stop``, ``restart``)."""
        await self._check('touch "$1"', name)

    async def remove(self, name: str) -> None:
        """Remove a file; a missing one is no error."""
        await self._check('rm -f "$1"', name)

    async def delete(self) -> None:
        """Remove the directory with everything in it."""
        await self._check('rm -rf "$1"')


#: ``make_private_dir`` in POSIX sh (and GNU stat), for job directories on a login node.
_MAKE_PRIVATE_DIR = r"""
umask 077
case $1 in /*) dir=$1 ;; *) dir=$PWD/$1 ;; esac
mkdir -p "$dir" || exit 1
me=$(id -u)
if [ -L "$dir" ] || [ ! -d "$dir" ] || [ "$(stat -c %u "$dir")" != "$me" ]; then
    echo "$dir is not a directory of yours: remove it, or choose another job directory" >&2
    exit 1
fi
chmod 700 "$dir" || exit 1
real=$(cd -P "$dir" && pwd) || exit 1
for start in "$dir" "$real"; do
    p=$start
    while :; do
        info=$(stat -L -c '%u %a' "$p") || exit 1
        set -- $info
        if [ "$1" != "$me" ] && [ "$1" != 0 ]; then
            echo "$p belongs to user $1, who could replace what is in it and read the" \
                 "kernel's keys: choose a SlurmProvisioner.job_root of your own" >&2
            exit 1
        fi
        if [ $((0$2 & 022)) -ne 0 ] && [ $((0$2 & 01000)) -eq 0 ]; then
            echo "$p is writable by other users (mode $2) without the sticky bit: they" \
                 "could swap the job directory and read the kernel's keys; run" \
                 "chmod go-w $p, or choose another SlurmProvisioner.job_root" >&2
            exit 1
        fi
        [ "$p" = / ] && break
        p=$(dirname "$p")
    done
done
"""


async def remote_home(connection: SSHConnection) -> str:
    """The login node's $HOME, where job directories go by default."""
    result = await connection.run(["sh", "-c", 'printf %s "$HOME"'],
                                  timeout=connection.connect_timeout + 10)
    if not result.ok or not result.stdout.startswith("/"):
        raise LoginError(explain_ssh_failure(connection.destination, result.stderr))
    return result.stdout


JobDir = LocalJobDir | RemoteJobDir
