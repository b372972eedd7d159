"""Live batch jobs on the virtual cluster: a 2-node x 2-rank sbatch'ed simulation
(``tests/live/halo.py`` under ``srun python -m hpckernel.live``) attached from this process
(as a plain Python notebook would), from a "Slurm MPI" kernel, from a local kernel and
through the login node; the guarantees: the job's end told with Slurm's state (completion,
scancel, walltime, a crashed rank), the notebook's death or a cut network harmless and its
queued cells dropped, several notebooks at once, only the owner."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import hpckernel
from hpckernel.hub.requests import RemoteError
from hpckernel.live.client import LiveJob
from hpckernel.live.errors import JobEnded
from tests.dashboard.widgets import Comms
from tests.intruder import as_intruder
from tests.kernel.harness import Kernel, ended
from tests.live.shm import until_mpi_files_unlinked

from .test_login import ssh_config
from .test_provisioner import queued, settings

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]

HALO = Path(__file__).parents[1] / "live" / "halo.py"
LOOP_LINE = next(i for i, line in enumerate(HALO.read_text().splitlines(), 1) if "# LOOP" in line)
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
            "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}


class LiveSim:
    """One sbatch'ed run of the simulation."""

    def __init__(self, tmp: Path, steps: int, pause: float = 0.05, crash: int = -1,
                 walltime: str = "5", name: str = "sim", root: Path | None = None) -> None:
        self.root = root or tmp / "jobs"
        self.out = tmp / f"{name}.out"
        script = tmp / f"{name}.sh"
        # --kill-on-bad-exit: a crashed rank ends the step (and the job), as MPI jobs want.
        script.write_text(f"#!/bin/bash\nsrun --mpi=pmi2 --kill-on-bad-exit=1 "
                          f"{sys.executable} -m hpckernel.live {HALO} {steps} {pause} 2000 "
                          f"{crash}\n")
        env = {**os.environ, **THROTTLE, "HPCKERNEL_JOB_ROOT": str(self.root)}
        self.job = subprocess.run(
            ["sbatch", "--parsable", "-N", "2", "--ntasks-per-node", "2", "--time", walltime,
             "-p", "debug", "--output", str(self.out), str(script)],
            capture_output=True, text=True, env=env, check=True).stdout.strip().split(";")[0]
        deadline = time.monotonic() + 60
        while not list(self.root.glob(f"live-{self.job}.*/live.json")):
            assert time.monotonic() < deadline, f"no live.json; output: {self.output()}"
            time.sleep(0.2)

    def output(self) -> str:
        return self.out.read_text() if self.out.exists() else ""

    def ended(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while queued(self.job):
            assert time.monotonic() < deadline, "the job did not end"
            time.sleep(0.5)

    def result(self, timeout: float = 180) -> str:
        self.ended(timeout)
        match = re.search(r"RESULT (\S+) steps (\d+)", self.output())
        assert match, self.output()
        return f"{match[1]} {match[2]}"

    def attach(self, **kwargs: object) -> LiveJob:
        job = hpckernel.attach(self.job, job_root=str(self.root), **kwargs)  # type: ignore[arg-type]
        _until_running(job)
        return job

    def cancel(self) -> None:
        subprocess.run(["scancel", self.job], check=False)


def _until_running(job: LiveJob) -> None:
    """Until the program's loop runs (its ranks may still import): each peek a round trip."""
    for _ in range(600):
        try:
            job.peek("step")
            return
        except RemoteError:
            time.sleep(0.1)
    pytest.fail("the program's loop did not start")


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


def test_where_peek_px_detach_and_attach_again(sim: LiveSim, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    job = sim.attach()
    assert job.ranks == 4 and len(job.nodes) == 2
    stacks = job.where()
    assert sorted(stacks) == [0, 1, 2, 3]
    for text in stacks.values():  # the loop's line on every rank (or the next ones of it)
        lines = [int(n) for n in re.findall(rf"{re.escape(str(HALO))}:(\d+) in main", text)]
        assert lines and LOOP_LINE <= lines[-1] <= LOOP_LINE + 10, text
    first = job.peek("step")
    time.sleep(1.0)  # the program's own pace: it must have stepped on meanwhile
    second = job.peek("step")
    assert sorted(first) == [0, 1, 2, 3] and all(second[r] > first[r] for r in first)
    capsys.readouterr()
    job.execute("total = comm.allreduce(rank)\nprint(total, step)")
    out = capsys.readouterr().out  # one line for all: the same step on every rank
    assert re.fullmatch(r"\[stdout:0-3\] 6 \d+\n", out), out
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        job.execute("1 / 0")
    assert job.values("energy")[0], "no published values"
    job.detach()
    again = sim.attach()
    again.execute("comm.allreduce(1)")
    assert capsys.readouterr().out == "[out:0-3] 4\n"
    assert sim.result() == plain_result(tmp_path, 400)
    assert again.pool.ended.wait(30) and again.state == "COMPLETED", again.state


def test_from_a_slurm_kernel_with_dashboard_and_squeue(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel's job gets the job root (HPCKERNEL_* passes into jobs): %squeue looks there.
    monkeypatch.setenv("HPCKERNEL_JOB_ROOT", str(tmp_path / "jobs"))
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, nodes=1, ntasks_per_node=1))
    sims: list[LiveSim] = []
    try:
        sim = LiveSim(tmp_path, steps=100_000)
        sims.append(sim)
        comms = Comms(kernel)
        kernel.ok(f"%attach {sim.job} --job-root {sim.root}")
        _until = ("import time\nfor _ in range(300):\n    try:\n"
                  f"        hpckernel.attach({sim.job!r}).peek('step'); break\n"
                  "    except Exception:\n        time.sleep(0.1)")
        kernel.ok(f"%%local\nimport hpckernel\n{_until}")
        got = kernel.ok(f"%%px --job {sim.job}\nprint(comm.allreduce(rank))").text()
        assert got == "[stdout:0-3] 6\n", got
        where = kernel.ok(f"%where --job {sim.job}").text()
        assert where.startswith("[where:") and f"{HALO}, line" in where, where
        own = kernel.ok("print(rank)").text()  # the kernel's own ranks are still its own
        assert own == "[stdout:0] 0\n", own
        comms.run(f"%dashboard --job {sim.job}")
        # Each rank's state, CPU and memory (the agents' load, passed on by the endpoint).
        comms.wait(lambda: any("hpc-ranks" in str(s.get("value")) and "MiB" in s["value"]
                               for s in comms.state.values()), what="the ranks' load")
        table = [s["value"] for s in comms.state.values()
                 if "hpc-ranks" in str(s.get("value", ""))][-1]
        assert all(f"<td>{r}</td>" in table for r in range(4)), table
        assert f"Slurm job {sim.job}" in str(comms.state), "the dashboard names no job"
        comms.run("%squeue")
        comms.wait(lambda: any(s.get("live") == [sim.job] for s in comms.state.values()),
                   what="%squeue marking the live job")
    finally:
        kernel.shutdown()
        for sim in sims:
            sim.cancel()


def test_a_killed_notebook_kernel_leaves_the_job_and_its_queued_cells_are_dropped(
        tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, ranks=1)  # started first: its start is no part of the job's
    killed = False
    try:
        run = LiveSim(tmp_path, steps=500)
        kernel.ok(f"%attach {run.job} --job-root {run.root}")
        kernel.ok(f"%%local\nimport time, hpckernel\nfor _ in range(300):\n    try:\n"
                  f"        hpckernel.attach({run.job!r}).peek('step'); break\n"
                  "    except Exception:\n        time.sleep(0.1)")
        got = kernel.ok(f"%%px --job {run.job} --targets 0:4\nprint(comm.allreduce(rank))")
        assert "[stdout:0-3] 6" in got.text(), got.text()
        # A long cell runs; behind it a cell that would spoil the result waits; then the
        # notebook's kernel is SIGKILLed: the job forgets it and drops the queued cell.
        kernel.ok(f"%%px --job {run.job} --noblock\nimport time\nt = time.time()\n"
                  "while time.time() - t < 12:\n    pass")
        kernel.ok(f"%%px --job {run.job} --noblock\nu[:] = 0")
        for pid in kernel.process_tree():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed = True
    finally:
        if killed:
            kernel.km.cleanup_resources()
        else:
            kernel.shutdown()
    assert run.result() == plain_result(tmp_path, 500)


def test_end_told_at_once_scancel_then_attach_says_ended(
        sim: LiveSim, capsys: pytest.CaptureFixture[str]) -> None:
    job = sim.attach()
    # MPICH makes its node's segment at the first exchange; the node's first rank unlinks
    # it once every rank there maps it: cancelled, the job leaves nothing in /dev/shm.
    until_mpi_files_unlinked(job, capsys, "0-3")
    sim.cancel()
    assert job.pool.ended.wait(15), "the end of the job did not reach the notebook"
    assert job.state == "CANCELLED", job.state
    with pytest.raises(JobEnded, match="CANCELLED"):
        job.peek("step")
    job.detach()
    t0 = time.monotonic()
    with pytest.raises(JobEnded, match=f"job {sim.job} has ended: CANCELLED"):
        hpckernel.attach(sim.job, job_root=str(sim.root))
    assert time.monotonic() - t0 < 10, "a later attach waited instead of saying it ended"


def test_walltime_and_a_crashed_rank_told(tmp_path: Path) -> None:
    timed = LiveSim(tmp_path, steps=100_000, walltime="1", name="walltime")
    crash = LiveSim(tmp_path, steps=100_000, crash=250, name="crash")
    try:
        on_time, crashed = timed.attach(), crash.attach()
        assert crashed.pool.ended.wait(60), "the crash did not reach the notebook"
        assert crashed.state in ("FAILED", "CANCELLED"), crashed.state
        assert on_time.pool.ended.wait(150), "the walltime did not reach the notebook"
        assert on_time.state == "TIMEOUT", on_time.state
    finally:
        timed.cancel()
        crash.cancel()


def test_a_cut_network_leaves_the_job_and_attaching_again_works(
        sim: LiveSim, tmp_path: Path, cluster_env: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    config = ssh_config(tmp_path, cluster_env)
    job = sim.attach(login="testlogin", ssh_args=["-F", str(config)])
    master = job.route.access.ssh.master  # type: ignore[union-attr]
    assert master is not None
    os.kill(master.pid, signal.SIGKILL)  # the SSH master, and the tunnel with it
    with pytest.raises((JobEnded, RemoteError, TimeoutError)):
        job.execute("print('lost')", timeout=5)
    assert not job.pool.ended.is_set(), "a cut network was taken for the job's end"
    job.detach()
    again = sim.attach(login="testlogin", ssh_args=["-F", str(config)])
    capsys.readouterr()
    again.execute("comm.allreduce(2)")
    assert capsys.readouterr().out == "[out:0-3] 8\n"
    again.detach()
    assert sim.result() == plain_result(tmp_path, 400)


def test_several_notebooks_at_once(sim: LiveSim, tmp_path: Path) -> None:
    job = sim.attach()
    other = textwrap.dedent(f"""
        import hpckernel
        job = hpckernel.attach({sim.job!r}, job_root={str(sim.root)!r})
        cells = [job.px.submit("execute", [0, 1, 2, 3], {{"code": f"log.append(('B', {{i}}))"}})
                 for i in range(5)]
        for cell in cells:
            assert cell.wait(120)
            cell.request.raise_for_errors()
        job.detach()
        """)
    job.execute("log = []")
    second = subprocess.Popen([sys.executable, "-c", other], cwd=tmp_path)
    mine = [job.px.submit("execute", [0, 1, 2, 3], {"code": f"log.append(('A', {i}))"})
            for i in range(5)]
    for cell in mine:
        assert cell.wait(120)
        cell.request.raise_for_errors()
    assert second.wait(120) == 0
    logs = job.peek("log")
    assert len({json.dumps(v) for v in logs.values()}) == 1, "the ranks ran other cells"
    log = [tuple(e) for e in logs[0]]
    assert sorted(log) == [(w, i) for w in "AB" for i in range(5)]
    for who in "AB":  # each notebook's cells in the order it sent them
        assert [i for w, i in log if w == who] == list(range(5))


def test_another_user_can_neither_attach_nor_peek(sim: LiveSim, intruder: str,
                                                  intruder_site: str) -> None:
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
    attack = as_intruder(intruder, code, intruder_site)
    assert attack.returncode == 0, attack.stderr
    assert json.loads(attack.stdout) is False, "the job answered an intruder"
    job = sim.attach()
    assert sorted(job.peek("step")) == [0, 1, 2, 3]
    job.detach()


def test_through_the_login_node(sim: LiveSim, tmp_path: Path, cluster_env: dict[str, str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    config = ssh_config(tmp_path, cluster_env)
    job = sim.attach(login="testlogin", ssh_args=["-F", str(config)])
    assert sorted(job.where()) == [0, 1, 2, 3]
    capsys.readouterr()
    job.execute("comm.allreduce(2)")
    assert capsys.readouterr().out == "[out:0-3] 8\n"
    master = job.route.access.ssh.master  # type: ignore[union-attr]
    assert master is not None and psutil.pid_exists(master.pid)
    job.detach()
    assert ended(master.pid), "the SSH master outlived the detach"
