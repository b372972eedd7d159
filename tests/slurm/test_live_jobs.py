"""Live batch jobs on the virtual cluster: a 2-node x 2-rank sbatch'ed simulation
(``tests/live/halo.py`` under ``srun python -m hpckernel.live``) attached from this process
(as a plain Python notebook would), from a local kernel and through the login node."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import hpckernel
from hpckernel.hub.requests import RemoteError
from hpckernel.live.client import JobEnded
from tests.kernel.harness import Kernel

from .test_login import INTRUDER, _as_intruder, intruder, intruder_site, ssh_config  # noqa: F401
from .test_provisioner import queued

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]

HALO = Path(__file__).parents[1] / "live" / "halo.py"
LOOP_LINE = next(i for i, line in enumerate(HALO.read_text().splitlines(), 1) if "# LOOP" in line)
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
            "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}


class LiveSim:
    """One sbatch'ed run of the simulation."""

    def __init__(self, tmp: Path, steps: int, pause: float = 0.05) -> None:
        self.root = tmp / "jobs"
        self.out = tmp / "sim.out"
        script = tmp / "sim.sh"
        script.write_text(f"#!/bin/bash\nsrun --mpi=pmi2 {sys.executable} -m hpckernel.live "
                          f"{HALO} {steps} {pause} 2000\n")
        env = {**os.environ, **THROTTLE, "HPCKERNEL_JOB_ROOT": str(self.root)}
        self.job = subprocess.run(
            ["sbatch", "--parsable", "-N", "2", "--ntasks-per-node", "2", "--time", "5",
             "-p", "debug", "--output", str(self.out), str(script)],
            capture_output=True, text=True, env=env, check=True).stdout.strip().split(";")[0]
        deadline = time.monotonic() + 60
        while not list(self.root.glob(f"live-{self.job}.*/live.json")):
            assert time.monotonic() < deadline, f"no live.json; output: {self.output()}"
            time.sleep(0.2)

    def output(self) -> str:
        return self.out.read_text() if self.out.exists() else ""

    def result(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while queued(self.job):
            assert time.monotonic() < deadline, "the job did not end"
            time.sleep(0.5)
        match = re.search(r"RESULT (\S+) steps (\d+)", self.output())
        assert match, self.output()
        return f"{match[1]} {match[2]}"

    def cancel(self) -> None:
        subprocess.run(["scancel", self.job], check=False)


def plain_result(tmp: Path, steps: int) -> str:
    """The simulation's result when nobody attaches (run locally with mpiexec)."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    out = subprocess.run([str(mpiexec), "-n", "4", sys.executable, str(HALO), str(steps), "0",
                          "2000"], capture_output=True, text=True, env={**os.environ,
                                                                        **THROTTLE},
                         timeout=120, check=True).stdout
    match = re.search(r"RESULT (\S+) steps (\d+)", out)
    assert match, out
    return f"{match[1]} {match[2]}"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[LiveSim]:
    run = LiveSim(tmp_path, steps=400)
    yield run
    run.cancel()


def test_where_peek_px_detach_and_attach_again(sim: LiveSim, tmp_path: Path) -> None:
    job = hpckernel.attach(sim.job, job_root=str(sim.root))
    assert job.ranks == 4 and job.info.nodes == 2
    stacks = job.where()
    assert sorted(stacks) == [0, 1, 2, 3]
    for text in stacks.values():  # the loop's line on every rank (or the next ones of it)
        lines = [int(n) for n in re.findall(rf"{re.escape(str(HALO))}:(\d+) in main", text)]
        assert lines and LOOP_LINE <= lines[-1] <= LOOP_LINE + 10, text
    first = job.peek("step")
    time.sleep(1.0)
    second = job.peek("step")
    assert sorted(first) == [0, 1, 2, 3] and all(second[r] > first[r] for r in first)
    replies = job.execute("total = comm.allreduce(rank)\nprint(total, step)", silent=True)
    outputs = {r: h["stdout"].split() for r, h in replies.items()}
    assert {o[0] for o in outputs.values()} == {"6"}
    assert len({o[1] for o in outputs.values()}) == 1, "the ranks ran the cell at different steps"
    with pytest.raises(RemoteError, match="ZeroDivisionError on ranks 0-3"):
        job.execute("1 / 0", silent=True)
    assert job.values("energy")[0], "no published values"
    job.detach()
    again = hpckernel.attach(sim.job, job_root=str(sim.root))
    assert again.execute("comm.allreduce(1)", silent=True)[2]["out"] == "4"
    assert sim.result() == plain_result(tmp_path, 400)
    assert again.ended.wait(30) and again.state == "COMPLETED", again.state


def test_scancel_while_attached_is_reported(sim: LiveSim) -> None:
    job = hpckernel.attach(sim.job, job_root=str(sim.root))
    job.peek("step")
    sim.cancel()
    assert job.ended.wait(15), "the end of the job did not reach the notebook"
    assert job.state == "CANCELLED", job.state
    with pytest.raises(JobEnded, match="CANCELLED"):
        job.peek("step")


def test_a_killed_notebook_kernel_leaves_the_job_to_its_result(tmp_path: Path) -> None:
    run = LiveSim(tmp_path, steps=200)
    kernel = Kernel(tmp_path, ranks=1)
    try:
        root = json.dumps(str(run.root))
        kernel.ok(f"%%local\nimport hpckernel\njob = hpckernel.attach({run.job!r}, "
                  f"job_root={root})")
        got = kernel.ok(f"%%px --job {run.job} --targets 0:4\nprint(comm.allreduce(rank))")
        assert "[stdout:0-3] 6" in got.text(), got.text()
        where = kernel.ok(f"%where --job {run.job}").text()
        assert where.startswith("[where:0-3]") and f"{HALO}:" in where, where
        # A cell queued, then the notebook's kernel SIGKILLed while it waits.
        kernel.submit(f"%%px --job {run.job}\nimport time; time.sleep(0.1)")
        for pid in kernel.process_tree():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        kernel.km.cleanup_resources()
    assert run.result() == plain_result(tmp_path, 200)


def test_another_user_can_neither_attach_nor_peek(sim: LiveSim, intruder: str,  # noqa: F811
                                                  intruder_site: str) -> None:  # noqa: F811
    live = next(sim.root.glob(f"live-{sim.job}.*/live.json"))
    denied = subprocess.run(["/usr/sbin/runuser", "-u", intruder, "--", "cat", str(live)],
                            capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    info = json.loads(live.read_text())
    code = f"""
import json, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
pub, sec = zmq.curve_keypair()
s.curve_serverkey = {info['server_public']!r}.encode()
s.curve_publickey, s.curve_secretkey = pub, sec
s.connect({info['url']!r})
s.send_multipart([b"peek", json.dumps({{"id": "x", "names": ["step"]}}).encode(), b""])
print(json.dumps(bool(s.poll(3000))))
"""
    attack = _as_intruder(intruder, code, intruder_site)
    assert attack.returncode == 0, attack.stderr
    assert json.loads(attack.stdout) is False, "the job answered an intruder"
    job = hpckernel.attach(sim.job, job_root=str(sim.root))
    assert sorted(job.peek("step")) == [0, 1, 2, 3]
    job.detach()


def test_through_the_login_node(sim: LiveSim, tmp_path: Path, cluster_env: dict[str, str]
                                ) -> None:
    config = ssh_config(tmp_path, cluster_env)
    job = hpckernel.attach(sim.job, login="testlogin", job_root=str(sim.root),
                           ssh_args=["-F", str(config)])
    assert sorted(job.where()) == [0, 1, 2, 3]
    assert job.execute("comm.allreduce(2)", silent=True)[0]["out"] == "8"
    master = job.route.access.ssh.master  # type: ignore[union-attr]
    assert master is not None and psutil.pid_exists(master.pid)
    job.detach()
    assert not psutil.pid_exists(master.pid) or psutil.Process(master.pid).status() == \
        psutil.STATUS_ZOMBIE, "the SSH master outlived the detach"
