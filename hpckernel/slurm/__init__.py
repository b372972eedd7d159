"""Thin async wrapper over the Slurm command-line tools; the one place that parses them.

Users: the Slurm kernel provisioner, the job magics (%squeue, %%sbatch, %scancel, %sacct)
and the workflow module. Start from `Slurm` (in `jobs.py`); `parse.py` holds the parsers and
`runner.py` the `CommandRunner` that actually runs commands; `poller.py` follows jobs for
the whole process with few, filtered queries, and `wait.py` waits for a job's state through
it; `limits.py` checks a request against its partition before it is submitted. Sync code
uses `jobcontrol` (`submit(script, *options) -> Job`) on the private loop of `sync`.
"""

from .errors import (
    ParseError,
    SlurmBusyError,
    SlurmError,
    SlurmNotFoundError,
    SlurmTimeoutError,
    SubmitError,
)
from .jobcontrol import Job, submit
from .jobs import Slurm
from .limits import check_partition, check_request
from .models import ENDED_STATES, PENDING_STATES, RUNNING_STATES, JobInfo, PartitionInfo
from .parse import format_duration, parse_duration
from .poller import Poller, Snapshot, Watch
from .runner import CommandResult, CommandRunner, LocalRunner
from .wait import wait_gone, wait_state

__all__ = [
    "ENDED_STATES",
    "PENDING_STATES",
    "RUNNING_STATES",
    "CommandResult",
    "CommandRunner",
    "Job",
    "JobInfo",
    "LocalRunner",
    "ParseError",
    "PartitionInfo",
    "Poller",
    "Slurm",
    "SlurmBusyError",
    "SlurmError",
    "SlurmNotFoundError",
    "SlurmTimeoutError",
    "Snapshot",
    "SubmitError",
    "Watch",
    "check_partition",
    "check_request",
    "format_duration",
    "parse_duration",
    "submit",
    "wait_gone",
    "wait_state",
]
