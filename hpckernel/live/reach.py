"""How a notebook reaches a live job's endpoint: first Slurm's word on the job (through the
process's one poller: unknown, pending, ended, another user's), then its ``live.json`` read
where the job's files are (here, or on the login node through the Slurm kernel's SSH
machinery, ``provisioner/access.py``), and an SSH tunnel to the endpoint's address when
there is a login node. Async; ``client.py`` runs it on hpckernel's background loop."""

from __future__ import annotations

import asyncio
import getpass
import logging
import time
from datetime import datetime

from ..jobrequest import JobSettings
from ..plane.private import UnsafeDirectoryError, check_private_dir
from ..provisioner.access import ClusterAccess
from ..provisioner.jobdir import remote_home
from ..slurm import (
    RUNNING_STATES,
    JobInfo,
    Poller,
    Slurm,
    SlurmError,
    SlurmTimeoutError,
    wait_state,
)
from .errors import JobEnded, NotLiveError, NotYoursError
from .files import JOB_ROOT_ENV, LIVE_FILE, LiveInfo, live_dir, newest_step, parse_live_info

#: A job that started less than this many seconds ago may not have written live.json yet.
YOUNG = 60.0
#: Seconds to wait for the live.json of such a job.
LIVE_WAIT = 15.0


def _not_live(job: str, where: str) -> NotLiveError:
    return NotLiveError(
        f"job {job} is not live: no live endpoint in {where}. Does it run its program with "
        f"`srun python -m hpckernel.live SCRIPT`? (another job root: "
        f"hpckernel.attach(..., job_root=...) or ${JOB_ROOT_ENV})")


def is_slurm_id(job: str) -> bool:
    """Whether ``job`` can be a Slurm job id (an mpiexec run's live id is not)."""
    return job.replace("_", "").isdigit()


async def slurm_says(slurm: Slurm, job: str, user: str | None, wait: float = 0.0
                     ) -> JobInfo | None:
    """The job as Slurm sees it, raising what makes attaching pointless: unknown, pending,
    ended, or (``user``: the attaching user, when known) someone else's; a pending job is
    waited for up to ``wait`` seconds (through the poller) to run. None where Slurm
    cannot be asked (a run with mpiexec, outside Slurm, has a live id of its own, not
    numbered as Slurm's jobs are)."""
    if not is_slurm_id(job):
        return None
    try:
        info = (await Poller.of(slurm).fetch([job])).jobs.get(job)
    except (SlurmError, OSError):
        return None
    if info is None:
        raise NotLiveError(f"job {job} is unknown to Slurm (neither squeue nor sacct knows "
                           "it): check the job id")
    if user and info.user and info.user != user:
        raise NotYoursError(f"job {job} belongs to {info.user}: only its owner can attach "
                            "to it (its keys are readable by that user alone)")
    if info.ended:
        raise JobEnded(job, info.state, info.reason_text or info.reason or "")
    if info.pending and wait > 0:
        try:
            info = await wait_state(slurm, job, RUNNING_STATES, wait)
        except SlurmTimeoutError:
            pass  # still pending: said below
        except SlurmError as e:  # it ended meanwhile
            raise NotLiveError(str(e)) from None
    if info.pending:
        raise NotLiveError(f"job {job} is {info.state} ({info.reason_text or info.reason}):"
                           " it is not running yet; attach once it runs (or with wait=S)")
    return info


def _young(info: JobInfo | None) -> bool:
    start = info.start_time if info is not None else None
    return start is not None and (datetime.now().astimezone() - start).total_seconds() < YOUNG


async def find_local(job: str, root: str | None, wait: float = 0.0
                     ) -> tuple[LiveInfo, JobInfo | None]:
    """The job's ``live.json`` on this machine's file systems, and Slurm's word on it
    (``wait``: seconds a job not running or not live yet is waited for)."""
    started = time.monotonic()
    info = await slurm_says(Slurm(), job, getpass.getuser(), wait)
    deadline = max(started + wait, time.monotonic() + (LIVE_WAIT if _young(info) else 0.0))
    base = live_dir(job, "0", root).parent
    while True:
        names = await asyncio.to_thread(lambda: [p.name for p in base.iterdir()]
                                        if base.is_dir() else [])
        step = newest_step(names, job)
        if step is not None:
            directory = live_dir(job, step, root)
            try:
                check_private_dir(directory)  # a directory another user planted: not believed
                text = await asyncio.to_thread((directory / LIVE_FILE).read_text)
                return parse_live_info(text), info
            except (UnsafeDirectoryError, PermissionError):
                raise NotYoursError(f"job {job}'s live files in {directory} are not yours: "
                                    "only the job's owner can attach") from None
            except FileNotFoundError:
                pass  # being written, or removed as the job ended
        if time.monotonic() >= deadline:
            raise _not_live(job, str(base))
        await asyncio.sleep(0.2)


class LoginRoute:
    """The SSH master to the login node and the tunnel to one endpoint."""

    def __init__(self, login: str, ssh_args: list[str]) -> None:
        self.access = ClusterAccess(JobSettings(login=login, ssh_args=ssh_args),
                                    logging.getLogger("hpckernel.live.client"))

    async def find(self, job: str, root: str | None, wait: float = 0.0
                   ) -> tuple[LiveInfo, JobInfo | None]:
        """The job's ``live.json``, read on the login node as the user there (the 0700 and
        0600 modes keep other users out), and Slurm's word on the job (``wait``: as for
        :func:`find_local`)."""
        await self.access.open()
        ssh = self.access.ssh
        assert ssh is not None
        started = time.monotonic()
        info = await slurm_says(self.access.slurm, job, None, wait)
        deadline = max(started + wait,
                       time.monotonic() + (LIVE_WAIT if _young(info) else 0.0))
        base = root or f"{await remote_home(ssh)}/.hpckernel/jobs"
        login = self.access.settings.login
        while True:
            listing = await ssh.run(["ls", "-1", base], timeout=30)
            step = newest_step(listing.stdout.split(), job)
            if step is not None:
                directory = str(live_dir(job, step, base))
                try:
                    text = await self.access.job_dir(directory).read(LIVE_FILE)
                except OSError:
                    raise NotYoursError(f"job {job}'s live files in {directory} on {login} "
                                        "cannot be read: only the job's owner can attach"
                                        ) from None
                if text is not None:
                    return parse_live_info(text), info
            if time.monotonic() >= deadline:
                raise _not_live(job, f"{base} on {login}")
            await asyncio.sleep(0.5)

    async def tunnel(self, url: str) -> str:
        """A loopback URL here that reaches ``url`` (tcp://host:port) from the login node."""
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        assert self.access.ssh is not None
        local = await self.access.ssh.forward(host, int(port))
        return f"tcp://127.0.0.1:{local}"

    async def close(self) -> None:
        """Close the tunnel and the SSH connection to the login node (the job's detach)."""
        await self.access.close()
