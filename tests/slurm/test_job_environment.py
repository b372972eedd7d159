"""What environment batch jobs get: an allow-list plus what the user asks for, never the
Jupyter server's tokens; and what Jupyter tells the kernel (the notebook) still arrives."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hpckernel.slurm import submit
from tests.kernel.harness import Kernel, provenance_log

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"),
              pytest.mark.usefixtures("cluster_env")]

TOKEN = "JUPYTERHUB_API_TOKEN"
PROBE = ("import os\nprint(sorted(k for k in ('JUPYTERHUB_API_TOKEN', 'OTHER_SECRET') "
         "if k in os.environ), os.environ.get('MY_SETTING'))")


def test_the_kernels_job_gets_the_allow_list_and_the_notebook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN, "secret-token")  # in the Jupyter server's environment
    work = tmp_path / "work"
    work.mkdir()
    notebook = work / "analysis.ipynb"
    # As jupyter_server starts a kernel for a notebook: JPY_SESSION_NAME, its own env.
    kernel = Kernel(tmp_path, slurm={
        "partition": "debug", "nodes": 2, "ntasks_per_node": 1, "time": "00:10:00",
        "job_root": str(tmp_path / "jobs"), "poll_interval": 1.0,
        "export_env": ["MY_SETTING"]}, cwd=work,
        env={"JPY_SESSION_NAME": str(notebook), "MY_SETTING": "asked for",
             "OTHER_SECRET": "not asked for"})
    job_id = kernel.km.provisioner.job_id  # type: ignore[union-attr]
    try:
        ranks = kernel.ok(PROBE)
        assert ranks.text() == "[stdout:0-1] [] asked for\n"  # on both nodes
        hub = kernel.ok(f"%%local\n{PROBE}")
        assert hub.text() == "[] asked for\n"
        record = hub.reply["metadata"]["hpckernel"]["provenance"]
        assert record["notebook"] == str(notebook)
        provenance_log(work / "analysis.provenance.jsonl", [record["id"]])
    finally:
        kernel.shutdown()
    queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True,
                            text=True).stdout
    assert job_id not in queued.split()


def test_jobs_submitted_from_code_get_the_allow_list(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # %%sbatch, workflows and `hpckernel submit` submit through the same call.
    monkeypatch.setenv(TOKEN, "secret-token")
    monkeypatch.chdir(tmp_path)
    job = submit(f"echo token=${{{TOKEN}:-none}} path=${{PATH:+set}}", "--time=1",
                 f"--output={tmp_path}/out.txt")
    assert job.wait(timeout=60).state == "COMPLETED"
    assert (tmp_path / "out.txt").read_text() == "token=none path=set\n"
