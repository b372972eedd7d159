"""Which ranks a cell or magic runs on: the kernel's own (``PxController`` over its
``RankPool``), or an attached live batch job's (``--job JOBID``: a ``PxController`` over the
job's ranks, ``live/client.py``). Everything after the choice is one path."""

from __future__ import annotations

import asyncio

from .cell_routing import MagicUsageError
from .errors import HubError
from .px_controller import CellError, PxController


class Controllers:
    """The kernel's own ``PxController`` (None in a plain IPython kernel, which has no
    ranks of its own) and those of the jobs attached in this process."""

    def __init__(self, own: PxController | None) -> None:
        self.own = own

    def get(self, job: str | None) -> PxController:
        """The controller of ``job`` (attached now if need be: blocking), or the kernel's
        own without one."""
        if job is not None:
            from ..live.client import job as attached

            try:
                return attached(job).px
            except HubError as e:  # not live, not the user's, ended: one line in the cell
                raise CellError(type(e).__name__, str(e), [str(e)]) from None
        if self.own is None:
            raise MagicUsageError("this kernel has no ranks of its own: name a live batch "
                                  "job with --job JOBID (see %attach)")
        return self.own

    async def get_async(self, job: str | None) -> PxController:
        """:meth:`get` from async code (the kernel's ``do_execute``): attaching blocks, so
        it runs in a thread."""
        if job is None and self.own is not None:
            return self.own
        return await asyncio.to_thread(self.get, job)

    def attached(self) -> list[PxController]:
        """The controllers of the jobs attached in this process (to interrupt them)."""
        from ..live.client import ATTACHED

        return [handle.px for handle in list(ATTACHED.values())]
