"""The programs that run inside a step's job, run here directly (no Slurm needed): the
notebook runner (papermill-style parameters, nbclient, ipykernel's python3 kernel) and the
pickled-call runner of function steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

from hpckernel.submit.params import inject
from hpckernel.workflow import call

from .notebooks import analysis_notebook


def test_parameters_are_injected_after_the_tagged_cell_once() -> None:
    nb = nbformat.v4.new_notebook()
    tagged = nbformat.v4.new_code_cell("a = 1")
    tagged.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("import os"), tagged, nbformat.v4.new_code_cell("a")]
    inject(nb, {"a": 2, "name": "x", "xs": [1, None]})
    assert [c.source.splitlines()[0] for c in nb.cells] == [
        "import os", "a = 1", "# Parameters (injected by hpckernel)", "a"]
    assert nb.cells[2].source.splitlines()[1:] == ["a = 2", "name = 'x'", "xs = [1, None]"]
    inject(nb, {"a": 3})  # re-running replaces, never stacks
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "a = 3" in injected[0].source

    untagged = nbformat.v4.new_notebook()
    untagged.cells = [nbformat.v4.new_code_cell("print(a)")]
    inject(untagged, {"a": 1})
    assert untagged.cells[0].source.endswith("a = 1")  # at the top, as papermill does


def test_notebook_runs_headless_with_parameters(tmp_path: Path) -> None:
    source = analysis_notebook(tmp_path / "analysis.ipynb")
    target = tmp_path / "out.ipynb"
    out = subprocess.run(
        [sys.executable, "-m", "hpckernel.workflow.nbrun", str(source), str(target),
         '--parameters={"run": "B", "scale": 3}'],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    executed = nbformat.read(target, as_version=4)
    assert "run B scale 3" in executed.cells[3].outputs[0]["text"]
    assert executed.metadata["hpckernel"]["parameters"] == {"run": "B", "scale": 3}
    assert (tmp_path / "post-B.txt").read_text() == "3"


def test_a_failing_notebook_is_written_and_fails_the_job(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('before')"),
                nbformat.v4.new_code_cell("raise RuntimeError('cell broke')"),
                nbformat.v4.new_code_cell("print('never')")]
    nbformat.write(nb, tmp_path / "bad.ipynb")
    target = tmp_path / "bad.out.ipynb"
    out = subprocess.run([sys.executable, "-m", "hpckernel.workflow.nbrun",
                          str(tmp_path / "bad.ipynb"), str(target)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "cell broke" in out.stderr
    executed = nbformat.read(target, as_version=4)
    assert executed.cells[1].outputs[0]["ename"] == "RuntimeError"
    assert executed.cells[2].outputs == []


def test_a_call_writes_one_result_per_rank(tmp_path: Path) -> None:
    def add(a: int, b: int) -> int:
        import os
        if os.environ["SLURM_PROCID"] == "1":
            raise KeyError("rank one")
        return a + b + int(os.environ["SLURM_PROCID"])

    pkl = tmp_path / "add.call.pkl"
    pkl.write_bytes(call.dump_call(add, (1, 2), {}))
    prefix = tmp_path / "add.result"
    codes = []
    for rank in range(2):  # as srun would start them
        env = {**os.environ, "SLURM_JOB_ID": "77", "SLURM_PROCID": str(rank)}
        codes.append(subprocess.run([sys.executable, "-m", "hpckernel.workflow.call", str(pkl),
                                     str(prefix)], env=env, capture_output=True,
                                    timeout=60).returncode)
    assert codes == [0, 1]
    first, second, missing = call.read_results(prefix, "77", 3)
    assert first["ok"] and first["value"] == 3 and first["rank"] == 0
    assert not second["ok"] and isinstance(second["error"], KeyError)
    assert "KeyError: 'rank one'" in second["traceback"]
    assert not missing["ok"] and "rank 2 wrote no result" in missing["traceback"]
    assert call.label(add).endswith("test_a_call_writes_one_result_per_rank.<locals>.add")
