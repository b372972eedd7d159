"""Why a notebook cannot attach to a job, or why it stopped being attached: each a
``LiveError`` (a ``HubError``: the hub shows them as one line), with the message saying
what to do."""

from __future__ import annotations

from ..hub.errors import HubError


class LiveError(HubError):
    """Root of the errors of attaching to live batch jobs."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]  # IPython shows this line, not a stack


class NotLiveError(LiveError, LookupError):
    """The job cannot be attached to: unknown to Slurm, not running yet, or not started
    with ``python -m hpckernel.live``."""


class NotYoursError(LiveError, PermissionError):
    """The job belongs to another user: only its owner can attach (its keys are theirs)."""


class JobEnded(LiveError, RuntimeError):
    """The job (or its program) ended; ``state`` is Slurm's (``COMPLETED``, ``CANCELLED``,
    ``TIMEOUT``, ``FAILED`` …), or ``ENDED`` where Slurm does not know the job."""

    def __init__(self, job: str, state: str, detail: str = "") -> None:
        super().__init__(f"job {job} has ended: {state}{f' ({detail})' if detail else ''}")
        self.job, self.state, self.detail = job, state, detail
