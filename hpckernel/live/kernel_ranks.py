"""The ranks of a kernel run live (``hpckernel submit`` sets ``$HPCKERNEL_LIVE``,
``files.LIVE_ENV``, for its hub's ranks): each rank starts the live machinery beside its
kernel rank, so that a notebook can attach to the running submitted notebook as to any
live job.

What that means there: ``where`` and ``peek`` see the rank as it runs the notebook's cells
(its namespace is the rank's shell's); the safepoints are the ends of the notebook's cells
that ran on every rank, numbered by their execution count, which every rank reaches in the
same order: a cell queued by an attached notebook runs on each rank after the same cell of
the submitted notebook, before its next. A cell of it that ran on some ranks only (``%%px
--targets``) is no safepoint.
"""

from __future__ import annotations

from collections.abc import Callable

from ..plane import Message, kinds
from ..targets import format_ranks
from .rank import LiveRank, start_here


def start(size: int) -> tuple[LiveRank, Callable[[Message], None]]:
    """The live machinery of this rank (``$HPCKERNEL_LIVE`` asks for it:
    ``worker/runner.py``), and what the rank calls after each request it ran
    (``RankRunner.after``)."""
    live = start_here()
    state = live.state
    everyone = format_ranks(range(size))

    def after(msg: Message) -> None:
        count = msg.header.get("execution_count")
        if msg.msg_type == kinds.EXECUTE and isinstance(count, int) \
                and msg.header.get("targets") == everyone:
            state.reach(count, None)

    return live, after
