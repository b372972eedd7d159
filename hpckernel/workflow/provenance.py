"""Provenance: one `Run` record per job a step was submitted as, kept in the workflow file.

A record is written when the job is submitted (command, script, versions, who and where) and
filled in from Slurm as the job goes on (state, nodes, start/end, exit code), so the
workflow file still says what ran where after Slurm has forgotten the job.
"""

from __future__ import annotations

import getpass
import platform
import socket
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import hpckernel
from hpckernel.slurm import JobInfo
from hpckernel.timestamps import iso


def _iso(value: datetime | None) -> str | None:
    return iso(value) if value else None


@dataclass
class Run:
    """One attempt of one step: a Slurm job and what is known about it."""

    job_id: str
    attempt: int
    submitted: str
    command: str
    """The sbatch command line (the script went on its standard input)."""
    script: str
    """The batch script as submitted."""
    job_name: str = ""
    """The job's name as Slurm first reported it: a job id that comes back with another
    name belongs to another job (Slurm's job ids restart after its state is wiped)."""
    user: str = field(default_factory=getpass.getuser)
    host: str = field(default_factory=socket.gethostname)
    python: str = field(default_factory=platform.python_version)
    hpckernel: str = hpckernel.__version__
    state: str = ""
    """Step state (see states.py), as last classified."""
    slurm_state: str | None = None
    reason: str | None = None
    nodes: list[str] = field(default_factory=list)
    start: str | None = None
    end: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    stdout: str | None = None
    approved: str | None = None
    """Gates: when and by whom ("2026-01-02T10:00:00+00:00 by alice")."""
    rejected: str | None = None
    note: str | None = None
    """Something hpckernel did to the job and why (e.g. released a gate that can never open)."""

    def update(self, state: str, info: JobInfo | None) -> bool:
        """Take in what Slurm now says; True if anything changed."""
        before = asdict(self)
        self.state = state
        if info is not None:
            if not self.job_name and info.name != "allocation":  # sacct's placeholder
                self.job_name = info.name
            self.slurm_state = info.state
            self.reason = info.reason
            if info.nodes or info.nodelist:
                self.nodes = list(info.nodes) or [info.nodelist]
            if info.running or info.ended:
                # scontrol reports an estimate as StartTime while a job is pending.
                self.start = _iso(info.start_time) or self.start
            if info.ended:
                self.end = _iso(info.end_time) or self.end
                self.exit_code = info.exit_code
                self.signal = info.signal
            self.stdout = info.stdout or self.stdout
        return asdict(self) != before

    def matches(self, info: JobInfo) -> bool:
        """Whether Slurm's `info` (same job id) is this run's job: same name, unless a name
        is unknown yet (sacct may first show a placeholder named "allocation")."""
        if not self.job_name or not info.name or info.name == "allocation":
            return True
        return info.name == self.job_name

    def to_dict(self) -> dict[str, object]:
        """The run as the workflow file keeps it (empty fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != []}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """The inverse of :meth:`to_dict` (unknown keys of newer files ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


RUN_FIELDS = {f.name: f for f in fields(Run)}
