"""The one place that reads Slurm's output. Pure functions: text in, typed records out.

Called by `hpckernel.slurm.jobs.Slurm`, which runs the commands, and by the unit tests, which
feed output recorded from a real Slurm 22.05 cluster (tests/unit/data/slurm/).

Formats, and why these ones:
- `sbatch --parsable`: "<job id>[;<cluster>]".
- `squeue --noheader --Format=<SQUEUE_FORMAT>` for listings: "|"-separated fields, the job
  name last (only it may contain "|"). Not `squeue --json`: on 22.05 it ignores `--jobs`
  and `--user`, so slurmctld packs every job of every user each time, which is the load
  this package must not cause. `exit_code` is a raw wait status (768 = exit 3, 9 = SIGKILL).
- `scontrol show job -o` for one job: cheap, has the expanded stdout path and "exit:signal".
- `sacct --parsable2` for jobs slurmctld has forgotten: 22.05's `sacct --json` reports
  exit code 0 for a job that exited with 3, so its text output is used instead.
- `scontrol show partition -o` for partition limits.
- Error text: `is_transient` tells a busy or briefly unreachable Slurm (worth retrying
  later) from a real refusal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from .errors import ParseError
from .models import JobInfo, PartitionInfo

# squeue columns requested by `Slurm.jobs`; Name last, since only it may contain "|".
SQUEUE_FIELDS = ("JobID", "State", "Reason", "UserName", "Partition", "NodeList", "NumNodes",
                 "TimeLimit", "SubmitTime", "StartTime", "EndTime", "exit_code", "ArrayJobID",
                 "ArrayTaskID", "BatchHost", "WorkDir", "STDOUT", "Name")
# "Field:|" prints the whole value followed by "|"; "Name:" the whole value, nothing after.
SQUEUE_FORMAT = ",".join([*(f"{f}:|" for f in SQUEUE_FIELDS[:-1]), f"{SQUEUE_FIELDS[-1]}:"])
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


def _rows(text: str, fields: tuple[str, ...], command: str) -> Iterator[dict[str, str]]:
    """"|"-separated lines -> {field: value}; only the last field may contain "|"."""
    for line in text.splitlines():
        if not line.strip():
            continue
        values = line.split("|", len(fields) - 1)
        if len(values) != len(fields):
            raise ParseError(f"{command} printed {len(values)} fields, expected "
                             f"{len(fields)}: {line!r}")
        yield dict(zip(fields, values, strict=True))


def parse_hostnames(text: str) -> list[str]:
    """Output of `scontrol show hostnames <hostlist>`: one host per line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_mpi_plugins(text: str) -> frozenset[str]:
    """Output of `srun --mpi=list`: the plugin names listed after "MPI plugin types are...",
    and the versions of the form "specific pmix plugin versions available: pmix_v4,pmix_v5"."""
    names: set[str] = set()
    listing = False
    for line in text.splitlines():
        if line.startswith("MPI plugin types are"):
            listing = True
        elif "plugin versions available:" in line:
            names.update(v.strip() for v in line.split(":", 1)[1].split(",") if v.strip())
        elif listing and line[:1].isspace() and line.strip():
            names.add(line.strip())
    return frozenset(names)


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


# ---------------------------------------------------------------- squeue


def _wait_status(text: str) -> tuple[int | None, int | None]:
    """squeue's exit_code, a raw wait status: low 7 bits the signal, next byte the exit
    status ("768" -> (3, 0), "9" -> (0, 9))."""
    status = _int(text)
    if status is None:
        return None, None
    return (status >> 8) & 0xFF, status & 0x7F


def _expand_output(pattern: str, fields: dict[str, str], workdir: str) -> str | None:
    """squeue shows the --output pattern as given ("/tmp/out-%j.out"); expand it as the job
    does. `fields` maps the pattern letters (j, x, u, A, a, N) to their values."""
    def sub(m: re.Match[str]) -> str:
        value = "%" if m.group(2) == "%" else fields.get(m.group(2), "")
        return value.zfill(int(m.group(1))) if m.group(1) and value.isdigit() else value

    path = _OUTPUT_PATTERN.sub(sub, pattern)
    if workdir and path and not path.startswith("/"):
        path = str(PurePosixPath(workdir) / path)
    return path or None


def parse_squeue(text: str) -> list[JobInfo]:
    """`squeue --noheader --Format=<SQUEUE_FORMAT>` -> jobs, in Slurm's order. With
    `--states=all` it includes jobs ended in the last MinJobAge."""
    jobs = []
    for row in _rows(text, SQUEUE_FIELDS, "squeue"):
        job_id = row["JobID"].strip()
        if not job_id.isdigit():
            raise ParseError(f"squeue printed no job id: {'|'.join(row.values())!r}")
        exit_code, sig = _wait_status(row["exit_code"])
        task = _int(row["ArrayTaskID"])
        workdir = _value(row["WorkDir"])
        letters = {"j": job_id, "x": row["Name"], "u": row["UserName"],
                   "A": _value(row["ArrayJobID"]) or job_id,
                   "a": "" if task is None else str(task), "N": _value(row["BatchHost"])}
        jobs.append(JobInfo(
            job_id=job_id,
            state=row["State"].split()[0].upper() if row["State"].strip() else "",
            source="squeue",
            name=row["Name"],
            user=row["UserName"],
            partition=_value(row["Partition"]),
            reason=_reason(row["Reason"]),
            nodelist=_value(row["NodeList"]),
            node_count=_int(row["NumNodes"]),
            exit_code=exit_code,
            signal=sig,
            time_limit=parse_duration(row["TimeLimit"]),
            submit_time=_timestamp(row["SubmitTime"]),
            start_time=_timestamp(row["StartTime"]),
            end_time=_timestamp(row["EndTime"]),
            workdir=workdir or None,
            stdout=_expand_output(_value(row["STDOUT"]), letters, workdir),
        ))
    return jobs


def squeue_unknown_job(stderr: str) -> bool:
    """Whether squeue failed only because the one job asked for is unknown (with a single
    `--jobs` id squeue asks slurmctld for that job alone, and an unknown id is an error)."""
    return "invalid job id" in stderr.lower()


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
    for row in _rows(text, SACCT_FIELDS, "sacct"):
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


# ---------------------------------------------------------------- failures


# What Slurm's commands print when slurmctld or slurmdbd is overloaded, rate-limits this user
# or is briefly unreachable (a restart, a fail-over): worth trying again later, unlike a
# refusal. Recorded examples are in tests/unit/data/slurm/transient_*.txt.
_TRANSIENT = re.compile(
    r"socket timed out|resource temporarily unavailable|\beagain\b|rate.?limit|"
    r"too many rpcs|unable to contact slurm controller|zero bytes were transmitted|"
    r"problem talking to the database|slurmctld.*(not responding|in standby)",
    re.IGNORECASE)


def is_transient(text: str) -> bool:
    """Whether a failed command's message says Slurm is busy or briefly unreachable."""
    return bool(_TRANSIENT.search(text))


def transient_reason(text: str) -> str:
    """The line of `text` that says why Slurm did not answer, without the command's prefix
    ("slurm_load_jobs error: Socket timed out on send/recv operation" ->
    "Socket timed out on send/recv operation")."""
    for line in text.splitlines():
        if _TRANSIENT.search(line):
            return re.sub(r"^.*?(error|fatal):\s*", "", line.strip()).strip()
    return text.strip()
