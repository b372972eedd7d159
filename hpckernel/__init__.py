"""hpckernel: Jupyter kernels whose cells run on MPI ranks, locally or in a Slurm allocation."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "dashboard", "liveplot", "publish"]


def publish(name: str, value: Any) -> None:
    """In rank code: send ``value`` to the hub as the latest ``name`` of this rank, while the
    cell runs (``%liveplot name`` plots it, ``ranks.live[name]`` holds it)."""
    from .worker.publish import publish

    publish(name, value)


def liveplot(name: str) -> Any:
    """In ``%%local`` code: a live plot of what the ranks ``publish`` as ``name``."""
    from .widgets import liveplot

    return liveplot(name)


def dashboard() -> Any:
    """In ``%%local`` code: the kernel's dashboard (job, walltime, each rank's state)."""
    from .widgets import dashboard

    return dashboard()
