"""Exceptions raised by `hpckernel.workflow`.

Everything a user can get wrong (a cycle, an unknown step in `after`, a missing script, a
gate approved twice, a hand-edited workflow file that makes no sense) raises a
`WorkflowError` subclass whose message names the step and says what to do, and it is raised
before anything reaches Slurm. Errors from Slurm itself arrive as `hpckernel.slurm.SlurmError`
(with Slurm's own message) wrapped in `SubmitFailed` when they stop a submission.
"""

from __future__ import annotations


class WorkflowError(Exception):
    """Base class: a workflow cannot do what was asked."""


class DefinitionError(WorkflowError, ValueError):
    """A step is defined wrongly: bad name, unknown `after`, cycle, missing file, bad option."""


class WorkflowFileError(DefinitionError):
    """A workflow YAML file cannot be read back: broken YAML or a structure that makes no
    sense. The message starts with the file's path and names the offending entry."""


class GateError(WorkflowError):
    """`approve`/`reject` on a gate that is not waiting for a decision (e.g. approved twice)."""


class StepStateError(WorkflowError):
    """A step is in the wrong state for the request (resubmitting a running step, the result
    of a step that has not completed)."""


class StepFailed(WorkflowError):
    """A function step raised, or its job failed: `wf.result()` says which rank and why."""


class SubmitFailed(WorkflowError):
    """Slurm refused one of the steps. The steps queued before it were cancelled again."""


class WorkflowTimeout(WorkflowError, TimeoutError):
    """`wf.wait()` ran out of time; the message lists each step's state."""
