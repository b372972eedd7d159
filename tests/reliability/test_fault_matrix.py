"""The rows of the fault matrix not already covered by tests/kernel and tests/slurm (see the
README's table): a killed hub or node under Slurm, a killed Jupyter server re-attached,
two clients on one kernel, ten kernels at once on the cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_client.session import Session

from hpckernel.kernelspec import write_kernel_spec
from hpckernel.slurm import Slurm
from tests.kernel.harness import Kernel, mpi_files
from tests.slurm.test_provisioner import job_state, queued, settings, wait_until


def _new_mpi_files_of_n3(before: set[str]) -> set[str]:
    """MPICH's shared-memory files made since ``before`` by ranks on n3: MPICH names a
    node's file ``mpich_shm_<job hash>_<node index>``, n3's end in ``_2`` (local kernels
    of tests running beside this one make ``_0`` files only)."""
    return {name for name in set(os.listdir("/dev/shm")) - before
            if name.startswith("mpich_shm_") and name.endswith("_2")}


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
def test_killed_hub_ends_job_and_ranks(tmp_path: Path, cluster_env: dict[str, str]) -> None:
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=2))
    try:
        km = kernel.km
        job_id = km.provisioner.job_id  # type: ignore[union-attr]
        ranks = kernel.rank_pids()
        job_dir = Path(str(km.provisioner.job_dir))  # type: ignore[union-attr]
        files = mpi_files(kernel)  # unlinked at the start (MPICH would only in MPI_Finalize)
        kernel.ok("%%px --noblock\nimport time\ntime.sleep(60)")  # busy ranks
        os.kill(int((job_dir / "hub.ready").read_text()), signal.SIGKILL)
        wait_until(lambda: not km.is_alive(), 30, "the kernel to be seen dead")
        wait_until(lambda: not queued(job_id), 60, "the job to end")
        wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in ranks), 30,
                   "the ranks to end")
        assert [f for f in files if os.path.exists(f)] == []
    finally:
        kernel.shutdown()


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
def test_killed_node_daemon_gives_a_lost_rank_or_dead_kernel(
        tmp_path: Path, cluster_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """A slurmd crash (its process killed): Slurm declares the node dead after
    SlurmdTimeout; the kernel ends with NODE_FAIL and the allocation is released."""
    import logging

    caplog.set_level(logging.INFO)
    state = Path(cluster_env.get("HPCKERNEL_TESTBED", "/tmp/hpckernel-testbed"))
    shm_before = set(os.listdir("/dev/shm"))
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=3))
    km = kernel.km
    job_id = km.provisioner.job_id  # type: ignore[union-attr]
    pidfile = next(state.rglob("slurmd-n3.pid"))
    try:
        msg_id = kernel.submit("import time\nprint('running', flush=True)\ntime.sleep(600)")
        assert kernel.collect(msg_id, until="running") is None
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        wait_until(lambda: not km.is_alive(), 150, "the kernel to be seen dead")
        wait_until(lambda: not queued(job_id), 60, "the allocation to be released")
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "NODE_FAIL" in logged or "CANCELLED" in logged, logged
    finally:
        kernel.shutdown()
        # Bring n3 back: the test bed starts missing daemons again.
        subprocess.run([sys.executable, "tests/cluster/testbed.py", "start"], check=True,
                       cwd=Path(__file__).resolve().parents[2])
        subprocess.run(["scontrol", "update", "NodeName=n3", "State=RESUME"],
                       capture_output=True)
        wait_until(lambda: subprocess.run(["sinfo", "-h", "-n", "n3", "-o", "%T"],
                                          capture_output=True, text=True).stdout.strip()
                   == "idle", 90, "n3 to be idle again")
        # Healthy again for the tests that follow: a step runs on every node.
        subprocess.run(["srun", "-N3", "-n3", "-t", "1", "true"], check=True, timeout=180)
    # The lost node's ranks were SIGKILLed with everything around them; MPI's file of the
    # node was unlinked when they started, so nothing of it is left.
    assert not _new_mpi_files_of_n3(shm_before)


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
def test_killed_server_reattach_within_the_lease(tmp_path: Path,
                                                 cluster_env: dict[str, str]) -> None:
    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "slurm-reattach",
                      slurm=settings(tmp_path, nodes=2, client_timeout=120))
    server = subprocess.Popen([sys.executable, "-c", f"""
import asyncio, json, time
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name="slurm-reattach",
                   kernel_spec_manager=KernelSpecManager(kernel_dirs=[{str(kernels)!r}]))
km.start_kernel()
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
kc.execute_interactive("survivor = 42", timeout=60, output_hook=lambda m: None)
info = asyncio.run(km.provisioner.get_provisioner_info())
print(json.dumps({{"connection_file": km.connection_file, "provisioner": info,
                   "kernel_id": km.kernel_id}}, default=str), flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    saved = json.loads(server.stdout.readline())
    server.send_signal(signal.SIGKILL)
    server.wait()
    job_id = saved["provisioner"]["job_id"]
    assert job_state(job_id) == "RUNNING"
    # A new server process re-attaches: connection file plus the provisioner's info.
    km = KernelManager(kernel_name="slurm-reattach",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    km.load_connection_file(saved["connection_file"])
    km.kernel_id = saved["kernel_id"]
    km.provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
        km.kernel_id, km.kernel_spec, parent=km)
    asyncio.run(km.provisioner.load_provisioner_info(saved["provisioner"]))
    km._connect_control_socket()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        texts: list[str] = []
        kc.execute_interactive("print(survivor)", timeout=60,
                               output_hook=lambda m: texts.append(m["content"].get("text", "")))
        assert "[stdout:0-1] 42" in "".join(texts)
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    wait_until(lambda: not queued(job_id), 60, "the job to end at shutdown")


def test_two_clients_see_each_others_output(tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, ranks=2)
    # A second frontend has a session of its own (same key): sharing one session id would
    # make the two clients one ZMQ identity.
    other = kernel.km.client(session=Session(key=kernel.km.session.key))
    other.start_channels()
    try:
        other.wait_for_ready(timeout=30)
        # B's IOPub subscription is in place once B has seen output of its own.
        warm = other.execute_interactive("print('B is listening')", timeout=60)
        assert warm["content"]["status"] == "ok"
        mine = kernel.submit("print('from A')")
        theirs = other.execute("print('from B')")
        result_a = kernel.collect(mine, timeout=60)
        assert result_a is not None and result_a.text() == "[stdout:0-1] from A\n"
        # B's reply arrives on B's shell channel only, with B's output on both IOPubs.
        reply_b = other.get_shell_msg(timeout=60)
        assert reply_b["parent_header"]["msg_id"] == theirs
        assert reply_b["content"]["status"] == "ok"
        seen_by_b = []
        idle: set[str] = set()
        while idle != {mine, theirs}:  # either cell may run first
            msg = other.get_iopub_msg(timeout=30)
            parent = msg["parent_header"].get("msg_id")
            if msg["msg_type"] == "stream":
                seen_by_b.append((parent, msg["content"]["text"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" and (
                    parent in (mine, theirs)):
                idle.add(parent)
        assert (mine, "[stdout:0-1] from A\n") in seen_by_b
        assert (theirs, "[stdout:0-1] from B\n") in seen_by_b
    finally:
        other.stop_channels()
        kernel.shutdown()


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
def test_ten_kernels_at_once(tmp_path: Path, cluster_env: dict[str, str],
                             caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO)
    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "slurm-many",
                      slurm=settings(tmp_path, nodes=1, launch_timeout=300))

    async def one(i: int) -> tuple[str, str]:
        km = AsyncKernelManager(kernel_name="slurm-many", kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[str(kernels)]))
        await km.start_kernel()
        job_id = str(km.provisioner.job_id)  # type: ignore[union-attr]
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=120)
            texts: list[str] = []
            reply = await kc.execute_interactive(
                f"print({i} * 10 + rank)", timeout=300,
                output_hook=lambda m: texts.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok"
            return job_id, "".join(texts)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel()

    async def all_of_them() -> list[Any]:
        return await asyncio.gather(*(one(i) for i in range(10)), return_exceptions=True)

    results = asyncio.run(all_of_them())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    for i, (job_id, text) in enumerate(results):
        assert text.endswith(f"[stdout:0] {i * 10}\n"), text
        assert not queued(job_id)
    assert len({job_id for job_id, _ in results}) == 10
    left = [j for j in asyncio.run(Slurm().jobs()) if j.job_id in {r[0] for r in results}]
    assert left == []
