"""Slurm job control from code and from the magics, against the virtual cluster."""

from __future__ import annotations

import pytest
from jupyter_client.manager import start_new_kernel

from hpckernel.slurm import Job, SlurmError, SlurmNotFoundError, SubmitError, submit
from tests.kernel.harness import Kernel

from .widgets import Comms

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


def test_submit_wait_output_resubmit_cancel(slurm_env: dict[str, str]) -> None:
    job = submit("echo hello from $SLURM_JOB_ID", "--job-name=hpck-dash", "--time=1")
    assert job.wait(timeout=120).state == "COMPLETED"
    assert job.state == "COMPLETED"
    assert job.output().strip() == f"hello from {job.id}"
    again = job.resubmit()
    assert again.id != job.id and again.options == job.options
    assert again.wait(timeout=120).state == "COMPLETED"
    sleeper = submit("sleep 300", "--job-name=hpck-dash", "--time=5")
    try:
        sleeper.cancel()
        assert sleeper.wait(timeout=60).state == "CANCELLED"
    finally:
        sleeper.cancel()


def test_clear_errors(slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SubmitError, match=r"sbatch refused the job.*[Pp]artition"):
        submit("echo x", "--partition=nosuchpartition")
    with pytest.raises(SlurmError, match="job 987654 is unknown to Slurm"):
        _ = Job("987654").state
    with pytest.raises(SlurmError, match="its script is unknown"):
        Job("987654").resubmit()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SlurmNotFoundError):
        submit("echo x")


def test_sbatch_squeue_scancel_sacct_magics_in_the_hub(hub: Kernel) -> None:
    comms = Comms(hub)
    comms.run("%%sbatch --job-name=hpck-dash --time=1\necho magic output\n")
    follower = next(c for c, s in comms.state.items() if "job_id" in s)
    job_id = comms.state[follower]["job_id"]
    comms.wait(lambda: comms.state[follower].get("state") == "COMPLETED", timeout=120,
               what="the job's end")
    comms.wait(lambda: "magic output" in str(comms.state), what="the output's tail")
    assert "COMPLETED" in hub.ok(f"%sacct {job_id}").text()
    # Resubmit, from the widget's button: the follower follows the new job.
    comms.click(comms.find(description="Resubmit"))
    comms.wait(lambda: comms.state[follower]["job_id"] != job_id, what="a new job")
    comms.run("%%sbatch --job-name=hpck-dash --time=5\nsleep 300\n")
    sleeper = comms.state[next(c for c, s in reversed(comms.state.items()) if "job_id" in s)]
    comms.run("%squeue")
    table = next(c for c, s in reversed(comms.state.items()) if "jobs" in s)
    comms.wait(lambda: sleeper["job_id"] in comms.state[table]["jobs"], what="squeue")
    assert "cancelled" in hub.ok(f"%scancel {sleeper['job_id']}").text()
    bad = hub.run("%scancel 987654")
    assert bad.status == "error" and "987654" in str(bad.content)
    comms.run("%%sbatch --partition=nosuchpartition\necho x\n")
    assert "sbatch refused the job" in str(comms.state)


def test_job_magics_in_plain_ipykernel(slurm_env: dict[str, str]) -> None:
    km, kc = start_new_kernel(kernel_name="python3", env=dict(__import__("os").environ))
    try:
        reply = kc.execute_interactive("%load_ext hpckernel.widgets\n%squeue", timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        reply = kc.execute_interactive("%scancel 987654", timeout=60)
        assert reply["content"]["status"] == "error"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
