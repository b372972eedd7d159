"""A step's state, read from what Slurm reports about its job (never guessed).

`classify` turns a `JobInfo` (from squeue, scontrol or sacct) into one of the step states
below; `StepStatus` is what the engine keeps per step and the views show.

Failed dependencies: every step is submitted with `--kill-on-invalid-dep=yes`, so when a step
fails Slurm cancels the steps after it with reason `DependencyNeverSatisfied` instead of
leaving them pending forever (Slurm's default). Such a step is "never-run", not "cancelled".
sacct only keeps the last pending reason ("Dependency"), so a state classified while
scontrol still knew the job is kept in the workflow file and wins over sacct's vaguer record.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpckernel.slurm import JobInfo

NOT_SUBMITTED = "not submitted"
HELD = "held"
"""Pending with a user hold: a gate waiting for `approve`."""
WAITING = "waiting"
"""Pending until the steps it comes after complete."""
PENDING = "pending"
"""Eligible, queued for resources or priority."""
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
NEVER_RUN = "never-run"
"""A step it depends on failed: Slurm's DependencyNeverSatisfied."""
UNKNOWN = "unknown"
"""Slurm no longer knows the job (purged from the controller, no accounting)."""

ACTIVE = frozenset({HELD, WAITING, PENDING, RUNNING})
ENDED = frozenset({COMPLETED, FAILED, CANCELLED, NEVER_RUN, UNKNOWN})
UNSUCCESSFUL = frozenset({FAILED, CANCELLED, NEVER_RUN})

COLOURS = {
    NOT_SUBMITTED: "#e0e0e0", HELD: "#ffca28", WAITING: "#cfd8dc", PENDING: "#90caf9",
    RUNNING: "#42a5f5", COMPLETED: "#66bb6a", FAILED: "#ef5350", CANCELLED: "#9e9e9e",
    NEVER_RUN: "#ffab91", UNKNOWN: "#f5f5f5",
}

_HOLDS = {"JobHeldUser", "JobHeldAdmin"}
_NEVER = "DependencyNeverSatisfied"


def classify(info: JobInfo | None, recorded: str | None = None,
             recorded_slurm_state: str | None = None) -> str:
    """The step state for a job Slurm describes as `info` (None: Slurm does not know it).

    `recorded` is the step state last written to the workflow file for the same job, and
    `recorded_slurm_state` the Slurm state it was classified from.
    """
    if info is None:
        return recorded if recorded in ENDED else UNKNOWN
    if info.ended and recorded in ENDED and recorded_slurm_state == info.state:
        return recorded  # classified from fresher information than sacct keeps
    if info.pending:
        if info.reason in _HOLDS:
            return HELD
        if info.reason == _NEVER:
            return NEVER_RUN  # only without --kill-on-invalid-dep; it would wait forever
        return WAITING if info.reason == "Dependency" else PENDING
    if info.running:
        return RUNNING
    if info.state == "COMPLETED":
        return COMPLETED
    if info.state == "CANCELLED":
        never = info.reason == _NEVER or (info.source == "sacct" and info.reason == "Dependency"
                                          and info.start_time is None)
        return NEVER_RUN if never else CANCELLED
    if info.ended:
        return FAILED
    return PENDING  # a state this module does not know yet: still in the queue


@dataclass(frozen=True)
class StepStatus:
    """A step's state as of the last refresh, with what a person needs to understand it."""

    name: str
    kind: str
    state: str
    job_id: str | None = None
    info: JobInfo | None = None
    detail: str = ""
    """One line: why it waits, how it ended ("FAILED, exit 3"), the gate's note."""

    @property
    def active(self) -> bool:
        """Whether the step's job is queued, held or running."""
        return self.state in ACTIVE

    @property
    def ended(self) -> bool:
        """Whether the step's job has ended (or it never will run)."""
        return self.state in ENDED


def describe(status_state: str, info: JobInfo | None, *, note: str = "",
             waiting_for: str = "") -> str:
    """The one-line `StepStatus.detail` for a step in `status_state`."""
    if status_state == HELD:
        return f"waiting for approval: {note}" if note else "waiting for approval"
    if status_state == WAITING:
        return f"waits for {waiting_for}" if waiting_for else "waits for its dependencies"
    if info is None:
        return ""
    where = f" on {','.join(info.nodes) or info.nodelist}" if info.nodelist else ""
    if status_state == PENDING:
        return f"queued ({info.reason_text or info.reason or 'scheduling'})"
    if status_state == RUNNING:
        return f"job {info.job_id}{where}"
    if status_state == NEVER_RUN:
        return "DependencyNeverSatisfied: a step before it did not complete"
    if status_state in (FAILED, CANCELLED):
        code = f", exit {info.exit_code}:{info.signal}" if info.exit_code is not None else ""
        reason = f" ({info.reason})" if info.reason else ""
        return f"{info.state}{code}{reason}{where}"
    if status_state == COMPLETED:
        return f"job {info.job_id}{where}"
    return info.state
