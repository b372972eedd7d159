"""hpckernel.slurm.parse against output recorded from the virtual Slurm 22.05 cluster.

The files in tests/unit/data/slurm/ were captured from real commands (see the README there),
except `squeue_newer_format_synthetic.json`, which is hand-written in the shape newer Slurm
prints, to check that the JSON reader tolerates it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hpckernel.slurm import ParseError, SlurmError, format_duration, parse_duration
from hpckernel.slurm import parse as p
from hpckernel.slurm.models import JobInfo

DATA = Path(__file__).parent / "data" / "slurm"


def read(name: str) -> str:
    return (DATA / name).read_text()


def by_id(jobs: list[JobInfo]) -> dict[str, JobInfo]:
    return {j.job_id: j for j in jobs}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone()


# ---------------------------------------------------------------- time strings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", timedelta(minutes=30)),
        ("5:30", timedelta(minutes=5, seconds=30)),
        ("1:00:00", timedelta(hours=1)),
        ("00:05:00", timedelta(minutes=5)),
        ("1-00:00:00", timedelta(days=1)),
        ("2-12", timedelta(days=2, hours=12)),
        ("1-2:30", timedelta(days=1, hours=2, minutes=30)),
        ("UNLIMITED", None),
        ("INFINITE", None),
        ("infinite", None),
        ("NONE", None),
        ("Partition_Limit", None),
    ],
)
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=5), "00:05:00"),
        (timedelta(hours=25, seconds=1), "1-01:00:01"),
        (timedelta(seconds=0.2), "00:00:01"),  # rounds up: never ask for less than meant
        (None, "UNLIMITED"),
    ],
)
def test_format_duration(value: timedelta | None, expected: str) -> None:
    assert format_duration(value) == expected


@pytest.mark.parametrize("text", ["1:00:00", "1-00:00:00", "30", "2-12:30:05"])
def test_duration_round_trip(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("text", ["soon", "1:2:3:4", "-5"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ParseError, match="not a Slurm time string"):
        parse_duration(text)


def test_parse_exit_code() -> None:
    assert p.parse_exit_code("3:0") == (3, 0)
    assert p.parse_exit_code("0:9") == (0, 9)
    with pytest.raises(ParseError):
        p.parse_exit_code("x:y")


# ---------------------------------------------------------------- sbatch


def test_parse_sbatch() -> None:
    assert p.parse_sbatch("14\n") == "14"
    assert p.parse_sbatch("15;local\n") == "15"
    with pytest.raises(ParseError, match="no job id"):
        p.parse_sbatch("Submitted batch job 16\n")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sbatch_error_partition.txt",
         "invalid partition specified: nope; Invalid partition name specified"),
        ("sbatch_error_nodes.txt", "Node count specification invalid"),
        ("sbatch_error_time.txt",
         "Requested time limit is invalid (missing or exceeds some limit)"),
    ],
)
def test_parse_sbatch_error(name: str, message: str) -> None:
    assert p.parse_sbatch_error(read(name)) == message


# ---------------------------------------------------------------- squeue --json (22.05)


def test_squeue_pending_and_running() -> None:
    jobs = by_id(p.parse_squeue_json(read("squeue_pending_running.json")))
    running, pending, blocked = jobs["3"], jobs["4"], jobs["5"]

    assert running.state == "RUNNING" and running.running and running.source == "squeue"
    assert (running.name, running.user, running.partition) == ("fill", "root", "short")
    assert running.nodelist == "n[1-3]" and running.node_count == 3
    assert running.reason is None
    assert running.time_limit == timedelta(minutes=5)
    assert running.start_time is not None and running.start_time.timestamp() == 1795739050
    assert running.end_time is not None and running.end_time.timestamp() == 1795739350
    assert running.stdout == "/tmp/fill-3.out"  # "-o /tmp/fill-%j.out" expanded

    assert pending.state == "PENDING" and pending.pending
    assert pending.reason == "Resources" and pending.reason_text is None
    assert pending.nodelist == "" and pending.start_time is None
    assert pending.stdout == "/tmp/slurm-4.out"  # Slurm's default, in the job's workdir

    assert blocked.reason == "Resources"
    assert blocked.reason_text is not None and blocked.reason_text.startswith("Nodes required")


def test_squeue_unlimited_time_is_none() -> None:
    job = by_id(p.parse_squeue_json(read("squeue_pending_running.json")))["1"]
    assert job.partition == "debug" and job.time_limit is None


def test_squeue_ended_jobs_exit_codes() -> None:
    # 22.05 keeps ended jobs in squeue --json for MinJobAge; exit_code is a raw wait status.
    jobs = by_id(p.parse_squeue_json(read("squeue_ended.json")))
    assert (jobs["7"].state, jobs["7"].exit_code, jobs["7"].signal) == ("COMPLETED", 0, 0)
    assert (jobs["8"].state, jobs["8"].reason, jobs["8"].exit_code) == (
        "FAILED", "NonZeroExitCode", 3)
    assert (jobs["9"].state, jobs["9"].signal) == ("CANCELLED", 15)
    assert (jobs["10"].state, jobs["10"].reason, jobs["10"].signal) == (
        "TIMEOUT", "TimeLimit", 15)
    assert (jobs["11"].state, jobs["11"].exit_code, jobs["11"].signal) == ("FAILED", 0, 9)
    assert all(j.ended for j in jobs.values())


def test_squeue_newer_format() -> None:
    jobs = by_id(p.parse_squeue_json(read("squeue_newer_format_synthetic.json")))
    hub, waiting, crashed = jobs["525"], jobs["526"], jobs["527"]
    assert hub.state == "RUNNING" and hub.node_count == 2 and hub.nodelist == "node[001-002]"
    assert hub.time_limit == timedelta(hours=1)
    assert hub.start_time is not None and hub.start_time.timestamp() == 1755290346
    assert hub.stdout == "/home/alice/hub-525.out"
    assert (hub.exit_code, hub.signal) == (0, 0)
    assert waiting.state == "PENDING" and waiting.reason == "Priority"
    assert waiting.time_limit is None and waiting.start_time is None
    assert waiting.stdout == "/home/bob/slurm-526.out"
    assert (crashed.state, crashed.exit_code, crashed.signal) == ("FAILED", 0, 9)
    assert crashed.stdout == "/home/bob/out/crash.00527.log"  # relative, padded %5j


def test_squeue_errors_and_garbage() -> None:
    with pytest.raises(ParseError, match="invalid JSON"):
        p.parse_squeue_json("squeue: error: ...")
    with pytest.raises(SlurmError, match="Invalid user"):
        p.parse_squeue_json('{"errors": [{"error": "Invalid user"}], "jobs": []}')


# ---------------------------------------------------------------- scontrol show job -o


def test_scontrol_pending() -> None:
    [job] = p.parse_scontrol_job(read("scontrol_job_pending.txt"))
    assert (job.job_id, job.state, job.reason, job.source) == ("4", "PENDING", "Resources",
                                                               "scontrol")
    assert (job.name, job.user, job.partition) == ("waiting", "root", "short")
    assert job.nodelist == "" and job.node_count == 1
    assert job.start_time is None and job.end_time is None
    assert job.time_limit == timedelta(minutes=2)
    assert job.submit_time == local("2026-11-27T00:24:10")
    assert job.stdout == "/tmp/slurm-4.out" and job.workdir == "/tmp"


def test_scontrol_pending_long_reason() -> None:
    [job] = p.parse_scontrol_job(read("scontrol_job_pending_reqnode.txt"))
    assert job.reason_text == ("Nodes required for job are DOWN, DRAINED or reserved for "
                               "jobs in higher priority partitions")


def test_scontrol_running() -> None:
    [job] = p.parse_scontrol_job(read("scontrol_job_running.txt"))
    assert job.state == "RUNNING" and job.reason is None
    assert job.nodelist == "n[1-3]" and job.node_count == 3
    assert job.start_time == local("2026-11-27T00:24:10")
    assert job.end_time == local("2026-11-27T00:29:10")  # start + time limit
    assert job.stdout == "/tmp/fill-3.out"
    assert job.time_left(local("2026-11-27T00:25:10")) == timedelta(minutes=4)


def test_scontrol_ended() -> None:
    jobs = by_id(p.parse_scontrol_job(read("scontrol_job_ended.txt")))
    assert (jobs["7"].state, jobs["7"].exit_code, jobs["7"].signal) == ("COMPLETED", 0, 0)
    assert jobs["7"].time_limit is None  # TimeLimit=UNLIMITED
    assert (jobs["8"].state, jobs["8"].exit_code, jobs["8"].reason) == (
        "FAILED", 3, "NonZeroExitCode")
    assert (jobs["9"].state, jobs["9"].signal) == ("CANCELLED", 15)
    assert (jobs["10"].state, jobs["10"].reason, jobs["10"].signal) == (
        "TIMEOUT", "TimeLimit", 15)
    assert (jobs["11"].exit_code, jobs["11"].signal) == (0, 9)


def test_key_values_keep_spaces_and_equals() -> None:
    kv = p.parse_key_values("JobId=5 JobName=my job TRES=cpu=6,node=3 NtasksPerN:B:S:C=0:0:*:* "
                            "Power=")
    assert kv == {"JobId": "5", "JobName": "my job", "TRES": "cpu=6,node=3",
                  "NtasksPerN:B:S:C": "0:0:*:*", "Power": ""}


# ---------------------------------------------------------------- sacct --parsable2


def test_sacct_ended() -> None:
    jobs = by_id(p.parse_sacct(read("sacct_ended.txt")))
    assert (jobs["7"].state, jobs["7"].exit_code, jobs["7"].nodelist) == ("COMPLETED", 0,
                                                                          "n[1-2]")
    assert (jobs["8"].state, jobs["8"].exit_code) == ("FAILED", 3)
    assert jobs["9"].state == "CANCELLED"  # "CANCELLED by 0"
    assert (jobs["10"].state, jobs["10"].time_limit) == ("TIMEOUT", timedelta(minutes=1))
    assert (jobs["11"].exit_code, jobs["11"].signal) == (0, 9)
    assert jobs["10"].end_time == local("2026-11-27T00:25:50")
    assert all(j.source == "sacct" and j.stdout is None for j in jobs.values())


def test_sacct_running_and_pending() -> None:
    jobs = by_id(p.parse_sacct(read("sacct_running_pending.txt")))
    assert jobs["12"].state == "RUNNING" and jobs["12"].end_time is None
    assert jobs["13"].state == "PENDING" and jobs["13"].nodelist == ""  # "None assigned"
    assert jobs["13"].start_time is None
    assert jobs["13"].name == "name with|pipe"  # JobName is the last column for this reason


def test_sacct_wrong_columns() -> None:
    with pytest.raises(ParseError, match="expected"):
        p.parse_sacct("12|RUNNING|0:0\n")


# ---------------------------------------------------------------- partitions, hostnames


def test_scontrol_partitions() -> None:
    parts = {x.name: x for x in p.parse_scontrol_partition(read("scontrol_partitions.txt"))}
    debug, short = parts["debug"], parts["short"]
    assert debug.default and not short.default
    assert debug.max_time is None and short.max_time == timedelta(minutes=5)
    assert (short.total_nodes, short.total_cpus, short.nodelist) == (3, 6, "n[1-3]")
    assert short.max_nodes is None and short.min_nodes == 0 and short.default_time is None
    assert short.state == "UP"


def test_parse_hostnames() -> None:
    assert p.parse_hostnames("n1\nn2\nn3\n") == ["n1", "n2", "n3"]
