"""How hard one kernel leans on slurmctld, counted by a shim that logs every Slurm command the
kernel runs (tests/dashboard/slurmshim.py), and how it behaves when Slurm is busy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpckernel.slurm import Slurm
from hpckernel.slurm.wait import wait_gone as wait_ended
from hpckernel.workflow import Workflow
from tests.kernel.harness import Kernel, wait_gone

from .slurmshim import SlurmShim
from .widgets import Comms

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

DATA = Path(__file__).parents[1] / "unit" / "data" / "slurm"
WATCHED = 180.0  # seconds the kernel is watched with everything open
PER_MINUTE = 10  # the most Slurm commands a minute in all (README: "light touch")
PROMPT = 5.0  # seconds within which a user's action shows despite the backoff


class Jobs:
    """Ids of the jobs a test made; `cancel()` ends them all and waits until they are gone."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def cancel(self) -> None:
        async def main() -> None:
            slurm = Slurm(poll_interval=0.5)
            for job_id in self.ids:
                await slurm.cancel(job_id)
            for job_id in self.ids:
                await wait_ended(slurm, job_id, timeout=60)

        if self.ids:
            asyncio.run(main())


@pytest.fixture
def jobs(slurm_env: dict[str, str]) -> Iterator[Jobs]:
    made = Jobs()
    yield made
    made.cancel()


def start_kernel(tmp_path: Path, env: dict[str, str], shim: SlurmShim) -> Kernel:
    return Kernel(tmp_path, ranks=1, env={**env, **shim.env()})


def stop_kernel(kernel: Kernel) -> None:
    pids = kernel.process_tree()
    kernel.shutdown()
    assert wait_gone(pids) == [], "hub or ranks left running after shutdown"


def follower_of(comms: Comms, job_id: str | None = None) -> str:
    """The comm id of the newest %%sbatch widget (of `job_id`, if given)."""
    return next(c for c, s in reversed(comms.state.items())
                if "job_id" in s and (job_id is None or s["job_id"] == job_id))


def cancel_button(comms: Comms, job_id: str) -> str:
    """The Cancel button in %squeue's row of `job_id`."""
    models = {f"IPY_MODEL_{c}": s for c, s in comms.state.items()}
    for row in models.values():
        children = [models.get(c, {}) for c in row.get("children", [])]
        if any(f"{job_id} hpck-load" in str(c.get("value", "")) for c in children):
            return next(c.removeprefix("IPY_MODEL_") for c in row["children"]
                        if models.get(c, {}).get("description") == "Cancel")
    raise AssertionError(f"no row of job {job_id} with a Cancel button in %squeue")


def observe(comms: Comms, seconds: float) -> None:
    """Keep reading the kernel's widget updates for `seconds` (the observation itself)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            comms.take(comms.kernel.kc.get_iopub_msg(timeout=min(left, 1.0)))
        except Exception:  # queue.Empty: nothing this second
            continue


@pytest.mark.timeout(480)
def test_a_kernel_with_every_job_widget_open_asks_slurm_rarely(
        jobs: Jobs, slurm_env: dict[str, str], tmp_path: Path) -> None:
    shim = SlurmShim(tmp_path / "shim")
    kernel = start_kernel(tmp_path, slurm_env, shim)
    workflow = tmp_path / "load.workflow.yaml"
    try:
        comms = Comms(kernel)
        comms.run("%%sbatch --job-name=hpck-load --time=10\nsleep 600\n")
        sbatch = follower_of(comms)
        job_id = comms.state[sbatch]["job_id"]
        jobs.ids.add(job_id)
        comms.wait(lambda: comms.state[sbatch].get("state") == "RUNNING", 60, "job running")
        comms.run("%squeue")
        comms.wait(lambda: any(f"{job_id} hpck-load" in str(s.get("value", ""))
                               for s in comms.state.values()), 60, "the job in %squeue")
        comms.run("%%local\n"
                  "from hpckernel.workflow import Workflow\n"
                  f"wf = Workflow('load', {str(workflow)!r})\n"
                  "wf.gate('inspect', note='look first')\n"
                  "wf.batch('post', command='true', after=['inspect'])\n"
                  "wf.submit()\n"
                  "wf\n")
        view = next(c for c, s in comms.state.items() if "states" in s and "inspect" in str(s))
        comms.wait(lambda: comms.state[view]["states"] == {"inspect": "held",
                                                           "post": "waiting"},
                   60, "the workflow waiting at its gate")
        comms.run("%dashboard")

        start = time.time()
        observe(comms, WATCHED)
        calls = shim.calls(start, start + WATCHED)
        minutes = [[c for c in calls if start + 60 * m <= c.at < start + 60 * (m + 1)]
                   for m in range(int(WATCHED // 60))]
        shown = "\n".join(f"{c.at - start:6.1f} {' '.join(c.argv)[:150]}" for c in calls)
        print(f"Slurm commands in each minute watched: {[len(m) for m in minutes]}\n{shown}")
        assert all(len(m) <= PER_MINUTE for m in minutes), (
            f"{[len(m) for m in minutes]} Slurm commands in the minutes watched:\n{shown}")
        squeues = [c for c in shim.calls() if c.command == "squeue"]
        assert squeues, "the widgets never asked squeue"
        unfiltered = [c for c in squeues if not any(
            a.startswith(("--jobs=", "--user=")) or a == "--me" for a in c.argv)]
        assert not unfiltered, f"squeue without a job or user filter: {unfiltered}"
        # What the kernel showed stayed true all along.
        assert comms.state[sbatch]["state"] == "RUNNING"
        assert comms.state[view]["states"] == {"inspect": "held", "post": "waiting"}

        # The pauses are long now; the user's actions still show at once.
        clicked = time.monotonic()
        comms.click(cancel_button(comms, job_id))
        comms.wait(lambda: comms.state[sbatch].get("state") == "CANCELLED", PROMPT,
                   "the Cancel button's effect in the %%sbatch widget")
        comms.wait(lambda: job_id not in comms.state[next(
            c for c, s in comms.state.items() if "jobs" in s)]["jobs"], PROMPT,
            "the cancelled job gone from %squeue")
        assert time.monotonic() - clicked < PROMPT
        comms.run("%%local\nwf.approve('inspect')")
        comms.wait(lambda: comms.state[view]["states"]["inspect"] != "held", PROMPT,
                   "the approved gate in the workflow widget")
    finally:
        if workflow.exists():  # its steps' jobs, for the fixture to cancel
            runs = Workflow.load(workflow).engine.doc.runs.values()
            jobs.ids.update(run.job_id for step in runs for run in step)
        stop_kernel(kernel)


def test_a_busy_slurm_shows_as_a_state_and_the_widget_recovers(
        jobs: Jobs, slurm_env: dict[str, str], tmp_path: Path) -> None:
    busy = (DATA / "transient_squeue_socket_timeout.txt").read_text()
    shim = SlurmShim(tmp_path / "shim", fail={"squeue": (2, busy)})
    kernel = start_kernel(tmp_path, slurm_env, shim)
    try:
        comms = Comms(kernel)
        comms.run("%%sbatch --job-name=hpck-busy --time=1\nsleep 2\necho done\n")
        sbatch = follower_of(comms)
        jobs.ids.add(comms.state[sbatch]["job_id"])
        comms.wait(lambda: comms.state[sbatch].get("state") in ("RUNNING", "COMPLETED"), 60,
                   "the follower's recovery")
        troubles = [u["trouble"] for u in comms.updates[sbatch] if u.get("trouble")]
        assert troubles[:2] == [
            "Slurm busy (Socket timed out on send/recv operation), retrying in 2 s",
            "Slurm busy (Socket timed out on send/recv operation), retrying in 4 s"]
        assert comms.state[sbatch]["trouble"] == ""
        comms.wait(lambda: comms.state[sbatch].get("state") == "COMPLETED", 60, "the end")
        assert "Traceback" not in str(comms.state)
        failed = [c for c in shim.calls() if c.command == "squeue"]
        assert len(failed) >= 3  # two refused, then the real one
    finally:
        stop_kernel(kernel)
