"""Bad input gives clear errors before anything reaches Slurm: cycles, unknown steps, missing
files, misused options, gates misused, and workflow files edited into nonsense.

None of these needs the cluster: each fails before a Slurm command would run (the tests for
what Slurm itself refuses are in test_run.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from hpckernel.workflow import (
    DefinitionError,
    GateError,
    StepStateError,
    Workflow,
    WorkflowFileError,
)

from .notebooks import analysis_notebook, script


@pytest.fixture
def wf(tmp_path: Path) -> Workflow:
    return Workflow("bad", tmp_path / "bad.workflow.yaml")


def test_unknown_steps_in_after(wf: Workflow) -> None:
    wf.batch("a", command="true")
    with pytest.raises(DefinitionError, match="'b': after names unknown step 'nope'; known "
                                              "steps: a"):
        wf.batch("b", command="true", after=["a", "nope"])
    with pytest.raises(DefinitionError, match="neither a step nor a name"):
        wf.batch("c", command="true", after=[3])
    with pytest.raises(DefinitionError, match="cannot come after itself"):
        wf.batch("d", command="true", after="d")
    assert list(wf.steps) == ["a"]  # nothing half-defined


def test_names_and_duplicates(wf: Workflow, tmp_path: Path) -> None:
    wf.batch("a", command="true")
    with pytest.raises(DefinitionError, match="has a step named 'a' already"):
        wf.batch("a", command="false")
    with pytest.raises(DefinitionError, match="step name 'has space' is not allowed"):
        wf.batch("has space", command="true")
    with pytest.raises(DefinitionError, match="workflow name '1x' is not allowed"):
        Workflow("1x", tmp_path / "x.yaml")
    with pytest.raises(DefinitionError, match="has no step 'zz'; its steps: a"):
        wf.logs("zz")


def test_missing_or_unusable_files(wf: Workflow, tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"script .*missing.sh' does not exist"):
        wf.batch("a", script="missing.sh")
    (tmp_path / "noshebang.sh").write_text("echo hi\n")
    with pytest.raises(DefinitionError, match="does not start with '#!'"):
        wf.batch("a", script="noshebang.sh")
    with pytest.raises(DefinitionError, match=r"notebook .*nothere.ipynb' does not exist"):
        wf.notebook("n", "nothere.ipynb")
    with pytest.raises(DefinitionError, match=r"either script= .* or command="):
        wf.batch("a")
    script(tmp_path / "ok.sh", "true")
    with pytest.raises(DefinitionError, match="not both or neither"):
        wf.batch("a", script="ok.sh", command="true")


def test_options_parameters_and_functions(wf: Workflow, tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"sets --dependency itself .use after="):
        wf.batch("a", command="true", dependency="afterok:1")
    with pytest.raises(DefinitionError, match="sets --hold itself"):
        wf.batch("a", command="true", sbatch_args=["--hold"])
    with pytest.raises(DefinitionError, match="must be a string, number or True"):
        wf.batch("a", command="true", nodes=[1, 2])  # type: ignore[arg-type]
    analysis_notebook(tmp_path / "nb.ipynb")
    with pytest.raises(DefinitionError, match="parameter name 'not valid' is not a Python"):
        wf.notebook("n", "nb.ipynb", parameters={"not valid": 1})
    with pytest.raises(DefinitionError, match="parameters must be plain data"):
        wf.notebook("n", "nb.ipynb", parameters={"x": object()})
    lock = threading.Lock()
    with pytest.raises(DefinitionError, match="'f': cannot pickle the call"):
        wf.function("f", lambda: lock)
    with pytest.raises(DefinitionError, match="ranks must be a positive integer"):
        wf.function("f", print, ranks=0)
    assert wf.steps == {}
    wf.function("f", divmod, args=(7, 2))
    pickled = (tmp_path / "bad.runs" / "f.call.pkl").read_bytes()
    with pytest.raises(DefinitionError, match="has a step named 'f' already"):
        wf.function("f", pow, args=(2, 3))
    assert (tmp_path / "bad.runs" / "f.call.pkl").read_bytes() == pickled  # not clobbered


def test_gates_misused(wf: Workflow) -> None:
    wf.batch("a", command="true")
    wf.gate("g", after=["a"])
    with pytest.raises(GateError, match="'a' is a batch step, not a gate"):
        wf.approve("a")
    with pytest.raises(GateError, match=r"gate 'g' is not submitted yet: wf.submit"):
        wf.approve("g")
    with pytest.raises(GateError, match="gate 'g' is not submitted: only a gate"):
        wf.reject("g")
    with pytest.raises(StepStateError, match="steps not submitted: a, g"):
        wf.wait(timeout=1)
    with pytest.raises(DefinitionError, match="name the step"):
        wf.resubmit()


def test_an_existing_workflow_file_is_not_overwritten_silently(tmp_path: Path) -> None:
    first = Workflow("keep", tmp_path / "keep.workflow.yaml")
    first.batch("a", command="true")
    first.save()
    with pytest.raises(DefinitionError, match=r"exists already: Workflow.load\("):
        Workflow("keep", tmp_path / "keep.workflow.yaml")
    again = Workflow("keep", tmp_path / "keep.workflow.yaml", overwrite=True)
    assert again.steps == {}
    assert first.save(tmp_path / "renamed.yaml") == tmp_path / "renamed.yaml"
    (tmp_path / "sub").mkdir()
    with pytest.raises(DefinitionError, match=r"save the workflow in .* not in .*sub"):
        first.save(tmp_path / "sub" / "moved.yaml")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edited.workflow.yaml"
    path.write_text(text)
    return path


GOOD = {"hpckernel-workflow": 1, "name": "edited",
        "steps": {"a": {"kind": "batch", "command": "true"},
                  "b": {"kind": "gate", "after": ["a"]}}}


def _with(change: dict[str, object], step: str | None = None) -> str:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    (data["steps"][step] if step else data).update(change)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "top level: expected a mapping"),
        (_with({"hpckernel-workflow": 7}), "hpckernel-workflow: expected 1, found 7"),
        (_with({"colour": "blue"}), r"top level: unknown keys \['colour'\]"),
        (_with({"name": "no spaces allowed"}), "workflow name 'no spaces allowed'"),
        (_with({"steps": []}), "steps: expected a mapping of step names"),
        (_with({"kind": "magic"}, "a"), "step 'a': kind must be one of"),
        (_with({"after": "a"}, "b"), "step 'b': after must be a list of step names"),
        (_with({"after": ["zz"]}, "b"), "'b': after names unknown step 'zz'"),
        (_with({"after": ["b"]}, "a"), "the steps form a cycle: a -> b -> a|b -> a -> b"),
        (_with({"script": "x.sh"}, "b"), r"unknown keys \['script'\] for a gate step"),
        (_with({"sbatch": "nodes=2"}, "a"), "sbatch must be a mapping"),
        (_with({"sbatch": {"dependency": "afterok:3"}}, "a"), "sets --dependency itself"),
        (_with({"command": 5}, "a"), "command must be a string, not 5"),
        (_with({"command": None, "script": None}, "a"), "either script="),
        (_with({"runs": [{"job_id": "abc"}]}, "a"), r"runs\[0\]: job_id must be a Slurm job id"),
        (_with({"runs": {"job_id": 5}}, "a"), "runs must be a list of job records"),
        (_with({"runs": [{"job_id": 5, "submitted": "x", "command": "c", "script": "s",
                          "colour": 1}]}, "a"), r"runs\[0\]: unknown keys \['colour'\]"),
    ],
)
def test_hand_edited_nonsense_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(WorkflowFileError, match=message) as caught:
        Workflow.load(path)
    assert str(caught.value).startswith(str(path))


def test_a_file_round_trips(tmp_path: Path) -> None:
    script(tmp_path / "s.sh", "echo hi")
    analysis_notebook(tmp_path / "nb.ipynb")
    wf = Workflow("trip", tmp_path / "trip.workflow.yaml")
    wf.batch("s", script="s.sh", nodes=2, ntasks_per_node=2, exclusive=True, time="1:00:00",
             sbatch_args=["--comment=x"])
    wf.function("f", divmod, args=(7, 2), ranks=2, after=["s"])
    wf.gate("g", after=["f"], note="look\nclosely")
    wf.notebook("n", "nb.ipynb", after=["g", "s"], parameters={"run": "A", "xs": [1, 2]})
    wf.save()
    back = Workflow.load(wf.path)
    assert {n: vars(s) for n, s in back.steps.items()} == {
        n: vars(s) for n, s in wf.steps.items()}
    assert back.steps["s"].options == {"nodes": 2, "ntasks-per-node": 2, "exclusive": True,
                                       "time": "1:00:00"}  # not YAML 1.1's 3600
    assert back.steps["f"].label == "builtins.divmod"
    # A script that disappeared is an error at submit time, not when re-attaching.
    (tmp_path / "s.sh").unlink()
    again = Workflow.load(wf.path)
    with pytest.raises(DefinitionError, match=r"script .*s.sh' does not exist"):
        again.submit()
