"""hpckernel: Jupyter kernels whose cells run on MPI ranks, locally or in a Slurm allocation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when attach is first called: this package starts light
    from .live.client import LiveJob
    from .widgets.panel import Dashboard
    from .widgets.plot import LivePlot

__version__ = "0.1.0"
__all__ = ["__version__", "attach", "dashboard", "liveplot", "publish"]


def publish(name: str, value: object) -> None:
    """In rank code: send ``value`` to the hub as the latest ``name`` of this rank, while the
    cell runs (``%liveplot name`` plots it, ``ranks.live[name]`` holds it). In a live batch
    job the rank keeps it for attached notebooks; elsewhere it does nothing."""
    from .worker.publish import publish

    publish(name, value)


def liveplot(name: str) -> LivePlot:
    """In ``%%local`` code: a live plot of what the ranks ``publish`` as ``name``."""
    from .widgets import liveplot

    return liveplot(name)


def dashboard() -> Dashboard:
    """In ``%%local`` code: the kernel's dashboard (job, walltime, each rank's state)."""
    from .widgets import dashboard

    return dashboard()


def attach(job: str | int, login: str | None = None, job_root: str | None = None,
           ssh_args: list[str] | None = None, wait: float = 0.0) -> LiveJob:
    """Attach to a running live batch job (``srun python -m hpckernel.live SCRIPT``): a
    handle with ``ranks``, ``nodes``, ``where``, ``peek``, ``live``, ``liveplot``,
    ``execute`` and ``detach`` (``hpckernel.live.client.LiveJob``); ``wait``: seconds to
    wait for a job just submitted to run and become live."""
    from .live.client import attach

    return attach(job, login, job_root, ssh_args, wait)
