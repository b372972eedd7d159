"""Jobs hpckernel submits run live, on the virtual cluster: a workflow's function step (its
ranks under ``python -m hpckernel.live``) and a notebook run by ``hpckernel submit`` (its
kernel's ranks), each attached while it runs: where, peek, a cell at a safepoint, and the
run's own result untouched."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

import hpckernel
from hpckernel.hub.requests import RemoteError
from hpckernel.live.client import LiveJob
from hpckernel.workflow import Workflow
from tests.submit.notebooks import hpckernel as hpckernel_cli
from tests.workflow.conftest import cluster, eventually, make_workflow  # noqa: F401

from .test_provisioner import queued

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]


def _attach(job_id: str, root: Path, name: str) -> LiveJob:
    eventually(lambda: list(root.glob(f"live-{job_id}.*/live.json")), 90,
               f"the run's live files in {root}")
    job = hpckernel.attach(job_id, job_root=str(root))
    for _ in range(600):  # until `name` exists (the run may still be starting)
        try:
            job.peek(name)
            return job
        except RemoteError:
            time.sleep(0.1)
    pytest.fail(f"{name} never appeared")


def steps(n: int) -> int:
    """A function step's work: a loop with a safepoint, its total the step's result."""
    import time as clock

    from hpckernel.live import safepoint

    total = 0
    for i in range(n):
        total += i
        clock.sleep(0.05)
        safepoint()
    return total


def test_a_workflow_function_step_attached_while_it_runs(
        make_workflow: Callable[..., Workflow], tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "jobs"
    monkeypatch.setenv("HPCKERNEL_JOB_ROOT", str(root))  # passed on to the step's job
    wf = make_workflow("livewf")
    wf.function("calc", steps, args=(300,), ranks=2, partition="debug", time="5")
    wf.submit()
    job_id = eventually(lambda: wf.engine.statuses["calc"].job_id, 60, "the step's job")
    job = _attach(str(job_id), root, "total")
    eventually(lambda: wf.status()["calc"] == "running", 60, "the step running")
    widget = wf.widget()  # the running live step has an Attach button
    widget.redraw()
    assert widget.views["calc"].action.description == "Attach"
    where = job.where()
    assert sorted(where) == [0, 1] and all("in steps: clock.sleep(0.05)" in w or
                                           "in steps: safepoint()" in w
                                           for w in where.values()), where
    first = job.peek("i")
    capsys.readouterr()
    job.execute("print(i == n - 1 or i >= 0)")
    assert capsys.readouterr().out == "[stdout:0-1] True\n"
    assert all(v > first[r] for r, v in job.peek("i").items())
    assert wf.wait(timeout=300) == {"calc": "completed"}
    assert wf.result("calc") == [sum(range(300))] * 2
    assert job.pool.ended.wait(30) and job.state == "COMPLETED", job.state


def test_a_submitted_notebook_attached_while_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "jobs"
    monkeypatch.setenv("HPCKERNEL_JOB_ROOT", str(root))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import time\nx = 0"),
        nbformat.v4.new_code_cell("for i in range(300):\n    x = i\n    time.sleep(0.1)"),
        nbformat.v4.new_code_cell("print('x is', x)")])
    nbformat.write(nb, tmp_path / "slow.ipynb")
    done = hpckernel_cli("submit", str(tmp_path / "slow.ipynb"), "--partition", "debug",
                         "--nodes", "2", "--ntasks-per-node", "1", "--time", "00:05:00")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0].strip()
    try:
        job = _attach(job_id, root, "x")
        where = job.where()
        assert sorted(where) == [0, 1] and all(w.startswith("In[2]:") for w in where.values()), \
            where
        capsys.readouterr()
        # Runs after the notebook's loop cell, on both ranks, before its last cell.
        job.execute("print('attached sees', x)\nx = -1")
        assert capsys.readouterr().out == "[stdout:0-1] attached sees 299\n"
        assert job.pool.ended.wait(180) and job.state == "COMPLETED", job.state
        executed = nbformat.read(tmp_path / f"slow.run-{job_id}.ipynb", as_version=4)
        assert executed.cells[2].outputs[0]["text"] == "[stdout:0-1] x is -1\n"
    finally:
        subprocess.run(["scancel", job_id], check=False)
        eventually(lambda: not queued(job_id), 60, "the run's job to end")


def test_the_example_notebook_runs(tmp_path: Path) -> None:
    """``examples/live_job.ipynb`` headless on ipykernel against the virtual cluster."""
    from hpckernel.demo import cell_text
    from hpckernel.submit.params import inject
    from tests.workflow.notebooks import execute

    example = Path(__file__).parents[2] / "examples" / "live_job.ipynb"
    nb = nbformat.read(example, as_version=4)
    inject(nb, {"halo": str(Path(__file__).parents[1] / "live" / "halo.py"), "steps": 100_000})
    nbformat.write(nb, tmp_path / "live_job.ipynb")
    done = execute(tmp_path / "live_job.ipynb")
    texts = [cell_text(c) for c in done.cells if c.cell_type == "code"]
    job_id = next(t for t in texts if re.fullmatch(r"'\d+'\n?", t)).strip().strip("'")
    try:
        everything = "\n".join(texts)
        assert f"<live job {job_id}: 4 ranks on 2 nodes, RUNNING>" in everything
        assert re.search(r"\[where:\S+\] busy for", everything), everything
        assert re.search(r"\[stdout:0-3\] \d+ \S+", everything), everything
        assert f"job {job_id} cancelled" in everything
    finally:
        subprocess.run(["scancel", job_id], check=False)
        eventually(lambda: not queued(job_id), 60, "the example's job to end")
