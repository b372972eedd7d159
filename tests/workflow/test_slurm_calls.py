"""The `hpckernel.slurm.Slurm` calls added for workflows, on the virtual cluster: hold,
release and `jobs_by_id`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hpckernel.slurm import Slurm, SlurmError, wait_gone, wait_state

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


def test_hold_release_and_jobs_by_id(cluster: dict[str, str], tmp_path: Path) -> None:
    async def main() -> None:
        slurm = Slurm(poll_interval=0.3)
        held = await slurm.submit("#!/bin/sh\ntrue\n", ["--hold", "--job-name=wf-calls"],
                                  workdir=str(tmp_path))
        other = await slurm.submit("#!/bin/sh\nsleep 300\n", ["--job-name=wf-calls",
                                                              f"--dependency=afterok:{held}"],
                                   workdir=str(tmp_path))
        try:
            found = await slurm.jobs_by_id([held, other, "99999999"])
            assert found["99999999"] is None
            assert (found[held].state, found[held].reason) == ("PENDING", "JobHeldUser")
            assert found[other].reason == "Dependency"
            await slurm.hold(other)
            # `scontrol hold` by root (the test bed's user) is an administrator's hold.
            reason = (await slurm.jobs_by_id([other]))[other].reason  # type: ignore[union-attr]
            assert reason in ("JobHeldUser", "JobHeldAdmin")
            await slurm.release(other)
            await slurm.release(held)
            done = await wait_gone(slurm, held, timeout=60)
            assert done is not None and done.state == "COMPLETED"
            with pytest.raises(SlurmError, match="already finished"):
                await slurm.release(held)
            await wait_state(slurm, other, {"RUNNING"}, timeout=60)
            assert (await slurm.jobs_by_id([held]))[held].state == "COMPLETED"  # type: ignore[union-attr]
            assert await slurm.jobs_by_id([]) == {}
        finally:
            for job_id in (held, other):
                await slurm.cancel(job_id)
            for job_id in (held, other):
                await wait_gone(slurm, job_id, timeout=60)

    asyncio.run(main())
