"""What the hub knows of the Slurm job it runs in: id, nodes and when its walltime ends."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from ..slurm import JobInfo, Slurm, SlurmError

log = logging.getLogger(__name__)


@dataclass
class Allocation:
    """A Slurm job the hub's cells run in (the hub's own, or an attached live job's): its
    id, nodes, partition and walltime (``%ranks``, the dashboard, the provenance record)."""

    job_id: str
    nodelist: str = ""
    partition: str = ""
    end: float | None = None  # epoch seconds when the walltime runs out
    limit: float | None = None  # the job's walltime in seconds (the dashboard's bar)
    #: where its state is asked (a login node's Slurm for a job attached through one)
    slurm: Slurm | None = field(default=None, repr=False)

    @classmethod
    def of(cls, info: JobInfo, slurm: Slurm | None = None) -> Allocation:
        """The allocation of a job Slurm reported (an attached live job's)."""
        end = info.end_time.timestamp() if info.end_time is not None and info.running \
            else None
        limit = info.time_limit.total_seconds() if info.time_limit else None
        return cls(info.job_id, info.nodelist, info.partition, end, limit, slurm)

    @classmethod
    def from_environment(cls) -> Allocation | None:
        """The allocation this process runs in, or None outside Slurm."""
        job_id = os.environ.get("SLURM_JOB_ID")
        if not job_id:
            return None
        return cls(job_id, os.environ.get("SLURM_JOB_NODELIST", ""),
                   os.environ.get("SLURM_JOB_PARTITION", ""))

    async def refresh(self) -> None:
        """Ask Slurm for the end time (called once, from the plane thread's loop)."""
        try:
            info = await Slurm().job(self.job_id)
        except SlurmError as e:
            log.warning("cannot read Slurm job %s: %s", self.job_id, e)
            return
        if info is not None and info.end_time is not None and info.running:
            self.end = info.end_time.timestamp()
            self.limit = info.time_limit.total_seconds() if info.time_limit else None

    def time_left(self) -> float | None:
        """Seconds of walltime left (None without a known end)."""
        return None if self.end is None else max(0.0, self.end - time.time())

    def describe(self) -> str:
        """One line for ``%ranks``: the job, its partition, nodes and walltime left."""
        left = self.time_left()
        when = "" if left is None else f", {_clock(left)} of walltime left"
        where = f" on {self.nodelist}" if self.nodelist else ""
        part = f" (partition {self.partition})" if self.partition else ""
        return f"Slurm job {self.job_id}{part}{where}{when}"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
