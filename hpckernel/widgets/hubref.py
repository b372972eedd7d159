"""Finding the hub kernel from ``%%local`` code and from magics."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..hub.kernel import HubKernel


def hub_kernel() -> HubKernel:
    """The running hub kernel; RuntimeError outside an hpckernel hub."""
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    if getattr(kernel, "pool", None) is None:
        raise RuntimeError("this needs the hpckernel hub (an \"MPI (local)\" or \"Slurm MPI\" "
                           "kernel): the ranks' data lives there")
    return kernel  # type: ignore[return-value]
