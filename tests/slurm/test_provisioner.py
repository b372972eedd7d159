"""The "Slurm MPI" kernel on the real virtual cluster, through jupyter_client and nbclient.

All cluster tests share one xdist group: they change the cluster (fill nodes, take a node
down) and must not run beside each other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from hpckernel.kernelspec import write_kernel_spec
from hpckernel.provisioner import KernelStartError
from hpckernel.slurm import Slurm, SlurmError, SlurmNotFoundError
from tests.dashboard.slurmshim import SlurmShim
from tests.kernel.harness import Kernel

DATA = Path(__file__).parents[1] / "unit" / "data" / "slurm"

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]


def settings(tmp: Path, **extra: Any) -> dict[str, Any]:
    return {"partition": "debug", "nodes": 3, "ntasks_per_node": 1, "time": "00:10:00",
            "job_root": str(tmp / "jobs"), "poll_interval": 1.0, **extra}


def job_state(job_id: str) -> str | None:
    """The job's state from Slurm, None once squeue no longer lists it."""
    info = asyncio.run(Slurm().job(job_id))
    return None if info is None else info.state


def queued(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True,
                         text=True).stdout
    return job_id in out.split()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def slurm_kernel(tmp_path: Path) -> Iterator[Kernel]:
    kernel = Kernel(tmp_path, slurm=settings(tmp_path))
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    yield kernel
    kernel.shutdown()
    assert not queued(job_id), "the kernel's job outlived its shutdown"


@pytest.fixture
def filled_short(tmp_path: Path) -> Iterator[list[str]]:
    """Every node of the `short` partition busy, so new jobs there stay PENDING."""
    ids: list[str] = []
    try:  # no filler outlives the test, also when one never ran
        for _ in range(3):
            done = subprocess.run(["sbatch", "--parsable", "-p", "short", "-N1", "--exclusive",
                                   "-t", "5", "-J", "filler", "-o", "/dev/null",
                                   "--wrap", "sleep 300"], capture_output=True, text=True,
                                  check=True)
            ids.append(done.stdout.strip().split(";")[0])
        wait_until(lambda: all(job_state(i) == "RUNNING" for i in ids), 30, "fillers to run")
        yield ids
    finally:
        if ids:
            subprocess.run(["scancel", *ids], check=True)
        wait_until(lambda: not any(queued(i) for i in ids), 30, "fillers to end")


def test_cells_run_on_ranks_across_nodes(slurm_kernel: Kernel) -> None:
    result = slurm_kernel.ok(
        "import os\nfrom mpi4py import MPI\n"
        "print(MPI.COMM_WORLD.allreduce(rank), os.environ['SLURMD_NODENAME'])")
    assert result.text() == "[stdout:0] 3 n1\n[stdout:1] 3 n2\n[stdout:2] 3 n3\n"
    ranks = slurm_kernel.ok("%ranks").text()
    job_id = slurm_kernel.km.provisioner.job_id  # type: ignore[union-attr]
    assert f"Slurm job {job_id} (partition debug) on n[1-3]" in ranks
    assert "of walltime left" in ranks


def test_channels_are_encrypted_and_secrets_stay_off_command_lines(
        slurm_kernel: Kernel) -> None:
    info = slurm_kernel.km.get_connection_info()
    assert info.get("curve_secretkey"), "the kernel's channels are not CurveZMQ-encrypted"
    secrets = [v.decode() if isinstance(v, bytes) else str(v)
               for v in (info["key"], info["curve_secretkey"])]
    job_dir = slurm_kernel.km.provisioner.job_dir  # type: ignore[union-attr]
    assert oct(os.stat(str(job_dir)).st_mode & 0o777) == "0o700"
    assert oct(os.stat(f"{job_dir}/connection.json").st_mode & 0o777) == "0o600"
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert not any(s in cmdline for s in secrets), (
                f"a secret is on the command line of process {pid}")


def test_restart_keeps_the_allocation(slurm_kernel: Kernel) -> None:
    km = slurm_kernel.km
    job_id = km.provisioner.job_id  # type: ignore[union-attr]
    slurm_kernel.ok("x = 1")
    old = slurm_kernel.rank_pids()
    km.restart_kernel(now=False)
    slurm_kernel.kc.wait_for_ready(timeout=60)
    assert km.provisioner.job_id == job_id  # type: ignore[union-attr]
    assert job_state(job_id) == "RUNNING"
    missing = slurm_kernel.run("x")
    assert missing.status == "error" and missing.content["ename"] == "NameError"
    assert set(slurm_kernel.rank_pids()).isdisjoint(old)


def test_existing_allocation_is_used_and_left_running(tmp_path: Path) -> None:
    granted = subprocess.run(["salloc", "--no-shell", "-N", "2", "-p", "debug", "-t", "10",
                              "-J", "user-salloc"], capture_output=True, text=True, check=True)
    job_id = granted.stderr.split("Granted job allocation")[1].split()[0]
    try:
        kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=2, jobid=job_id))
        result = kernel.ok("import os\n"
                           "print(os.environ['SLURM_JOB_ID'], os.environ['SLURMD_NODENAME'])")
        nodes = asyncio.run(Slurm().job(job_id)).nodes  # type: ignore[union-attr]
        assert result.text() == "".join(f"[stdout:{r}] {job_id} {node}\n"
                                        for r, node in enumerate(nodes))
        kernel.shutdown()
        assert job_state(job_id) == "RUNNING", "the user's allocation must stay"
        steps = subprocess.run(["squeue", "-h", "-s", "-j", job_id, "-o", "%i"],
                               capture_output=True, text=True).stdout.split()
        assert not [s for s in steps if not s.endswith(".extern")], steps  # no step left
    finally:
        subprocess.run(["scancel", job_id], check=True)
        wait_until(lambda: not queued(job_id), 30, "the allocation to end")


def test_shutdown_cancels_the_job(tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, slurm=settings(tmp_path))
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    assert job_state(job_id) == "RUNNING"
    kernel.shutdown()
    assert not queued(job_id)
    assert not list((tmp_path / "jobs").glob("*/*.json")), "secrets left in the job dir"


def test_pending_job_is_reported_and_times_out(tmp_path: Path, filled_short: list[str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(KernelStartError) as failure:
        Kernel(tmp_path, slurm=settings(tmp_path, partition="short", time="00:04:00",
                                        launch_timeout=4))
    message = str(failure.value)
    assert "did not start within 4 s (still PENDING: " in message
    assert "it was cancelled" in message
    logged = [r.getMessage() for r in caplog.records]
    reasons = [m.split("PENDING (", 1)[1].rstrip(")") for m in logged if "PENDING (" in m]
    assert reasons, logged  # the server log says why the job waits …
    assert reasons[-1] in message  # … and so does the error
    job_id = next(m.split()[2] for m in logged if m.startswith("Slurm job") and
                  "submitted" in m)
    wait_until(lambda: not queued(job_id), 30, "the timed-out job to leave the queue")


def test_shutdown_while_pending_cancels_the_job(tmp_path: Path,
                                                filled_short: list[str]) -> None:
    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "slurm-pending",
                      slurm=settings(tmp_path, partition="short", time="00:04:00"))

    async def scenario() -> str:
        km = AsyncKernelManager(kernel_name="slurm-pending",
                                kernel_spec_manager=KernelSpecManager(
                                    kernel_dirs=[str(kernels)]))
        # What jupyter_server does with use_pending_kernels: start in the background.
        start = asyncio.ensure_future(km.start_kernel())
        # Slurm and the manager have no events to wait on: poll them.
        while km.provisioner is None or km.provisioner.job_id is None:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        job_id = str(km.provisioner.job_id)
        while (await Slurm().job(job_id)).state != "PENDING":  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await km.provisioner.shutdown_requested(restart=False)
        with pytest.raises(KernelStartError, match="cancelled"):
            await start
        return job_id

    job_id = asyncio.run(scenario())
    wait_until(lambda: not queued(job_id), 30, "the pending job to be cancelled")


@pytest.mark.parametrize(("extra", "message"), [
    ({"partition": "nosuch"}, "nosuch"),
    ({"nodes": 5}, "partition debug has 3 nodes, 5 were requested"),
    ({"partition": "short", "time": "00:10:00"}, "allows at most 00:05:00 of walltime"),
    ({"sbatch_args": ["--mem=999999"]}, "Requested node configuration is not available"),
])
def test_bad_requests_fail_fast_with_slurms_message(tmp_path: Path, extra: dict[str, Any],
                                                    message: str) -> None:
    before = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                                text=True).stdout.split())
    t0 = time.monotonic()
    with pytest.raises((SlurmError, KernelStartError)) as failure:
        Kernel(tmp_path, slurm=settings(tmp_path, **extra))
    assert message in str(failure.value)
    assert time.monotonic() - t0 < 30
    after = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                               text=True).stdout.split())
    assert after <= before, "a rejected kernel left a job in the queue"


def test_missing_sbatch_is_a_clear_error(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    with pytest.raises(SlurmNotFoundError, match="not found on PATH"):
        Kernel(tmp_path, slurm=settings(tmp_path))


def test_failed_job_start_reports_slurms_reason_and_output(tmp_path: Path) -> None:
    with pytest.raises(KernelStartError) as failure:
        Kernel(tmp_path, slurm=settings(tmp_path, setup="echo setup is broken >&2; exit 3"))
    message = str(failure.value)
    assert "ended: FAILED" in message and "exit code 3" in message
    assert "setup is broken" in message


def test_external_scancel_gives_a_dead_kernel_with_the_reason(
        slurm_kernel: Kernel, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    km = slurm_kernel.km
    job_id = km.provisioner.job_id  # type: ignore[union-attr]
    msg_id = slurm_kernel.submit("import time\nprint('running', flush=True)\ntime.sleep(60)")
    assert slurm_kernel.collect(msg_id, until="running") is None
    subprocess.run(["scancel", job_id], check=True)
    notice = slurm_kernel.collect(msg_id, timeout=30, until="Slurm is ending")
    assert notice is None  # the hub said why before it went
    wait_until(lambda: not km.is_alive(), 30, "the kernel to be seen dead")
    assert any(f"Slurm job {job_id} ended: CANCELLED" in r.getMessage()
               for r in caplog.records)


def test_a_busy_slurm_is_logged_once_per_retry_and_the_kernel_lives_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """squeue fails as a busy slurmctld makes it fail (a recorded message) while a kernel
    runs: the server's log says so once per retry, not at every liveness check, and the
    kernel is not reported dead."""
    busy = (DATA / "transient_squeue_socket_timeout.txt").read_text()
    shim = SlurmShim(tmp_path / "shim", fail={"squeue": (3, busy)})
    failed = tmp_path / "shim" / "squeue.failed"  # the shim's count of failures made
    failed.write_text("3")  # none while the kernel starts
    monkeypatch.setenv("PATH", shim.env()["PATH"])
    caplog.set_level(logging.INFO)
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=1))
    try:
        since = time.time()
        failed.write_text("0")  # busy from now: the next three squeue calls fail
        checks = 0

        def answered_again() -> bool:
            nonlocal checks
            checks += 1
            assert kernel.km.is_alive(), "a busy Slurm was taken for a dead kernel"
            return len([c for c in shim.calls(since) if c.command == "squeue"]) > 3

        wait_until(answered_again, 90, "squeue to fail three times, then answer")
        warned = [r.getMessage() for r in caplog.records if "cannot check it" in
                  r.getMessage()]
        assert 1 <= len(warned) <= 3 < checks, (warned, checks)
        assert "Slurm busy (Socket timed out on send/recv operation)" in warned[0]
        assert kernel.ok("print(rank)").text() == "[stdout:0] 0\n"
    finally:
        kernel.shutdown()


def test_walltime_warning_then_expiry(tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # The cell below is the kernel's first (no wait for the ranks before it): Slurm signals
    # at its first time-limit check that falls within walltime_warning + 30 s of the end,
    # which for a 1-minute job can be a second after it starts, while the hub starts; the
    # hub then says it at the top of the first cell, else in the cell running.
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, time="1", walltime_warning=40),
                    wait_ranks=False)
    try:
        km = kernel.km
        job_id = km.provisioner.job_id  # type: ignore[union-attr]
        msg_id = kernel.submit("import time\ntime.sleep(300)")
        assert kernel.collect(msg_id, timeout=150, until="reaches its walltime") is None
        wait_until(lambda: not km.is_alive(), 150, "the job to hit its walltime")
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert f"Slurm job {job_id} ended: TIMEOUT" in logged
    finally:
        kernel.shutdown()


def test_a_walltime_warning_before_the_hub_listens_reaches_the_notebook(
        tmp_path: Path) -> None:
    """Slurm signals up to a minute early: with a short walltime its USR1 may come while the
    batch script is still setting up, before any hub could take it. Here the setup sends it
    itself; the batch script keeps it and the hub says it at the first cell."""
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=1, setup="kill -USR1 $$"),
                    wait_ranks=False)
    try:
        result = kernel.ok("print('first')", timeout=120)
        assert "reaches its walltime" in result.text(), result.text()
        assert "[stdout:0] first" in result.text()
    finally:
        kernel.shutdown()


def test_dead_server_releases_the_allocation(tmp_path: Path) -> None:
    """A Jupyter server that dies (SIGKILL) leaves a hub with no client: its lease runs
    out and the job ends."""
    spec_dir = tmp_path / "kernels"
    write_kernel_spec(spec_dir / "slurm-lease",
                      slurm=settings(tmp_path, client_timeout=5))
    server = subprocess.Popen(
        [sys.executable, "-c", f"""
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
import time
km = KernelManager(kernel_name="slurm-lease",
                   kernel_spec_manager=KernelSpecManager(kernel_dirs=[{str(spec_dir)!r}]))
km.start_kernel()
print(km.provisioner.job_id, flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        job_id = server.stdout.readline().strip()
        assert job_state(job_id) == "RUNNING"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    wait_until(lambda: not queued(job_id), 60, "the lease to release the allocation")


def test_nbclient_runs_a_notebook_on_the_slurm_kernel(tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "slurm-nb", slurm=settings(tmp_path, nodes=2,
                                                           ntasks_per_node=2))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from mpi4py import MPI\nn = MPI.COMM_WORLD.size"),
        nbformat.v4.new_code_cell("print(n, rank)"),
        nbformat.v4.new_code_cell("%%local\nprint(sorted(ranks.pull('n')))"),
    ])
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name="slurm-nb",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    try:
        NotebookClient(nb, km=km, timeout=120).execute()
    finally:
        job_id = km.provisioner.job_id if km.provisioner else None  # type: ignore[attr-defined]
        km.shutdown_kernel()  # nbclient leaves a manager it was given running
    assert job_id is None or not queued(job_id)
    texts = [json.dumps(c["outputs"]) for c in nb.cells]
    assert all(f"[stdout:{r}] 4 {r}" in texts[1] for r in range(4))
    assert "[4, 4, 4, 4]" in texts[2]


# Last: it takes a node down, which other tests would feel.
def test_node_failure_ends_the_kernel_with_slurms_reason(
        slurm_kernel: Kernel, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    km = slurm_kernel.km
    job_id = km.provisioner.job_id  # type: ignore[union-attr]
    try:
        subprocess.run(["scontrol", "update", "NodeName=n2", "State=DOWN",
                        "Reason=hpckernel-test"], check=True)
        wait_until(lambda: not km.is_alive(), 60, "the kernel to be seen dead")
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert f"Slurm job {job_id} ended: NODE_FAIL" in logged or (
            f"Slurm job {job_id} ended: CANCELLED" in logged), logged
    finally:
        # A DOWN node returns when its slurmd registers again (ReturnToService=2): restart
        # n2's slurmd (the test bed starts the missing one), as an admin would.
        state = Path(os.environ.get("HPCKERNEL_TESTBED", "/tmp/hpckernel-testbed"))
        slurmd = int(next(state.rglob("slurmd-n2.pid")).read_text())
        os.kill(slurmd, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{slurmd}").exists(), 30, "n2's slurmd to stop")
        subprocess.run([sys.executable, "tests/cluster/testbed.py", "start"], check=True,
                       cwd=Path(__file__).resolve().parents[2])

        def n2_back() -> bool:
            subprocess.run(["scontrol", "update", "NodeName=n2", "State=RESUME"],
                           capture_output=True)
            state = subprocess.run(["sinfo", "-h", "-n", "n2", "-o", "%T"],
                                   capture_output=True, text=True).stdout.strip()
            return not queued(job_id) and state == "idle"

        wait_until(n2_back, 240, "the job to leave and n2 to be idle")
        # Healthy again for the tests that follow: a step runs on every node.
        subprocess.run(["srun", "-N3", "-n3", "-t", "1", "true"], check=True, timeout=180)
