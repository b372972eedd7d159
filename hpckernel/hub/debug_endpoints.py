"""The debugged processes, as the hub's debugger (``debugger.py``) reaches them: a rank over
the rank plane (its I/O thread takes ``dap`` requests while it runs or is stopped, through
its node's agent if there is one), or the hub itself for ``%%local`` cells."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING

from ..debug.dap import DapMessage, response
from ..debug.target import DebugTarget
from ..plane import kinds
from .dap_ids import HUB, Key
from .rank_pool import RanksUnavailable

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .debugger import HubDebugger
    from .px_controller import PxController


class Endpoint:
    """One debugged process: ``request`` sends it a DAP request and returns its response
    (a failure response, never an exception, if it cannot answer)."""

    key: Key
    main_thread: int | None = None  # its own DAP id of its main thread, once attached
    pid: int | None = None  # the process attached to (a rank restarted is another one)

    async def request(self, message: DapMessage) -> DapMessage:
        """Send ``message`` (a DAP request) and return its response."""
        raise NotImplementedError


class RankEndpoint(Endpoint):
    """A rank, through ``PxController.submit("dap", ...)``: a control request, answered by
    the rank's debugger thread (``worker/debugger.py``)."""

    def __init__(self, px: PxController, rank: int, timeout: float) -> None:
        self.px = px
        self.key = rank
        self.timeout = timeout

    async def request(self, message: DapMessage) -> DapMessage:
        """``message`` through the plane as a ``dap`` request; a failure response if the
        rank does not answer within :attr:`timeout` or is not running."""
        rank = int(self.key)
        handle = self.px.submit(kinds.DAP, [rank], {"dap": message}, output="none",
                                label="debugger")
        try:
            done = await asyncio.wait_for(asyncio.wrap_future(handle.request.future),
                                          self.timeout)
        except asyncio.TimeoutError:
            self.px.pool.expire(handle.request, f"no answer within {self.timeout:g} s")
            return response(message, message=f"rank {rank} did not answer the debugger "
                            f"within {self.timeout:g} s")
        except RanksUnavailable as e:
            return response(message, message=str(e))
        reply = done.replies.get(rank) or {}
        answer = reply.get("dap")
        if reply.get("status") != "ok" or not isinstance(answer, dict):
            return response(message, message=f"rank {rank}: {reply.get('evalue') or reply}")
        return answer


class LocalEndpoint(Endpoint):
    """The hub's own process, for ``%%local`` cells: a ``DebugTarget`` here, whose thread
    answers; its events go straight to the debugger."""

    def __init__(self, debugger: HubDebugger, shell: InteractiveShell) -> None:
        self.key = HUB
        self.pid = os.getpid()
        self._futures: dict[int, tuple[asyncio.AbstractEventLoop,
                                       asyncio.Future[DapMessage]]] = {}
        self._tags = itertools.count()
        self.target: DebugTarget[int] = DebugTarget(lambda: shell.user_ns, self._answer,
                                  lambda event: debugger.on_event(HUB, event),
                                  shell.user_expressions)

    async def request(self, message: DapMessage) -> DapMessage:
        """``message`` to this process's target; its thread answers (any loop may wait)."""
        loop = asyncio.get_running_loop()
        tag = next(self._tags)
        future: asyncio.Future[DapMessage] = loop.create_future()
        self._futures[tag] = (loop, future)
        self.target.submit(tag, message)
        try:
            return await future
        finally:
            self._futures.pop(tag, None)

    def _answer(self, tag: int, answer: DapMessage) -> None:
        """On the target's thread: hand the response to the waiting request."""
        waiting = self._futures.get(tag)
        if waiting is not None:
            loop, future = waiting
            loop.call_soon_threadsafe(_resolve, future, answer)


def _resolve(future: asyncio.Future[DapMessage], answer: DapMessage) -> None:
    if not future.done():
        future.set_result(answer)
