"""A notebook's kernel run live (a workflow's notebook step): ``--IPKernelApp.extensions=
['hpckernel.live.notebook']`` on any ipykernel kernel.

The kernel is the program: one rank, whose I/O thread answers ``where`` (the cell running
now) and ``peek`` (the notebook's variables) while cells run, and whose safepoints are the
moments between two cells (and any ``safepoint()`` a cell calls): a cell queued by an
attached notebook runs after the cell running now, before the next.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING

from ..plane.addresses import node_name
from .rank import start_here

if TYPE_CHECKING:
    from IPython.core.interactiveshell import ExecutionResult, InteractiveShell


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Start the kernel's live machinery; a safepoint after each cell."""
    live = start_here((0, 1, node_name(), 0, 1))
    state = live.state

    def between_cells(result: ExecutionResult) -> None:
        state.reach(state.count + 1, None)  # no caller's locals: the notebook's namespace

    ipython.events.register("post_run_cell", between_cells)
    atexit.register(live.end, None)
