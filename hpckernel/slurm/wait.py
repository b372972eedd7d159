"""Waiting for a job to reach a state, or to end, through the process's `Poller`.

The waits share the poller's rounds with every other follower of the process (widgets,
workflows, kernel starts), so a wait costs no Slurm command of its own; they start with a
fresh look and back off from `interval` (default: the `Slurm`'s `poll_interval`) to its
`max_poll_interval` while nothing changes.
"""

from __future__ import annotations

from collections.abc import Collection

from .errors import SlurmError
from .jobs import Slurm
from .models import JobInfo
from .poller import Poller


async def wait_state(slurm: Slurm, job_id: str, states: Collection[str], timeout: float,
                     interval: float | None = None) -> JobInfo:
    """Wait until the job is in one of `states` (e.g. {"RUNNING"}) and return it.

    Raises `SlurmError` if the job ends in another state or is unknown, and
    `SlurmTimeoutError` (naming its last state and reason) after `timeout` seconds.
    """
    wanted = {s.upper() for s in states}

    def done(info: JobInfo | None) -> bool:
        if info is None:
            raise SlurmError(f"job {job_id} is unknown to Slurm (not in squeue or sacct)")
        if info.state in wanted:
            return True
        if info.ended:
            raise SlurmError(f"job {job_id} ended as {info.state} "
                             f"(reason {info.reason}, exit code {info.exit_code}:"
                             f"{info.signal}) while waiting for {'/'.join(sorted(wanted))}")
        return False

    def late(info: JobInfo | None) -> str:
        assert info is not None
        return (f"job {job_id} still {info.state} (reason {info.reason}) after "
                f"{timeout:g} s waiting for {'/'.join(sorted(wanted))}")

    info = await Poller.of(slurm).wait_for(str(job_id), done, timeout, late,
                                           interval=interval or slurm.poll_interval,
                                           max_interval=slurm.max_poll_interval)
    assert info is not None
    return info


async def wait_gone(slurm: Slurm, job_id: str, timeout: float, interval: float | None = None
                    ) -> JobInfo | None:
    """Wait until the job has ended (or is unknown) and return its last state.

    Raises `SlurmTimeoutError` if it is still pending, running or completing after
    `timeout` seconds.
    """

    def late(info: JobInfo | None) -> str:
        state = info.state if info is not None else "unknown"
        return f"job {job_id} still {state} after {timeout:g} s"

    return await Poller.of(slurm).wait_for(
        str(job_id), lambda info: info is None or info.ended, timeout, late,
        interval=interval or slurm.poll_interval, max_interval=slurm.max_poll_interval)
