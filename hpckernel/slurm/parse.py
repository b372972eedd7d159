"""The one place that reads Slurm's output. Pure functions: text in, typed records out.

Called by `hpckernel.slurm.jobs.Slurm`, which runs the commands, and by the unit tests, which
feed output recorded from a real Slurm 22.05 cluster (tests/unit/data/slurm/).

Formats, and why these ones:
- `sbatch --parsable`: "<job id>[;<cluster>]".
- `squeue --json` for listings. On 22.05 (OpenAPI v0.0.38) numbers are plain (null when
  unset or infinite), `job_state` is a string and `exit_code` a raw wait status (768 = exit 3,
  9 = SIGKILL); 22.05 also ignores `--jobs`/`--user` with `--json` and lists jobs ended in the
  last MinJobAge, so callers filter. Newer Slurm wraps numbers as {"set", "infinite",
  "number"}, makes `job_state` a list and `exit_code` an object; both shapes are read.
- `scontrol show job -o` for one job: cheap, has the expanded stdout path and "exit:signal".
- `sacct --parsable2` for jobs slurmctld has forgotten: 22.05's `sacct --json` reports
  exit code 0 for a job that exited with 3, so its text output is used instead.
- `scontrol show partition -o` for partition limits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from .errors import ParseError, SlurmError
from .models import JobInfo, PartitionInfo

# sacct columns requested by `Slurm.accounting`; JobName last, since only it may contain "|".
SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Reason", "Partition", "NodeList", "NNodes",
                "Timelimit", "Submit", "Start", "End", "User", "WorkDir", "JobName")

_NO_VALUE = {"", "none", "n/a", "unknown", "(null)", "none assigned", "partition_limit"}
_UNLIMITED = {"unlimited", "infinite", "-1"}
_DURATION = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
# scontrol's "Key=value Key2=value with spaces ..."; keys look like "NtasksPerN:B:S:C".
_KEY_VALUE = re.compile(r"([A-Za-z][\w:/]*)=(.*?)(?=\s+[A-Za-z][\w:/]*=|\s*$)")
_OUTPUT_PATTERN = re.compile(r"%(\d*)([%AajxuN])")


# ---------------------------------------------------------------- scalars


def parse_duration(text: str) -> timedelta | None:
    """Slurm time string -> timedelta; None for "UNLIMITED"/"INFINITE" and for unset values.

    Accepts "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM" and "D-HH:MM:SS" as sbatch does.
    """
    text = text.strip()
    if text.lower() in _UNLIMITED or text.lower() in _NO_VALUE:
        return None
    m = _DURATION.match(text)
    if not m:
        raise ParseError(f"not a Slurm time string: {text!r}")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        return timedelta(days=days, hours=a or 0, minutes=b or 0, seconds=c or 0)
    if c is not None:  # HH:MM:SS
        return timedelta(hours=a or 0, minutes=b or 0, seconds=c)
    return timedelta(minutes=a or 0, seconds=b or 0)  # MM or MM:SS


def format_duration(value: timedelta | None) -> str:
    """timedelta -> "[D-]HH:MM:SS" for `--time`; None -> "UNLIMITED". Rounds up to seconds."""
    if value is None:
        return "UNLIMITED"
    total = max(0, -int(-value.total_seconds() // 1))
    days, rest = divmod(total, 86400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{hms}" if days else hms


def parse_exit_code(text: str) -> tuple[int, int]:
    """"3:0" -> (exit status 3, signal 0); "0:9" -> (0, 9)."""
    status, _, sig = text.strip().partition(":")
    try:
        return int(status), int(sig or 0)
    except ValueError:
        raise ParseError(f"not a Slurm exit code: {text!r}") from None


def _timestamp(text: str) -> datetime | None:
    """scontrol/sacct local time "2026-11-27T00:24:40" -> aware datetime; None if unknown."""
    if text.strip().lower() in _NO_VALUE:
        return None
    try:
        return datetime.fromisoformat(text.strip()).astimezone()
    except ValueError:
        raise ParseError(f"not a Slurm timestamp: {text!r}") from None


def _value(text: str) -> str:
    return "" if text.strip().lower() in _NO_VALUE else text.strip()


def _reason(text: str | None) -> str | None:
    return text if text and text.lower() not in _NO_VALUE else None


def _int(text: str) -> int | None:
    m = re.match(r"\d+", text.strip())
    return int(m.group()) if m else None


def parse_hostnames(text: str) -> list[str]:
    """Output of `scontrol show hostnames <hostlist>`: one host per line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- sbatch


def parse_sbatch(stdout: str) -> str:
    """`sbatch --parsable` output "1234" or "1234;cluster" -> "1234"."""
    job_id = stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise ParseError(f"sbatch --parsable printed no job id: {stdout.strip()!r}")
    return job_id


def parse_sbatch_error(stderr: str) -> str:
    """Slurm's reasons from sbatch's stderr, without the "sbatch: error:" noise.

    "sbatch: error: Batch job submission failed: Invalid partition name specified"
    -> "Invalid partition name specified".
    """
    reasons = []
    for line in stderr.splitlines():
        line = re.sub(r"^sbatch:\s*(error|fatal):\s*", "", line.strip())
        line = line.removeprefix("Batch job submission failed: ")
        if line and line not in reasons:
            reasons.append(line)
    return "; ".join(reasons) or "no message from sbatch"


# ---------------------------------------------------------------- squeue --json


def _num(value: Any) -> int | None:
    """A JSON number in either shape: 5, or {"set": true, "infinite": false, "number": 5}."""
    if isinstance(value, Mapping):
        if value.get("infinite") or not value.get("set", True):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _epoch(value: Any) -> datetime | None:
    seconds = _num(value)
    return datetime.fromtimestamp(seconds).astimezone() if seconds else None


def _json_exit(value: Any) -> tuple[int | None, int | None]:
    if isinstance(value, Mapping):  # Slurm >= 23.02: {"return_code": .., "signal": {"id": ..}}
        sig = value.get("signal")
        sig_id = sig.get("id", sig.get("signal_id")) if isinstance(sig, Mapping) else sig
        return _num(value.get("return_code")), _num(sig_id) or 0
    status = _num(value)
    if status is None:
        return None, None
    # 22.05 gives the raw wait status: low 7 bits signal, next byte exit status.
    return (status >> 8) & 0xFF, status & 0x7F


def _json_state(value: Any) -> str:
    if isinstance(value, list):  # Slurm >= 23.02: ["RUNNING", "COMPLETING"], base state first
        value = value[0] if value else ""
    return str(value).upper()


def _expand_output(pattern: str, job: Mapping[str, Any], job_id: str) -> str | None:
    """squeue shows the --output pattern as given ("" for the default slurm-%j.out)."""
    array_id, task_id = _num(job.get("array_job_id")), _num(job.get("array_task_id"))
    workdir = str(job.get("current_working_directory") or "")
    if not pattern:
        pattern = "slurm-%A_%a.out" if task_id is not None else "slurm-%j.out"
    fields = {"%": "%", "j": job_id, "x": str(job.get("name", "")),
              "u": str(job.get("user_name", "")), "A": str(array_id or job_id),
              "a": "" if task_id is None else str(task_id), "N": str(job.get("batch_host", ""))}

    def sub(m: re.Match[str]) -> str:
        value = fields[m.group(2)]
        return value.zfill(int(m.group(1))) if m.group(1) and value.isdigit() else value

    path = _OUTPUT_PATTERN.sub(sub, pattern)
    if workdir and not path.startswith("/"):
        path = str(PurePosixPath(workdir) / path)
    return path or None


def _job_from_json(job: Mapping[str, Any]) -> JobInfo:
    job_id = str(_num(job.get("job_id")))
    exit_code, sig = _json_exit(job.get("exit_code"))
    limit = _num(job.get("time_limit"))
    return JobInfo(
        job_id=job_id,
        state=_json_state(job.get("job_state")),
        source="squeue",
        name=str(job.get("name", "")),
        user=str(job.get("user_name", "")),
        partition=str(job.get("partition", "")),
        reason=_reason(job.get("state_reason")),
        reason_text=job.get("state_description") or None,
        nodelist=str(job.get("nodes") or ""),
        node_count=_num(job.get("node_count")),
        exit_code=exit_code,
        signal=sig,
        time_limit=None if limit is None else timedelta(minutes=limit),
        submit_time=_epoch(job.get("submit_time")),
        start_time=_epoch(job.get("start_time")),
        end_time=_epoch(job.get("end_time")),
        workdir=job.get("current_working_directory") or None,
        stdout=_expand_output(str(job.get("standard_output") or ""), job, job_id),
    )


def parse_squeue_json(text: str) -> list[JobInfo]:
    """`squeue --json` -> jobs, in Slurm's order. Includes recently ended jobs on 22.05."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ParseError(f"squeue --json printed invalid JSON ({err})") from None
    errors = [e.get("error") or e.get("description") or str(e) for e in data.get("errors") or []
              if isinstance(e, Mapping)]
    if errors and not data.get("jobs"):
        raise SlurmError("squeue reported: " + "; ".join(map(str, errors)))
    return [_job_from_json(job) for job in data.get("jobs") or []]


# ---------------------------------------------------------------- scontrol


def parse_key_values(line: str) -> dict[str, str]:
    """One line of `scontrol show ... -o` -> {key: raw value}."""
    return {m.group(1): m.group(2) for m in _KEY_VALUE.finditer(line.strip())}


def parse_scontrol_job(text: str) -> list[JobInfo]:
    """`scontrol show job -o [id]` -> one JobInfo per line (array tasks, het components)."""
    jobs = []
    for line in text.splitlines():
        kv = parse_key_values(line)
        if "JobId" not in kv:
            continue
        exit_code, sig = parse_exit_code(kv.get("ExitCode") or "0:0")
        # scontrol prints the long description instead of the reason code when there is one,
        # with spaces turned into underscores.
        reason = _reason(kv.get("Reason"))
        jobs.append(JobInfo(
            job_id=kv["JobId"],
            state=kv.get("JobState", "").upper(),
            source="scontrol",
            name=kv.get("JobName", ""),
            user=kv.get("UserId", "").split("(")[0],
            partition=_value(kv.get("Partition", "")),
            reason=reason,
            reason_text=reason.replace("_", " ") if reason and "_" in reason else None,
            nodelist=_value(kv.get("NodeList", "")),
            node_count=_int(kv.get("NumNodes", "")),
            exit_code=exit_code,
            signal=sig,
            time_limit=parse_duration(kv.get("TimeLimit", "")),
            submit_time=_timestamp(kv.get("SubmitTime", "")),
            start_time=_timestamp(kv.get("StartTime", "")),
            end_time=_timestamp(kv.get("EndTime", "")),
            workdir=_value(kv.get("WorkDir", "")) or None,
            stdout=_value(kv.get("StdOut", "")) or None,
        ))
    return jobs


def parse_scontrol_partition(text: str) -> list[PartitionInfo]:
    """`scontrol show partition -o [name]` -> one PartitionInfo per line."""
    parts = []
    for line in text.splitlines():
        kv = parse_key_values(line)
        if "PartitionName" not in kv:
            continue
        max_nodes = kv.get("MaxNodes", "UNLIMITED")
        parts.append(PartitionInfo(
            name=kv["PartitionName"],
            state=kv.get("State", "UP").upper(),
            default=kv.get("Default", "NO").upper() == "YES",
            nodelist=_value(kv.get("Nodes", "")),
            total_nodes=_int(kv.get("TotalNodes", "")) or 0,
            total_cpus=_int(kv.get("TotalCPUs", "")) or 0,
            max_time=parse_duration(kv.get("MaxTime", "UNLIMITED")),
            default_time=parse_duration(kv.get("DefaultTime", "NONE")),
            max_nodes=None if max_nodes.lower() in _UNLIMITED else _int(max_nodes),
            min_nodes=_int(kv.get("MinNodes", "")) or 0,
        ))
    return parts


# ---------------------------------------------------------------- sacct


def parse_sacct(text: str) -> list[JobInfo]:
    """`sacct -X --parsable2 --noheader -o <SACCT_FIELDS>` -> one JobInfo per allocation."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = line.split("|", len(SACCT_FIELDS) - 1)
        if len(values) != len(SACCT_FIELDS):
            raise ParseError(f"sacct printed {len(values)} fields, expected "
                             f"{len(SACCT_FIELDS)}: {line!r}")
        row = dict(zip(SACCT_FIELDS, values, strict=True))
        exit_code, sig = parse_exit_code(row["ExitCode"] or "0:0")
        jobs.append(JobInfo(
            job_id=row["JobIDRaw"],
            state=row["State"].split()[0].upper() if row["State"] else "",
            source="sacct",
            name=row["JobName"],
            user=row["User"],
            partition=row["Partition"],
            reason=_reason(row["Reason"]),
            nodelist=_value(row["NodeList"]),
            node_count=_int(row["NNodes"]),
            exit_code=exit_code,
            signal=sig,
            time_limit=parse_duration(row["Timelimit"]),
            submit_time=_timestamp(row["Submit"]),
            start_time=_timestamp(row["Start"]),
            end_time=_timestamp(row["End"]),
            workdir=row["WorkDir"] or None,
        ))
    return jobs
