"""hpckernel.slurm.parse against output recorded from the virtual Slurm 22.05 cluster.

The files in tests/unit/data/slurm/ were captured from real commands (see the README there).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hpckernel.slurm import ParseError, format_duration, parse_duration
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


# ---------------------------------------------------------------- squeue --Format


def test_squeue_running_and_held() -> None:
    jobs = by_id(p.parse_squeue(read("squeue_running_held.txt")))
    running, held = jobs["123"], jobs["124"]

    assert running.state == "RUNNING" and running.running and running.source == "squeue"
    assert (running.name, running.user, running.partition) == ("hpck-rec", "root", "debug")
    assert running.nodelist == "n[2-3]" and running.node_count == 2
    assert running.reason is None and (running.exit_code, running.signal) == (0, 0)
    assert running.time_limit == timedelta(minutes=2)
    assert running.start_time == local("2026-11-30T21:33:44")
    assert running.end_time == local("2026-11-30T21:35:44")
    assert running.time_left(local("2026-11-30T21:34:44")) == timedelta(minutes=1)
    assert running.stdout == "/tmp/poller-rec/out/run-123.out"  # "-o .../run-%j.out" expanded

    assert held.state == "PENDING" and held.pending and held.reason == "JobHeldUser"
    assert held.name == "rec name with|pipe"  # the last column keeps its "|"
    assert held.time_limit is None  # UNLIMITED
    assert held.nodelist == "" and held.start_time is None and held.end_time is None
    assert held.stdout == "/tmp/poller-rec/out/slurm-124.out"  # Slurm's default, expanded


def test_squeue_pending_reasons() -> None:
    jobs = by_id(p.parse_squeue(read("squeue_pending.txt")))
    assert jobs["98"].reason == "Priority" and jobs["98"].node_count == 1
    # squeue prints the long description instead of the code when there is one.
    assert jobs["96"].reason is not None and jobs["96"].reason.startswith("Nodes required")
    assert jobs["96"].node_count == 2
    assert jobs["101"].state == "CANCELLED" and jobs["101"].ended


def test_squeue_ended_jobs_exit_codes() -> None:
    # With --states=all squeue keeps ended jobs for MinJobAge; exit_code is a wait status.
    jobs = by_id(p.parse_squeue(read("squeue_ended.txt")))
    assert (jobs["98"].state, jobs["98"].exit_code, jobs["98"].signal) == ("COMPLETED", 0, 0)
    assert (jobs["99"].state, jobs["99"].reason, jobs["99"].exit_code) == (
        "FAILED", "NonZeroExitCode", 3)
    assert (jobs["100"].state, jobs["100"].exit_code, jobs["100"].signal) == ("FAILED", 0, 9)
    assert jobs["96"].state == "CANCELLED" and jobs["96"].nodelist == ""
    assert jobs["98"].nodelist == "n1" and jobs["98"].end_time == local("2026-11-30T21:32:31")
    assert all(j.ended for j in jobs.values()) and len(jobs) == 10


def test_squeue_unknown_job_and_garbage() -> None:
    assert p.squeue_unknown_job(read("squeue_unknown_job.txt"))
    assert not p.squeue_unknown_job(read("transient_squeue_socket_timeout.txt"))
    assert p.parse_squeue("") == [] and p.parse_squeue("\n") == []
    with pytest.raises(ParseError, match="fields"):
        p.parse_squeue("JOBID PARTITION NAME\n")
    with pytest.raises(ParseError, match="no job id"):
        p.parse_squeue("x|" * (len(p.SQUEUE_FIELDS) - 1) + "name")


def test_squeue_format_names_every_field_once() -> None:
    assert p.SQUEUE_FORMAT.count("|") == len(p.SQUEUE_FIELDS) - 1
    assert p.SQUEUE_FORMAT.endswith(",Name:")  # the last column unpadded, without "|"


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("transient_squeue_socket_timeout.txt", "Socket timed out on send/recv operation"),
        ("transient_squeue_connect_failure.txt",
         "Unable to contact slurm controller (connect failure)"),
        ("transient_sacct_eagain.txt",
         "Sending PersistInit msg: Resource temporarily unavailable"),
        ("transient_sacct_connection_refused.txt",
         "Problem talking to the database: Connection refused"),
        ("transient_sbatch_socket_timeout.txt",
         "Batch job submission failed: Socket timed out on send/recv operation"),
        ("transient_scancel_socket_timeout.txt",
         "Kill job error on job id 999999: Socket timed out on send/recv operation"),
    ],
)
def test_busy_slurm_is_transient(name: str, reason: str) -> None:
    text = read(name)
    assert p.is_transient(text)
    assert p.transient_reason(text) == reason


@pytest.mark.parametrize("name", ["sbatch_error_partition.txt", "sbatch_error_nodes.txt",
                                  "sbatch_error_time.txt", "squeue_unknown_job.txt"])
def test_refusals_are_not_transient(name: str) -> None:
    assert not p.is_transient(read(name))


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


def test_srun_mpi_list() -> None:
    # Slurm 22.05 (Debian 12) with libpmix-dev, as the test bed has it
    assert p.parse_mpi_plugins(read("srun_mpi_list.txt")) == {
        "pmix", "none", "cray_shasta", "pmi2", "pmix_v4"}
