"""`hpckernel submit` on the virtual Slurm cluster: a notebook as a batch job."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.cluster.fixtures import testbed_env

from .notebooks import hpckernel, outputs, parameterised, record

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The test bed's environment; yields a list the test adds its job ids to, all of which
    are cancelled at the end (a failed test leaves nothing queued)."""
    for key, value in testbed_env().items():  # fails with instructions if it is down
        monkeypatch.setenv(key, value)
    jobs: list[str] = []
    yield jobs
    if jobs:
        subprocess.run(["scancel", *jobs], check=False)


def _queued(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True,
                         text=True).stdout
    return job_id in out.split()


def test_a_notebook_runs_as_a_batch_job_and_can_be_resubmitted(cluster: list[str],
                                                               tmp_path: Path) -> None:
    nb = parameterised(tmp_path / "study.ipynb")
    done = hpckernel("submit", str(nb), "--partition", "debug", "--nodes", "2",
                     "--ntasks-per-node", "1", "--time", "00:05:00", "-p", "n=10",
                     "--wait", timeout=900)
    job_id = done.stdout.splitlines()[0].strip() if done.stdout else ""
    cluster.append(job_id)
    assert done.returncode == 0, (done.stdout, done.stderr,
                                  (tmp_path / f"study.run-{job_id}.log").read_text()
                                  if job_id else "")
    assert job_id.isdigit()
    out = tmp_path / f"study.run-{job_id}.ipynb"
    texts = outputs(out)
    assert texts[0] == "[stdout:0-1] setup\n"
    # two ranks on two nodes of the allocation: n * (1 + 2) = 30 on each
    lines = texts[3].splitlines()
    assert [line.split()[:3] for line in lines] == [["[stdout:0]", "default", "30"],
                                                    ["[stdout:1]", "default", "30"]]
    nodes = [line.split()[3] for line in lines]
    assert len(set(nodes)) == 2 and all(n in ("n1", "n2", "n3") for n in nodes)
    executed = nbformat.read(out, as_version=4)
    prov = executed.cells[3].metadata["hpckernel"]["provenance"]
    assert prov["job"]["id"] == job_id and prov["job"]["partition"] == "debug"
    assert sorted(prov["hosts"]) == sorted(nodes) and prov["size"] == 2
    assert executed.metadata["hpckernel"]["run"]["status"] == "ok"
    assert "[hpckernel] ok after" in (tmp_path / f"study.run-{job_id}.log").read_text()
    saved = record(tmp_path / f"study.run-{job_id}.json")
    assert saved["status"] == "ok" and saved["state"] == "COMPLETED"
    assert (saved["slurm"]["nodes"], saved["slurm"]["partition"], saved["parameters"]) == (
        2, "debug", {"n": "10"})

    again = hpckernel("submit", "--resubmit", str(tmp_path / f"study.run-{job_id}.json"),
                      "-p", "label=again", "--wait", timeout=900)
    second = again.stdout.splitlines()[0].strip() if again.stdout else ""
    cluster.append(second)
    assert again.returncode == 0, again.stderr
    assert second.isdigit() and second != job_id
    assert [line.split()[1:3] for line in outputs(
        tmp_path / f"study.run-{second}.ipynb")[3].splitlines()] == [["again", "30"]] * 2
    assert not _queued(job_id) and not _queued(second)


def test_a_request_slurm_cannot_run_fails_fast_with_nothing_queued(cluster: list[str],
                                                                  tmp_path: Path) -> None:
    nb = parameterised(tmp_path / "study.ipynb")
    cases = [
        (["--partition", "nosuch"], "partition 'nosuch' does not exist"),
        (["--partition", "debug", "--nodes", "9"], "partition debug has 3 nodes, 9 were "
         "requested"),
        (["--partition", "short", "--time", "02:00:00"], "allows at most 00:05:00"),
        (["--partition", "debug", "--sbatch-arg=--bogus-option"], "sbatch refused the job"),
    ]
    for options, message in cases:
        walltime = [] if "--time" in options else ["--time", "00:05:00"]
        done = hpckernel("submit", str(nb), *walltime, *options, timeout=120)
        assert done.returncode == 2, (options, done.stdout, done.stderr)
        assert message in done.stderr, (options, done.stderr)
        assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.ipynb"]
