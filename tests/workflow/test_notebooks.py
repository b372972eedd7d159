"""Workflows driven from real kernels on the virtual cluster: the example notebooks run
headless on ipykernel (whose event loop is already running when the sync API is called),
a `%%local` cell of the hpckernel hub kernel, and the Parsl example."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpckernel.demo import cell_text
from hpckernel.slurm import Slurm
from hpckernel.slurm import sync as background
from hpckernel.slurm.wait import wait_gone as wait_ended
from hpckernel.workflow import Workflow
from tests.kernel.harness import Kernel, wait_gone

from .conftest import clean_up
from .notebooks import execute

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]
EXAMPLES = Path(__file__).parents[2] / "examples"


def cancel_jobs_under(directory: Path) -> None:
    """Cancel what the notebooks in `directory` left queued: the jobs of its workflow files,
    and any other job (Parsl's) whose working directory is in it. Nobody else's."""
    for path in directory.glob("*.workflow.yaml"):
        clean_up(Workflow.load(path))

    async def others() -> None:
        slurm = Slurm()
        mine = [j.job_id for j in await slurm.jobs()
                if j.workdir and Path(j.workdir).is_relative_to(directory)]
        for job_id in mine:
            await slurm.cancel(job_id)
        for job_id in mine:
            await wait_ended(slurm, job_id, timeout=60)

    background.run(others())


@pytest.fixture
def workdir(cluster: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    cancel_jobs_under(tmp_path)


def test_demo_notebook_runs_the_whole_workflow(workdir: Path) -> None:
    for name in ("workflow_demo.ipynb", "workflow_analysis.ipynb"):
        shutil.copy(EXAMPLES / name, workdir / name)
    nb = execute(workdir / "workflow_demo.ipynb")
    text = [cell_text(c) for c in nb.cells if c.cell_type == "code"]
    everything = "\n".join(text)
    assert "'inspect': 'held', 'post': 'waiting'" in everything
    assert "'post': 'completed'" in everything
    assert "run A: 5 iterations" in everything
    assert "{'prepare': 'completed', 'solve': 'failed', 'report': 'never-run'}" in everything
    assert "{'prepare': 'completed', 'solve': 'completed', 'report': 'completed'}" in everything
    shown = [out for c in nb.cells for out in c.get("outputs", [])
             if out.get("output_type") in ("display_data", "execute_result")]
    assert any("application/vnd.jupyter.widget-view+json" in out["data"] for out in shown)
    assert (workdir / "droplet.post.ipynb").is_file()
    assert (workdir / "report-A.txt").is_file()
    again = Workflow.load(workdir / "droplet.workflow.yaml")
    assert set(again.status().values()) == {"completed"}


def test_a_workflow_runs_from_a_hub_kernels_local_cell(workdir: Path,
                                                       cluster: dict[str, str]) -> None:
    kernel = Kernel(workdir, ranks=1, env=cluster, cwd=workdir)
    try:
        result = kernel.ok(
            "%%local\n"
            "from hpckernel.workflow import Workflow\n"
            "wf = Workflow('fromhub')\n"
            "wf.batch('a', command='echo from the hub')\n"
            "wf.gate('g', after=['a'])\n"
            "wf.batch('b', command='echo b', after=['g'])\n"
            "wf.submit()\n"
            "wf.wait('a', timeout=90)\n"
            "wf.approve('g')\n"
            "print(wf.wait(timeout=90))\n"
            "print(wf.logs('a'))\n", timeout=240)
    finally:
        pids = kernel.process_tree()
        kernel.shutdown()
        assert wait_gone(pids) == []
    assert "{'a': 'completed', 'g': 'completed', 'b': 'completed'}" in result.text()
    assert "from the hub" in result.text()


def test_parsl_example_runs_tasks_in_slurm_jobs(workdir: Path) -> None:
    shutil.copy(EXAMPLES / "workflow_parsl.ipynb", workdir / "workflow_parsl.ipynb")
    nb = execute(workdir / "workflow_parsl.ipynb", timeout=300)
    text = [cell_text(c) for c in nb.cells if c.cell_type == "code"]
    tasks = [line for t in text for line in t.splitlines() if line.startswith("task ")]
    assert len(tasks) == 4
    job_id = tasks[0].split("job ")[1].split()[0]
    assert all(f"job {job_id} on n" in line for line in tasks)
    queue = next(t for t in text if "PARTITION" in t)
    assert any(job_id in line and "parsl." in line and "RUNNING" in line
               for line in queue.splitlines())
    ended = background.run(wait_ended(Slurm(), job_id, timeout=60))
    assert ended is None or ended.ended  # Parsl's cleanup cancelled its block
