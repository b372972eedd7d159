"""The magics of the dashboard and of Slurm job control.

`JobMagics` (``%squeue``, ``%%sbatch``, ``%scancel``, ``%sacct``) work in any IPython
kernel (``%load_ext hpckernel.widgets``); `LiveMagics` (``%dashboard``, ``%liveplot``)
need the hub, which registers both. Slurm's errors come back as one-line usage errors in
code and as a red line in the widgets. ipywidgets is imported only when a widget is made:
the hub registers these magics without needing it.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..slurm import SlurmError, sync
from ..slurm.jobcontrol import Job, submit

if TYPE_CHECKING:  # types only: see above
    from .jobviews import SbatchWidget, SqueueWidget
    from .panel import Dashboard
    from .plot import LivePlot


def _job_id(line: str, magic: str) -> str:
    words = line.split()
    if not words:
        own = os.environ.get("SLURM_JOB_ID")  # the hub's own job, in a Slurm kernel
        if own:
            return own
        raise UsageError(f"%{magic} JOBID: name a job (squeue lists yours)")
    if len(words) > 1 or not words[0].replace("_", "").isdigit():
        raise UsageError(f"%{magic} JOBID: {line.strip()!r} is not a job id")
    return words[0]


@magics_class
class JobMagics(Magics):
    """``%squeue``, ``%%sbatch``, ``%scancel``, ``%sacct``: Slurm job control in a cell."""

    @line_magic
    def squeue(self, line: str) -> SqueueWidget:
        """%squeue: your jobs, each with a Cancel button."""
        from . import jobviews

        view = jobviews.SqueueWidget()
        view.load()
        return view

    @cell_magic
    def sbatch(self, line: str, cell: str) -> SbatchWidget:
        """%%sbatch [sbatch options]: submit the cell as a batch script and follow the job."""
        from . import jobviews

        try:
            job = submit(cell, *shlex.split(line))
        except (SlurmError, ValueError) as e:
            return jobviews.SbatchWidget(None, error=e)
        return jobviews.SbatchWidget(job)

    @line_magic
    def scancel(self, line: str) -> None:
        """%scancel JOBID: cancel a job."""
        job_id = _job_id(line, "scancel")
        try:
            Job(job_id).cancel()
        except SlurmError as e:
            raise UsageError(f"%scancel {job_id}: {e}") from None
        print(f"job {job_id} cancelled")

    @line_magic
    def sacct(self, line: str) -> None:
        """%sacct [JOBID]: a job's accounting record (default: this kernel's job)."""
        job_id = _job_id(line, "sacct")
        from .sacct import sacct_text

        try:
            print(sync.run(sacct_text(job_id)))
        except SlurmError as e:
            raise UsageError(f"%sacct {job_id}: {e}") from None


@magics_class
class LiveMagics(Magics):
    """``%dashboard`` and ``%liveplot``, in the hub's ``%%local`` namespace."""

    @line_magic
    def dashboard(self, line: str) -> Dashboard:
        """%dashboard: the job, the walltime and each rank's state, live."""
        from . import dashboard

        return dashboard()

    @line_magic
    def liveplot(self, line: str) -> LivePlot:
        """%liveplot NAME: plot what the ranks publish as NAME (hpckernel.publish)."""
        names = line.split()
        if len(names) != 1:
            raise UsageError("%liveplot NAME: the name the ranks publish, e.g. %liveplot loss")
        from . import liveplot

        return liveplot(names[0])
