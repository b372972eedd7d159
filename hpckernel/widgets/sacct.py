"""``%sacct``'s text: one job's record, as the magic prints it and the dashboard shows it."""

from __future__ import annotations

from ..slurm import JobInfo, Slurm, SlurmError, format_duration


def describe(info: JobInfo) -> str:
    """One job in a few lines: what ``%sacct`` prints."""
    rows = [("job", info.job_id), ("name", info.name), ("state", info.state),
            ("reason", info.reason_text or info.reason or ""), ("partition", info.partition),
            ("nodes", info.nodelist), ("exit code", "" if info.exit_code is None
                                       else f"{info.exit_code}:{info.signal or 0}"),
            ("submitted", str(info.submit_time or "")), ("started", str(info.start_time or "")),
            ("ended", str(info.end_time or "") if info.ended else ""),
            ("time limit", format_duration(info.time_limit) if info.time_limit else ""),
            ("output", info.stdout or "")]
    return "\n".join(f"{k:>10}: {v}" for k, v in rows if v)


async def sacct_text(job_id: str, slurm: Slurm | None = None) -> str:
    """The accounting record of a job (or slurmctld's, before slurmdbd has it)."""
    slurm = slurm or Slurm()
    info = await slurm.accounting(job_id) or await slurm.job(job_id)
    if info is None:
        raise SlurmError(f"job {job_id} is unknown to Slurm (not in sacct or scontrol)")
    return describe(info)
