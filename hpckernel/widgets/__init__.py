"""The notebook widgets: live plots, the dashboard and Slurm job control (ipywidgets).

`plot` is the live plot's widget (drawn in the browser by ``plot.js``), `lines` its data,
`svg` its static picture; `panel` the ``%dashboard``, `jobviews` the widgets of ``%squeue``
and ``%%sbatch``, `fallback` what front ends without widgets show, `magics` the magics. No
module is named like a function of this package (importing it would replace the function).
In a plain IPython kernel, ``%load_ext hpckernel.widgets`` adds the job magics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: ipywidgets is imported when a widget is first asked for
    from IPython.core.interactiveshell import InteractiveShell

    from .panel import Dashboard
    from .plot import LivePlot


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext hpckernel.widgets``: the job magics (and, in the hub, the live ones)."""
    from .magics import JobMagics, LiveMagics

    ipython.register_magics(JobMagics)
    if getattr(getattr(ipython, "kernel", None), "pool", None) is not None:
        ipython.register_magics(LiveMagics)


def liveplot(name: str) -> LivePlot:
    """The live plot of what the ranks publish as ``name`` (``%liveplot name``)."""
    from .hubref import hub_kernel
    from .plot import LivePlot

    pool = hub_kernel().pool
    assert pool is not None
    return LivePlot(pool.live, name)


def dashboard() -> Dashboard:
    """The kernel's dashboard panel (``%dashboard``)."""
    from .hubref import hub_kernel
    from .panel import Dashboard

    return Dashboard(hub_kernel())
