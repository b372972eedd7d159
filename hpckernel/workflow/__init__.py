"""Workflows with interactive phases: steps, dependencies and human gates on Slurm.

    from hpckernel.workflow import Workflow
    wf = Workflow("droplet")
    mesh = wf.batch("mesh", script="make_mesh.sh", nodes=1, time="00:10:00")
    check = wf.gate("inspect", after=[mesh], note="look at the mesh")
    post = wf.notebook("post", "analysis.ipynb", after=[check], parameters={"run": "A"})
    wf.submit(); wf.approve("inspect")

Modules, along the data path: `spec` (a step's definition and its checks), `graph` (order,
depth, descendants), `jobscript` (step -> batch script and sbatch options), `engine` (the
async core: submit, refresh from Slurm, gates, resubmit), `states` (Slurm job -> step state),
`provenance` (what ran where), `fileformat` (the YAML file), `workflow` (the sync `Workflow`,
on the private loop of `hpckernel.slurm.sync`), `table` and `widget` (views), and
the two programs that run inside jobs: `call` (function steps) and `nbrun` (notebooks).
"""

from .engine import Engine
from .errors import (
    DefinitionError,
    GateError,
    StepFailed,
    StepStateError,
    SubmitFailed,
    WorkflowError,
    WorkflowFileError,
    WorkflowTimeout,
)
from .spec import Step
from .states import StepStatus
from .workflow import Workflow

__all__ = [
    "DefinitionError",
    "Engine",
    "GateError",
    "Step",
    "StepFailed",
    "StepStateError",
    "StepStatus",
    "SubmitFailed",
    "Workflow",
    "WorkflowError",
    "WorkflowFileError",
    "WorkflowTimeout",
]
