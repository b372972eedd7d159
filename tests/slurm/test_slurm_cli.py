"""hpckernel.slurm.Slurm against the real virtual Slurm cluster (tests/cluster).

Start the cluster first: `python tests/cluster/testbed.py start`. If it is not running these
tests fail with that instruction (they do not skip). Every test cancels the jobs it submitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from hpckernel.slurm import (
    JobInfo,
    LocalRunner,
    PartitionInfo,
    Slurm,
    SlurmError,
    SubmitError,
    check_partition,
    check_request,
    wait_gone,
    wait_state,
)
from tests.cluster.fixtures import testbed_env

# One xdist group for every cluster test: they fill nodes and must not overlap.
pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

NODES = {"n1", "n2", "n3"}
SLEEP = "#!/bin/sh\nsleep 300\n"


class Jobs:
    """Submits through `slurm` and cancels everything it submitted on exit."""

    def __init__(self, slurm: Slurm) -> None:
        self.slurm = slurm
        self.ids: list[str] = []

    async def submit(self, script: str, options: Sequence[str] = (),
                     workdir: Path | None = None) -> str:
        job_id = await self.slurm.submit(script, ["--job-name=hpck-test", *options],
                                         workdir=str(workdir) if workdir else None)
        self.ids.append(job_id)
        return job_id

    async def __aenter__(self) -> Jobs:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(self.slurm.cancel(job_id) for job_id in self.ids))
        for job_id in self.ids:
            await wait_gone(self.slurm, job_id, timeout=30)


def run(test: Callable[[Slurm, Jobs], Awaitable[None]]) -> None:
    """Run `test` with a Slurm for the test bed; fails (not skips) if it is not running."""
    env = testbed_env()

    async def main() -> None:
        slurm = Slurm(LocalRunner(env), poll_interval=0.3)
        async with Jobs(slurm) as jobs:
            await test(slurm, jobs)

    asyncio.run(main())


async def accounted(slurm: Slurm, job_id: str, state: str, timeout: float = 20) -> JobInfo:
    """sacct's record once slurmdbd has it in `state` (it lags the controller a little).

    For a short job slurmdbd may first hold a placeholder made from the batch step's record
    (name "allocation", no partition, the batch node only); wait for the real one.
    """
    deadline = time.monotonic() + timeout
    while True:
        info = await slurm.accounting(job_id)
        if info is not None and info.state == state and info.partition:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"sacct shows {info} for job {job_id}, expected {state}")
        await asyncio.sleep(0.5)


def test_job_runs_then_completes(tmp_path: Path) -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        # Long enough to be seen RUNNING by a poller that backs off while the job pends.
        script = "#!/bin/sh\nsleep 10\necho hello from $SLURM_JOB_ID on $SLURMD_NODENAME\n"
        job_id = await jobs.submit(script, ["--nodes=2", "--time=2"], workdir=tmp_path)

        info = await wait_state(slurm, job_id, {"RUNNING"}, timeout=30)
        assert info.node_count == 2 and len(info.nodes) == 2 and set(info.nodes) <= NODES
        assert info.time_limit == timedelta(minutes=2)
        assert info.time_left() is not None
        assert info.stdout == f"{tmp_path}/slurm-{job_id}.out"
        assert job_id in {j.job_id for j in await slurm.jobs(user="root")}

        done = await wait_gone(slurm, job_id, timeout=30)
        assert done is not None and done.state == "COMPLETED"
        assert (done.exit_code, done.signal) == (0, 0)
        output = await asyncio.to_thread(Path(done.stdout or "").read_text)
        assert output.startswith(f"hello from {job_id} on n")
        assert job_id not in {j.job_id for j in await slurm.jobs()}
        assert job_id in {j.job_id for j in await slurm.jobs(include_ended=True)}

        record = await accounted(slurm, job_id, "COMPLETED")
        assert record.exit_code == 0 and set(record.nodes) == set(info.nodes)

    run(test)


def test_failing_job_reports_exit_code(tmp_path: Path) -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        job_id = await jobs.submit("#!/bin/sh\nexit 3\n", workdir=tmp_path)
        with pytest.raises(SlurmError, match=f"job {job_id} ended as FAILED"):
            await wait_state(slurm, job_id, {"COMPLETED"}, timeout=30)
        info = await slurm.job(job_id)
        assert info is not None and info.state == "FAILED"
        assert (info.exit_code, info.signal, info.reason) == (3, 0, "NonZeroExitCode")
        record = await accounted(slurm, job_id, "FAILED")
        assert record.exit_code == 3

    run(test)


def test_cancelled_job_shows_in_sacct(tmp_path: Path) -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        job_id = await jobs.submit(SLEEP, workdir=tmp_path)
        await wait_state(slurm, job_id, {"RUNNING"}, timeout=30)
        await slurm.cancel(job_id)
        info = await wait_gone(slurm, job_id, timeout=30)
        # Slurm reports the TERM (0:15) unless the batch shell had already exited (0:0).
        assert info is not None and info.state == "CANCELLED" and info.signal in (0, 15)
        await accounted(slurm, job_id, "CANCELLED")
        await slurm.cancel(job_id)  # cancelling an ended job is not an error

    run(test)


def test_signal_reaches_batch_script(tmp_path: Path) -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        script = "#!/bin/bash\ntrap 'echo got USR1; exit 0' USR1\nsleep 300 &\nwait\n"
        job_id = await jobs.submit(script, workdir=tmp_path)
        await wait_state(slurm, job_id, {"RUNNING"}, timeout=30)
        await asyncio.sleep(1)  # let bash install its trap
        await slurm.cancel(job_id, signal="USR1", full=True)
        info = await wait_gone(slurm, job_id, timeout=30)
        assert info is not None and info.state == "COMPLETED"
        assert "got USR1" in await asyncio.to_thread(Path(info.stdout or "").read_text)

    run(test)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--partition=nope"], "Invalid partition name specified"),
        (["--nodes=4"], "Node count specification invalid"),
        (["--partition=short", "--time=10"], "Requested time limit is invalid"),
    ],
)
def test_submit_errors_carry_slurm_message(options: list[str], message: str) -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        with pytest.raises(SubmitError, match="sbatch refused the job") as caught:
            await jobs.submit("#!/bin/sh\ntrue\n", options)
        assert message in str(caught.value)
        assert "sbatch: error:" in caught.value.stderr
        assert caught.value.argv[:2] == ("sbatch", "--parsable")

    run(test)


def test_partition_limits_checked_before_submit() -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        default = await slurm.partition()
        assert default.name == "debug" and default.max_time is None and default.total_nodes == 3
        short = await slurm.partition("short")
        assert short.max_time == timedelta(minutes=5)
        check_request(short, nodes=3, time_limit=timedelta(minutes=5))
        with pytest.raises(SubmitError, match="at most 00:05:00 of walltime"):
            check_request(short, nodes=1, time_limit=timedelta(minutes=10))
        with pytest.raises(SubmitError, match="has 3 nodes, 4 were requested"):
            check_request(default, nodes=4)
        with pytest.raises(SlurmError, match="partition 'nope' does not exist"):
            await slurm.partition("nope")
        assert await slurm.hostnames(short.nodelist) == ["n1", "n2", "n3"]
        # The one check the provisioner, `hpckernel submit` and workflows use: no time
        # asked means the partition's default; an unlimited one exceeds any limit.
        known: dict[str | None, PartitionInfo] = {}
        assert (await check_partition(slurm, "short", nodes=3, known=known)).name == "short"
        assert list(known) == ["short"]
        for time_asked in ("10", "UNLIMITED"):
            with pytest.raises(SubmitError, match="at most 00:05:00 of walltime"):
                await check_partition(slurm, "short", time=time_asked, known=known)
        with pytest.raises(SubmitError, match="has 3 nodes, 4 were requested"):
            await check_partition(slurm, None, nodes=4, time="UNLIMITED")

    run(test)


def test_pending_reason_when_nodes_are_full(tmp_path: Path) -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        # `short` does not oversubscribe, so --exclusive really fills its three nodes.
        fill = await jobs.submit(SLEEP, ["--partition=short", "--nodes=3", "--exclusive",
                                         "--time=5"], workdir=tmp_path)
        await wait_state(slurm, fill, {"RUNNING"}, timeout=60)
        waiting = await jobs.submit(SLEEP, ["--partition=short", "--nodes=1", "--time=1"],
                                    workdir=tmp_path)
        deadline = time.monotonic() + 20
        while (info := await slurm.job(waiting)) is not None and info.reason is None:
            assert time.monotonic() < deadline, "the scheduler gave no pending reason"
            await asyncio.sleep(0.3)
        assert info is not None and info.pending and info.reason == "Resources"
        assert info.nodes == () and info.start_time is None

    run(test)


def test_unknown_job_is_none() -> None:
    async def test(slurm: Slurm, jobs: Jobs) -> None:
        assert await slurm.job("99999999") is None
        assert await slurm.accounting("99999999") is None

    run(test)
