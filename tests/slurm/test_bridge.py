"""The "Slurm MPI" kernelspec started as front ends without kernel provisioners start it
(VS Code, `jupyter console`): its provisioner metadata removed, so jupyter_client runs its
argv — `python -m hpckernel.bridge` — which submits the job and relays (or, with a login
node, tunnels) the front end's ports to the hub. Real Slurm, sshd, MPI and ZMQ."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import psutil
import pytest
from jupyter_client.connect import write_connection_file
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from hpckernel.kernelspec import write_kernel_spec
from tests.cluster.fixtures import testbed_env
from tests.kernel.harness import Kernel, ended
from tests.slurm.test_login import ssh_config

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]

NAME = "slurm-argv"


def write_argv_spec(tmp: Path, login: bool) -> Path:
    """The Slurm kernelspec as `hpckernel install --slurm` writes it, minus the provisioner
    metadata, exactly as a front end that ignores it sees it."""
    settings: dict[str, Any] = {"partition": "debug", "nodes": 2, "ntasks_per_node": 1,
                                "time": "00:10:00", "poll_interval": 1.0}
    if login:
        settings.update(login="testlogin", connect_timeout=5,
                        ssh_args=["-F", str(ssh_config(tmp, testbed_env()))])
    else:
        settings["job_root"] = str(tmp / "jobs")
    path = write_kernel_spec(tmp / "kernels" / NAME, slurm=settings)
    spec = json.loads((path / "kernel.json").read_text())
    del spec["metadata"]["kernel_provisioner"]
    (path / "kernel.json").write_text(json.dumps(spec))
    return tmp / "kernels"


class ArgvKernel(Kernel):
    """A kernel whose launcher jupyter_client starts from argv; its stderr in a file."""

    def __init__(self, tmp: Path, login: bool) -> None:
        kernels = write_argv_spec(tmp, login)
        self.stderr_path = tmp / f"launcher-{time.monotonic_ns()}.err"
        self.km = KernelManager(kernel_name=NAME, kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[str(kernels)]))
        env = dict(os.environ)
        if login:
            env.pop("SLURM_CONF", None)  # only the login node knows the cluster
        # Kept open: a restart starts the next launcher with the same arguments.
        self._err = open(self.stderr_path, "w")
        self.km.start_kernel(env=env, cwd=str(tmp), stderr=self._err)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.ranks = 2
        self._pending = {}
        self._iopub_stash = {}
        self._replies = {}
        self.ok("pass")

    @property
    def launcher(self) -> psutil.Process:
        return psutil.Process(self.km.provisioner.process.pid)  # type: ignore[union-attr]

    def shutdown(self) -> None:
        super().shutdown()
        self._err.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def job_id(self) -> str:
        found = re.findall(r"Slurm job (\d+) submitted", self.stderr())
        assert found, self.stderr()
        return str(found[-1])


def queued(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True,
                         text=True, env={**os.environ, **testbed_env()}).stdout
    return job_id in out.split()


def _queue() -> str:
    """The queue, for a failure message (a job pending behind whose?)."""
    return subprocess.run(["squeue", "-o", "%i %T %r %D %N %j"], capture_output=True,
                          text=True, env={**os.environ, **testbed_env()}).stdout


def wait_until(predicate: Any, timeout: float, what: str,
               detail: Callable[[], str] = str) -> None:
    """Poll ``predicate`` (these are other processes' states: no event to wait on);
    ``detail`` says what was seen when it times out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, (
            f"timed out after {timeout} s waiting for {what}: {detail()}")
        time.sleep(0.2)


@pytest.fixture(params=["relay", "login"])
def argv_kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArgvKernel]:
    kernel = ArgvKernel(tmp_path, login=request.param == "login")
    jobs = [kernel.job_id()]
    yield kernel
    jobs.append(kernel.job_id())  # a restart submits a new job
    kernel.shutdown()
    wait_until(lambda: not any(queued(j) for j in jobs), 30, "the jobs to leave the queue")


def test_argv_kernel_runs_on_the_allocation(argv_kernel: ArgvKernel) -> None:
    job_id = argv_kernel.job_id()
    assert "PENDING" in argv_kernel.stderr() or "RUNNING" in argv_kernel.stderr()
    result = argv_kernel.ok("import os\nprint(os.environ['SLURM_JOB_ID'], "
                            "os.environ['SLURMD_NODENAME'])")
    assert result.text() == f"[stdout:0] {job_id} n1\n[stdout:1] {job_id} n2\n"
    assert argv_kernel.ok("%%px --targets 1\nprint(rank)").text() == "[stdout:1] 1\n"
    # stdin: the hub's input_request finds its way back through the relay to this client.
    answered = argv_kernel.run("%%local\nprint('got', input('name? '))", allow_stdin=True,
                               stdin_hook=lambda msg: argv_kernel.kc.input("alice"))
    assert answered.status == "ok" and "got alice" in answered.text()
    # Interrupt by message (interrupt_mode "message"), then by SIGINT to the launcher.
    for how in ("message", "SIGINT"):
        msg_id = argv_kernel.submit("import time\nprint('go', flush=True)\ntime.sleep(60)")
        argv_kernel.collect(msg_id, until="go")
        if how == "message":
            argv_kernel.km.interrupt_kernel()
        else:
            argv_kernel.launcher.send_signal(signal.SIGINT)
        result = argv_kernel.collect(msg_id, timeout=30)
        assert result is not None and result.status == "error", how
        assert "KeyboardInterrupt" in json.dumps(result.content), how
    # The loopback listeners are the launcher's (relay) or its SSH master's (tunnels).
    info = argv_kernel.km.get_connection_info()
    listeners = _listeners([argv_kernel.launcher, *argv_kernel.launcher.children(True)])
    assert {c.laddr.ip for c in listeners} == {"127.0.0.1"}
    assert {info[p] for p in ("shell_port", "iopub_port", "stdin_port", "control_port",
                              "hb_port")} <= {c.laddr.port for c in listeners}
    # A restart starts a new launcher, so a new job; the old one leaves the queue.
    argv_kernel.km.restart_kernel()
    argv_kernel.kc.wait_for_ready(timeout=120)
    assert argv_kernel.job_id() != job_id
    wait_until(lambda: not queued(job_id), 30, "the first job to end after the restart")
    assert argv_kernel.ok("print(rank)").text() == "[stdout:0] 0\n[stdout:1] 1\n"


def _listeners(procs: list[psutil.Process]) -> list[Any]:
    """TCP listeners of `procs`; a short-lived child (an ssh that runs one Slurm command
    through the login node) may exit between the listing and the look."""
    found = []
    for proc in procs:
        try:
            found += [c for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.parametrize("login", [False, True], ids=["relay", "login"])
def test_killed_launcher_cancels_the_job(tmp_path: Path, login: bool) -> None:
    kernel = ArgvKernel(tmp_path, login)
    job_id = kernel.job_id()
    launcher = kernel.launcher
    children = launcher.children(recursive=True)
    launcher.kill()
    wait_until(lambda: not queued(job_id), 30, "the job to be cancelled",
               lambda: f"queue:\n{_queue()}launcher's stderr:\n{kernel.stderr()}")
    kernel.kc.stop_channels()
    kernel.km.cleanup_resources()
    # Nothing of it is left: the SSH master and its tunnels end with the job.
    wait_until(lambda: all(ended(p) for p in children), 15, "the children")


def test_external_scancel_ends_the_launcher_with_slurms_reason(tmp_path: Path) -> None:
    kernel = ArgvKernel(tmp_path, login=False)
    job_id = kernel.job_id()
    subprocess.run(["scancel", job_id], check=True)
    wait_until(lambda: not kernel.km.is_alive(), 30, "the launcher to exit")
    assert kernel.km.provisioner.process.returncode != 0  # type: ignore[union-attr]
    assert f"Slurm job {job_id} ended: CANCELLED" in kernel.stderr(), kernel.stderr()
    kernel.shutdown()
    assert not queued(job_id)


def test_jupyter_console_runs_a_cell_on_the_ranks(tmp_path: Path) -> None:
    kernels = write_argv_spec(tmp_path, login=False)
    env = {**os.environ, "JUPYTER_PATH": str(kernels.parent), "TERM": "dumb"}
    console = pexpect.spawn(str(Path(sys.executable).parent / "jupyter"),
                            ["console", "--kernel", NAME, "--simple-prompt"], env=env,
                            cwd=str(tmp_path), timeout=120, encoding="utf-8")
    console.logfile_read = seen = io.StringIO()
    try:
        console.expect(r"In \[1\]: ")
        console.sendline("import os; print(rank, os.environ['SLURMD_NODENAME'])")
        console.expect(r"\[stdout:0\] 0 n1")
        console.expect(r"\[stdout:1\] 1 n2")
        console.expect(r"In \[2\]: ")
        job_ids = re.findall(r"Slurm job (\d+) submitted", seen.getvalue())
        assert job_ids, seen.getvalue()
        console.sendeof()
        console.expect(r"really want to exit")
        console.sendline("y")
        console.expect(pexpect.EOF, timeout=60)
    finally:
        console.close(force=True)
    for job_id in job_ids:
        wait_until(lambda: not queued(job_id), 30, "the job to end")  # noqa: B023


def test_a_bare_slurm_hub_outside_an_allocation_refuses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_JOB")}
    done = subprocess.run(
        [sys.executable, "-m", "hpckernel.hub", "-f", str(tmp_path / "c.json"),
         "--HubKernel.launcher_class=hpckernel.hub.rank_launchers.SrunLauncher"],
        capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "there is no Slurm allocation here" in done.stderr
    assert "mpiexec" not in done.stderr


def _launcher_argv(tmp: Path, *options: str) -> list[str]:
    connection = tmp / "connection.json"
    write_connection_file(str(connection), ip="127.0.0.1", key=b"k" * 32)
    return [sys.executable, "-m", "hpckernel.bridge", "-f", str(connection),
            "--partition=debug", "--nodes=1", "--time=00:05:00",
            f"--job-root={tmp / 'jobs'}", *options]


def test_a_bad_request_ends_the_launcher_with_slurms_message(tmp_path: Path) -> None:
    done = subprocess.run(_launcher_argv(tmp_path, "--partition=nosuch"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "nosuch" in done.stderr and "submitted" not in done.stderr, done.stderr


def test_a_connection_file_the_bridge_cannot_serve_is_refused_before_anything_is_queued(
        tmp_path: Path) -> None:
    """A transport other than tcp, or a port of the front end's that another process holds:
    one line saying so, and no job (not even its directory)."""
    argv = _launcher_argv(tmp_path)
    connection = Path(argv[argv.index("-f") + 1])
    info = json.loads(connection.read_text())
    connection.write_text(json.dumps({**info, "transport": "ipc"}))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "asks for transport 'ipc': the Slurm kernel serves tcp only" in done.stderr
    connection.write_text(json.dumps(info))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", info["shell_port"]))
        holder.listen()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on shell_port {info['shell_port']}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "jobs").exists()


@pytest.mark.parametrize("how", ["front end killed", "SIGTERM"])
def test_the_front_end_going_away_or_sigterm_cancels_the_job(tmp_path: Path, how: str
                                                             ) -> None:
    """The launcher's parent (the front end) is SIGKILLed, or the launcher gets SIGTERM:
    the launcher cancels the job and exits."""
    err = tmp_path / "launcher.err"
    err.touch()
    front_end = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         f"subprocess.Popen(sys.argv[1:], stderr=open({str(err)!r}, 'w'))\n"
         "time.sleep(600)", *_launcher_argv(tmp_path)])
    try:
        # Connected, or the launcher exited (a zombie: the front end does not reap it; it
        # says why on stderr): no waiting for nothing.
        wait_until(lambda: "the kernel is connected" in err.read_text()
                   or any(ended(p) for p in psutil.Process(front_end.pid).children()), 120,
                   "the launcher to connect", lambda: err.read_text() + _queue())
        assert "the kernel is connected" in err.read_text(), err.read_text()
        # Its walltime (5 min) is the default walltime_warning: no USR1 at the job's start.
        assert "no walltime warning" in err.read_text()
        job_id = re.findall(r"Slurm job (\d+) submitted", err.read_text())[0]
        launcher = psutil.Process(front_end.pid).children()[0]
        if how == "SIGTERM":
            launcher.terminate()
            wait_until(lambda: ended(launcher), 30, "the launcher to exit")
    finally:
        front_end.kill()
        front_end.wait()
    wait_until(lambda: not queued(job_id), 30, "the job to be cancelled")
    wait_until(lambda: ended(launcher), 30, "the launcher to exit")
    expected = ("SIGTERM" if how == "SIGTERM"
                else "the front end that started the kernel is gone")
    assert f"{expected}: cancelling the kernel's job" in err.read_text()
