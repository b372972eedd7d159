"""Typed records for what Slurm reports: `JobInfo` and `PartitionInfo`, plus job-state sets.

Built only by `hpckernel.slurm.parse` (from squeue, scontrol or sacct output) and returned by
`hpckernel.slurm.jobs.Slurm`. Users are the Slurm provisioner (pending state, reasons,
nodes of the allocation), the job magics and the dashboard (walltime left).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                            "CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
# Base states of jobs that will not run again (short codes CA, CD, F, TO, NF, OOM, ...).
ENDED_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED",
                          "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
                          "TIMEOUT"})


@dataclass(frozen=True)
class JobInfo:
    """One job as Slurm's controller (squeue/scontrol) or its database (sacct) describes it.

    Fields Slurm did not report are None. `source` says which command it came from, because
    each knows different things: sacct has no stdout path and reports 0:0 as the exit code of
    cancelled and timed-out jobs, where scontrol shows the signal (0:15).
    """

    job_id: str
    state: str
    """Base state in upper case, e.g. "PENDING", "RUNNING", "CANCELLED" ("CANCELLED by 0" ->
    "CANCELLED")."""
    source: str
    """"squeue", "scontrol" or "sacct"."""
    name: str = ""
    user: str = ""
    partition: str = ""
    reason: str | None = None
    """Why a job is pending or ended the way it did ("Resources", "Priority", "TimeLimit",
    "NonZeroExitCode"); None when Slurm says "None". scontrol gives the long description
    here instead of the code when there is one, with underscores for spaces."""
    reason_text: str | None = None
    """Slurm's longer explanation in plain words, when it gives one; show
    `reason_text or reason` to people."""
    nodelist: str = ""
    """Compressed host list as Slurm prints it ("n[1-3]"); empty while pending."""
    nodes: tuple[str, ...] = ()
    """`nodelist` expanded ("n1", "n2", "n3"), filled in by `Slurm` through
    `scontrol show hostnames`; the parsers leave it empty."""
    node_count: int | None = None
    exit_code: int | None = None
    """Exit status of the batch script (or of the job, from sacct)."""
    signal: int | None = None
    """Signal that ended it (9 for `0:9`), 0 if none."""
    time_limit: timedelta | None = None
    """None means no limit (UNLIMITED) or not known."""
    submit_time: datetime | None = None
    start_time: datetime | None = None
    """Actual start, or Slurm's estimate while pending; None if unknown."""
    end_time: datetime | None = None
    """Actual end once ended; while running, when the time limit runs out."""
    workdir: str | None = None
    stdout: str | None = None
    """Path of the job's standard output file; None if Slurm did not say (sacct)."""

    @property
    def pending(self) -> bool:
        """Whether the job waits in the queue (PENDING and its like)."""
        return self.state in PENDING_STATES

    @property
    def running(self) -> bool:
        """Whether the job runs (RUNNING, COMPLETING, …)."""
        return self.state in RUNNING_STATES

    @property
    def ended(self) -> bool:
        """Whether the job has ended, whichever way."""
        return self.state in ENDED_STATES

    def time_left(self, now: datetime | None = None) -> timedelta | None:
        """Walltime left of a running job; None if it is not running or has no limit."""
        if not self.running or self.time_limit is None or self.start_time is None:
            return None
        now = now or datetime.now().astimezone()
        return max(timedelta(0), self.start_time + self.time_limit - now)


@dataclass(frozen=True)
class PartitionInfo:
    """Limits of one partition, from `scontrol show partition -o`.

    Used to check a request before submitting (see `hpckernel.slurm.limits`),
    because a site may accept an over-limit job and leave it pending forever with reason
    PartitionTimeLimit instead of refusing it.
    """

    name: str
    state: str
    """"UP", "DOWN", "DRAIN" or "INACTIVE"."""
    default: bool
    nodelist: str
    total_nodes: int
    total_cpus: int
    max_time: timedelta | None
    """None: no limit."""
    default_time: timedelta | None
    """None: not set (jobs without --time get max_time)."""
    max_nodes: int | None
    """None: no limit beyond the partition's size."""
    min_nodes: int
