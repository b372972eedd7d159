"""How a notebook reaches a live job's endpoint: its ``live.json`` read where the job's
files are (here, or on the login node through the Slurm kernel's SSH machinery,
``provisioner/access.py``), and an SSH tunnel to the endpoint's address when there is a
login node. Async; ``client.py`` runs it on hpckernel's background loop."""

from __future__ import annotations

import asyncio
import logging

from ..jobrequest import JobSettings
from ..plane.private import check_private_dir
from ..provisioner.access import ClusterAccess
from ..provisioner.jobdir import remote_home
from .files import JOB_ROOT_ENV, LIVE_FILE, LiveInfo, live_dir, newest_step, parse_live_info


class NotLiveError(LookupError):
    """The job has no live endpoint (not started with ``python -m hpckernel.live``, not
    running yet, or already ended)."""


def _not_live(job: str, where: str) -> NotLiveError:
    return NotLiveError(
        f"job {job} has no live endpoint in {where}: is it running, and does it run its "
        f"program with `srun python -m hpckernel.live SCRIPT`? (another job root: "
        f"hpckernel.attach(..., job_root=...) or ${JOB_ROOT_ENV})")


async def find_local(job: str, root: str | None) -> LiveInfo:
    """The job's ``live.json`` on this machine's file systems."""
    base = live_dir(job, "0", root).parent
    names = await asyncio.to_thread(lambda: [p.name for p in base.iterdir()]
                                    if base.is_dir() else [])
    step = newest_step(names, job)
    if step is None:
        raise _not_live(job, str(base))
    directory = live_dir(job, step, root)
    check_private_dir(directory)  # a directory another user planted is not believed
    try:
        return parse_live_info(await asyncio.to_thread((directory / LIVE_FILE).read_text))
    except FileNotFoundError:
        raise _not_live(job, str(directory)) from None


class LoginRoute:
    """The SSH master to the login node and the tunnel to one endpoint."""

    def __init__(self, login: str, ssh_args: list[str]) -> None:
        self.access = ClusterAccess(JobSettings(login=login, ssh_args=ssh_args),
                                    logging.getLogger("hpckernel.live.client"))

    async def find(self, job: str, root: str | None) -> LiveInfo:
        await self.access.open()
        ssh = self.access.ssh
        assert ssh is not None
        base = root or f"{await remote_home(ssh)}/.hpckernel/jobs"
        listing = await ssh.run(["ls", "-1", base], timeout=30)
        step = newest_step(listing.stdout.split(), job)
        if step is None:
            raise _not_live(job, f"{base} on {self.access.settings.login}")
        directory = str(live_dir(job, step, base))
        # Read as the user on the login node; the 0700/0600 modes keep others out there.
        text = await self.access.job_dir(directory).read(LIVE_FILE)
        if text is None:
            raise _not_live(job, f"{directory} on {self.access.settings.login}")
        return parse_live_info(text)

    async def tunnel(self, url: str) -> str:
        """A loopback URL here that reaches ``url`` (tcp://host:port) from the login node."""
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        assert self.access.ssh is not None
        local = await self.access.ssh.forward(host, int(port))
        return f"tcp://127.0.0.1:{local}"

    async def close(self) -> None:
        await self.access.close()
