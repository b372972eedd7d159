"""Workflows run on the real virtual Slurm cluster (tests/cluster): steps, gates, failures,
resubmit, re-attaching from another process, and submissions Slurm refuses.

Every test cancels the jobs it submitted (the `make_workflow` fixture) and waits for Slurm
states with timeouts; none sleeps to synchronise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
import yaml

import hpckernel
from hpckernel.slurm import sync as background
from hpckernel.slurm import wait_gone
from hpckernel.workflow import (
    DefinitionError,
    GateError,
    StepFailed,
    StepStateError,
    SubmitFailed,
    Workflow,
)

from .conftest import eventually
from .notebooks import analysis_notebook, script

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]
MakeWorkflow = Callable[..., Workflow]
NODES = {"n1", "n2", "n3"}


def test_four_steps_with_a_gate_run_to_completion_after_approve(
        make_workflow: MakeWorkflow, tmp_path: Path) -> None:
    script(tmp_path / "make_mesh.sh", 'echo "meshing on $SLURMD_NODENAME"\necho 42 > mesh.txt')
    analysis_notebook(tmp_path / "analysis.ipynb")

    def simulate(scale: int) -> int:  # defined here: cloudpickle sends it by value
        import os
        with open("mesh.txt") as f:
            return int(f.read()) * scale + int(os.environ["SLURM_PROCID"])

    wf = make_workflow("droplet")
    mesh = wf.batch("mesh", script="make_mesh.sh", nodes=1, time="00:05:00")
    sim = wf.function("sim", simulate, args=(2,), ranks=2, after=[mesh])
    check = wf.gate("inspect", after=[sim], note="look at the residual plot")
    wf.notebook("post", "analysis.ipynb", after=[check], parameters={"run": "A", "scale": 2})
    assert wf.status() == dict.fromkeys(["mesh", "sim", "inspect", "post"], "not submitted")

    assert wf.submit() == ["mesh", "sim", "inspect", "post"]
    assert wf.wait("sim", timeout=90) ["sim"] == "completed"
    assert wf.result("sim") == [84, 85]
    status = wf.status()
    assert status["inspect"] == "held" and status["post"] == "waiting"
    assert "look at the residual plot" in wf.refresh()["inspect"].detail

    wf.approve("inspect")
    with pytest.raises(GateError, match="'inspect' was approved already"):
        wf.approve("inspect")
    ended = wf.wait(timeout=120)
    assert ended == dict.fromkeys(["mesh", "sim", "inspect", "post"], "completed"), (
        ended, wf.logs("post", lines=60))

    assert "meshing on n" in wf.logs("mesh")
    executed = nbformat.read(tmp_path / "droplet.post.ipynb", as_version=4)
    injected = executed.cells[2]
    assert injected.metadata.tags == ["injected-parameters"]
    assert "run = 'A'" in injected.source and "scale = 2" in injected.source
    assert "run A scale 2 job " in executed.cells[3].outputs[0]["text"]
    assert (tmp_path / "post-A.txt").read_text() == "2"

    # Provenance in the workflow file: what ran, where, how it ended, with which versions.
    saved = yaml.safe_load(wf.path.read_text())["steps"]
    ids = {}
    for name, entry in saved.items():
        [run] = entry["runs"]
        ids[name] = run["job_id"]
        assert run["state"] == "completed" and run["exit_code"] == 0
        assert set(run["nodes"]) <= NODES and run["nodes"]
        assert run["start"] and run["end"] and run["submitted"]
        assert run["hpckernel"] == hpckernel.__version__
        assert run["python"] == ".".join(map(str, sys.version_info[:3]))
        assert run["command"].startswith("sbatch --parsable --job-name=droplet.")
    assert f"--dependency=afterok:{ids['mesh']}" in saved["sim"]["runs"][0]["command"]
    assert "srun --ntasks=2" in saved["sim"]["runs"][0]["script"]
    assert "--hold" in saved["inspect"]["runs"][0]["command"]
    assert saved["inspect"]["runs"][0]["approved"].endswith(f"by {os.environ.get('USER', 'root')}")
    assert saved["post"]["parameters"] == {"run": "A", "scale": 2}


def test_failed_step_leaves_dependents_never_run_and_resubmit_fixes_it(
        make_workflow: MakeWorkflow, tmp_path: Path) -> None:
    wf = make_workflow("chain")
    first = wf.batch("first", command="echo first")
    # Fails the first time it runs, succeeds the second.
    flaky = wf.batch("flaky", after=[first],
                     command="test -e flag || { touch flag; echo failing on purpose; exit 3; }")
    gate = wf.gate("look", after=[flaky])
    wf.batch("last", command="echo last", after=[gate])
    wf.batch("side", command="echo side", after=[flaky])
    wf.submit()

    states = wf.wait(timeout=90)
    assert states == {"first": "completed", "flaky": "failed", "look": "never-run",
                      "last": "never-run", "side": "never-run"}
    statuses = wf.refresh()
    assert "exit 3:0" in statuses["flaky"].detail
    for name in ("look", "last", "side"):
        assert "DependencyNeverSatisfied" in statuses[name].detail
        info = statuses[name].info
        assert info is not None and info.ended  # Slurm ended them: nothing waits forever
    assert "failing on purpose" in wf.logs("flaky")
    with pytest.raises(GateError, match="'look' is never-run"):
        wf.approve("look")
    with pytest.raises(StepStateError, match="comes after 'flaky', which is failed"):
        wf.resubmit("side")

    assert wf.resubmit("flaky") == ["flaky", "look", "last", "side"]
    eventually(lambda: wf.status()["look"] == "held", 90, "the new gate is held")
    wf.approve("look")
    assert set(wf.wait(timeout=90).values()) == {"completed"}
    runs = wf.engine.doc.runs["flaky"]
    assert [r.attempt for r in runs] == [1, 2]
    assert [r.state for r in runs] == ["failed", "completed"]
    assert runs[0].exit_code == 3


def test_reload_in_a_new_process_reattaches_to_running_jobs(
        make_workflow: MakeWorkflow, tmp_path: Path) -> None:
    wf = make_workflow("reattach")
    # Runs until the test creates `go`: still running when the new process attaches.
    wf.batch("long", command="while [ ! -e go ]; do sleep 0.2; done; echo long done")
    wf.gate("gate", after=["long"])
    wf.batch("end", command="echo end", after=["gate"])
    wf.submit()
    eventually(lambda: wf.status()["long"] == "running", 60, "step long runs")
    ids = {name: runs[-1].job_id for name, runs in wf.engine.doc.runs.items()}

    child = (
        "import json, sys\n"
        "from hpckernel.workflow import Workflow\n"
        "wf = Workflow.load(sys.argv[1])\n"
        "print(json.dumps({'status': wf.status(),\n"
        "                  'jobs': {n: s.job_id for n, s in wf.refresh().items()}}))\n"
        "wf.approve('gate')\n"
    )
    out = subprocess.run([sys.executable, "-c", child, str(wf.path)], capture_output=True,
                         text=True, timeout=120, env=os.environ, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["status"] == {"long": "running", "gate": "held", "end": "waiting"}
    assert seen["jobs"] == ids

    (tmp_path / "go").touch()
    again = Workflow.load(wf.path, poll_interval=0.3)  # as a restarted kernel would
    assert again.wait(timeout=90) == {"long": "completed", "gate": "completed",
                                      "end": "completed"}
    assert again.engine.doc.current("gate").approved  # type: ignore[union-attr]
    assert "long done" in again.logs("long")


def test_a_step_slurm_refuses_cancels_the_steps_queued_before_it(
        make_workflow: MakeWorkflow, cluster: dict[str, str]) -> None:
    wf = make_workflow("refused")
    wf.batch("one", command="sleep 60")
    wf.batch("two", command="sleep 60", after=["one"])
    wf.batch("three", command="true", after=["two"], sbatch_args=["--constraint=nosuchfeature"])
    with pytest.raises(SubmitFailed, match=r"step 'three' .* was not submitted") as caught:
        wf.submit()
    message = str(caught.value)
    assert "Invalid feature specification" in message
    assert "the 2 step(s) queued before it were cancelled" in message
    queued = [word.strip(")") for word in message.split("(jobs ")[1].split(", ")]
    assert wf.engine.doc.runs == {} or all(not r for r in wf.engine.doc.runs.values())
    assert "runs" not in wf.path.read_text()

    async def gone() -> list[str]:
        return [i.state for j in queued if (i := await wait_gone(wf.engine.slurm, j, 60))]

    assert background.run(gone()) == ["CANCELLED", "CANCELLED"]


def test_partition_limits_are_checked_before_anything_is_queued(
        make_workflow: MakeWorkflow) -> None:
    wf = make_workflow("limits")
    wf.batch("fine", command="true", partition="short", time="00:01:00")
    wf.batch("long", command="true", partition="short", time="00:10:00", after=["fine"])
    with pytest.raises(DefinitionError, match="step 'long': partition short allows at most "
                                              "00:05:00 of walltime"):
        wf.submit()
    wf2 = make_workflow("nopart")
    wf2.batch("x", command="true", partition="nope")
    with pytest.raises(DefinitionError, match="partition 'nope' does not exist"):
        wf2.submit()
    assert all(st == "not submitted" for st in [*wf.status().values(), *wf2.status().values()])


def test_failing_function_reports_the_remote_traceback(make_workflow: MakeWorkflow) -> None:
    def explode(rank_to_fail: int) -> str:
        import os
        if int(os.environ["SLURM_PROCID"]) == rank_to_fail:
            raise ValueError("bad input on this rank")
        return "fine"

    wf = make_workflow("boom")
    wf.function("explode", explode, args=(1,), ranks=2)
    wf.batch("after", command="true", after=["explode"])
    wf.submit()
    with pytest.raises(StepFailed, match="failed on rank 1 of 2") as caught:
        wf.result("explode", timeout=90)
    assert "ValueError: bad input on this rank" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)
    assert wf.wait(timeout=60) == {"explode": "failed", "after": "never-run"}
    with pytest.raises(StepStateError, match="every step of 'boom' was submitted already"):
        wf.submit()
    with pytest.raises(StepStateError, match="only function steps have a result"):
        wf.result("after")


def test_reject_cancels_the_gate_and_everything_after_it(make_workflow: MakeWorkflow) -> None:
    wf = make_workflow("veto")
    wf.batch("a", command="echo a")
    wf.gate("gate", after=["a"], note="go on?")
    wf.batch("b", command="echo b", after=["gate"])
    wf.batch("c", command="echo c", after=["b"])
    wf.batch("d", command="echo d", after=["a"])  # not after the gate: unaffected
    wf.submit()
    eventually(lambda: wf.status()["gate"] == "held", 90, "the gate is held")
    assert wf.reject("gate") == ["gate", "b", "c"]
    assert wf.wait(timeout=90) == {"a": "completed", "gate": "cancelled", "b": "cancelled",
                                   "c": "cancelled", "d": "completed"}
    assert wf.refresh()["gate"].detail.startswith("rejected ")
    with pytest.raises(GateError, match="gate 'gate' is cancelled: only a gate that has not "
                                        "opened can be rejected"):
        wf.reject("gate")
    with pytest.raises(GateError, match=r"was rejected .*: wf.resubmit\('gate'\) asks again"):
        wf.approve("gate")
    assert wf.resubmit("gate") == ["gate", "b", "c"]  # ask again
    eventually(lambda: wf.status()["gate"] == "held", 90, "the new gate is held")
    wf.approve("gate")
    assert set(wf.wait(timeout=90).values()) == {"completed"}
