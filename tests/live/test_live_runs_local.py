"""Runs hpckernel makes run live, without Slurm: a workflow notebook step's program
(``python -m hpckernel.workflow.nbrun``: its ipykernel kernel runs live, its safepoints
between cells) and ``hpckernel submit --local`` (its kernel's ranks run live, their
safepoints after each cell that ran on every rank), each attached while it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import hpckernel
from hpckernel.hub.requests import RemoteError
from hpckernel.live.client import LiveJob

LOOP = nbformat.v4.new_notebook(cells=[
    nbformat.v4.new_code_cell("import time\nx = 0"),
    nbformat.v4.new_code_cell("for i in range(200):\n    x = i\n    time.sleep(0.1)"),
    nbformat.v4.new_code_cell("print('x is', x)")])


def _attach(root: Path, proc: subprocess.Popen[str]) -> LiveJob:
    """The run's live job, once its loop cell runs."""
    deadline = time.monotonic() + 120
    while not list(root.glob("live-*/live.json")):
        assert time.monotonic() < deadline and proc.poll() is None, "the run is not live"
        time.sleep(0.1)
    name = next(root.glob("live-*/live.json")).parent.name
    job = hpckernel.attach(name[len("live-"):].rsplit(".", 1)[0], job_root=str(root))
    for _ in range(600):
        try:
            if all(v > 0 for v in job.peek("x").values()):
                return job
        except RemoteError:  # x not set yet
            pass
        time.sleep(0.1)
    pytest.fail("the loop cell did not run")


@pytest.mark.parametrize("how", ["notebook step", "submit --local"])
def test_a_run_attached_while_it_runs(how: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "jobs"
    nbformat.write(LOOP, tmp_path / "loop.ipynb")
    argv = ([sys.executable, "-m", "hpckernel.workflow.nbrun", "loop.ipynb", "out.ipynb"]
            if how == "notebook step" else
            [sys.executable, "-m", "hpckernel.cli", "submit", "--local", "--ranks", "2",
             "--output", "out.ipynb", "loop.ipynb"])
    proc = subprocess.Popen(argv, cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                            env={**os.environ, "HPCKERNEL_JOB_ROOT": str(root)})
    try:
        job = _attach(root, proc)
        ranks = list(range(job.ranks))
        assert all(w.splitlines()[-1].endswith("in <module>: time.sleep(0.1)")
                   for w in job.where().values()), job.where()
        capsys.readouterr()
        # Runs after the loop cell ends, before the last cell: it sees the loop's end.
        job.execute("print('attached sees', x)\nx = -1")
        label = "0" if ranks == [0] else "0-1"
        assert capsys.readouterr().out == f"[stdout:{label}] attached sees 199\n"
        proc.communicate(timeout=120)
        assert proc.returncode == 0
        executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
        assert "x is -1" in executed.cells[2].outputs[0]["text"]
        assert job.pool.ended.wait(30), "the run's end was not told"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
