"""Step -> Slurm job: the batch script and sbatch options each kind of step is submitted as.

Called by the engine for each step it submits, with the job ids the step must wait for.
Where a workflow keeps its files is `Layout`'s job: logs, pickled calls and results in
`<base>/<name>.runs/`, executed notebooks next to the workflow file. These directories must be
visible to the compute nodes (a shared file system, as for any batch job's output).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .spec import Step, normalise_options, option_args

GATE_TIME = "00:01:00"


@dataclass(frozen=True)
class Layout:
    """The files of workflow `name` whose YAML file lives in directory `base`."""

    base: Path
    name: str

    @property
    def runs(self) -> Path:
        """The directory of job scripts, logs, calls and results."""
        return self.base / f"{self.name}.runs"

    def log(self, step: str, job_id: str = "%j") -> Path:
        """The output file of the step's job (``%j``: Slurm's job id placeholder)."""
        return self.runs / f"{step}.{job_id}.out"

    def call(self, step: str) -> Path:
        """The pickled call of a function step."""
        return self.runs / f"{step}.call.pkl"

    def result_prefix(self, step: str) -> Path:
        """Where a function step's ranks write their outcomes (see ``call.result_path``)."""
        return self.runs / f"{step}.result"

    def executed_notebook(self, step: str) -> Path:
        """The executed notebook of a notebook step, beside the workflow file."""
        return self.base / f"{self.name}.{step}.ipynb"

    def resolve(self, path: str) -> Path:
        """A path from a step definition (relative to the workflow directory) -> absolute."""
        return (self.base / path).resolve()


@dataclass(frozen=True)
class JobRequest:
    """What `Slurm.submit` gets: the script (on sbatch's stdin) and its options."""

    script: str
    options: tuple[str, ...]


def build(step: Step, layout: Layout, python: str, depends_on: Sequence[str]) -> JobRequest:
    """The job for one attempt of `step`, waiting for the jobs `depends_on` to complete.

    The user's options come after the workflow's, so `--output`, `--job-name` or `--chdir`
    given by the user win (sbatch takes the last); the dependency and hold options are
    reserved (spec.RESERVED_OPTIONS).
    """
    options = [f"--job-name={layout.name}.{step.name}", f"--chdir={layout.base}",
               f"--output={layout.log(step.name)}"]
    if depends_on:
        # Without --kill-on-invalid-dep Slurm leaves the dependents of a failed step pending
        # forever (reason DependencyNeverSatisfied); with it they end at once, so a failed
        # workflow leaves nothing in the queue and its end is visible.
        options += [f"--dependency=afterok:{':'.join(depends_on)}", "--kill-on-invalid-dep=yes"]
    user = normalise_options(step.options, step.name)
    if step.kind == "gate":
        options += ["--hold", f"--time={GATE_TIME}", "--ntasks=1"]
    if step.kind == "function" and step.ranks and not {"ntasks", "ntasks-per-node"} & set(user):
        options.append(f"--ntasks={step.ranks}")
    options += option_args(user)
    options += step.sbatch_args
    return JobRequest(script=_script(step, layout, python), options=tuple(options))


def _script(step: Step, layout: Layout, python: str) -> str:
    if step.kind == "gate":
        return "#!/bin/sh\n# A workflow gate: held until approved, then it ends at once.\ntrue\n"
    if step.kind == "batch":
        if step.script is not None:
            return layout.resolve(step.script).read_text()
        return f"#!/bin/bash\n{step.command}\n"
    if step.kind == "function":
        assert step.call is not None
        argv = [python, "-m", "hpckernel.workflow.call", str(layout.resolve(step.call)),
                str(layout.result_prefix(step.name))]
        if step.ranks:
            argv = ["srun", f"--ntasks={step.ranks}", *argv]
        return f"#!/bin/bash\nexec {shlex.join(argv)}\n"
    assert step.kind == "notebook" and step.notebook is not None
    argv = [python, "-m", "hpckernel.workflow.nbrun", str(layout.resolve(step.notebook)),
            str(layout.executed_notebook(step.name)),
            f"--parameters={json.dumps(dict(step.parameters))}"]
    return f"#!/bin/bash\nexec {shlex.join(argv)}\n"
