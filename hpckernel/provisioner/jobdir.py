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
from pathlib import Path

from ..plane.credentials import write_private


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
