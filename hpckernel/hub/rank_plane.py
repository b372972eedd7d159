"""Ranks as the hub's cell machinery reaches them: a plane thread with its own asyncio loop,
the bookkeeping every way of reaching ranks shares (the rank table, the requests in flight,
the values published mid-cell, the output budget), and a fan-in (``fanin/``) that knows how
messages get there and back.

``RankPool`` (``rank_pool.py``) is the kernel's own ranks: it starts them, watches them and
starts them again. An attached live batch job (``live/attached.py``) is ranks the notebook
did not start, reached through the job's endpoint. ``PxController`` runs ``%%px`` cells,
``%peek`` and ``%where`` on either the same way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from ..plane import kinds
from ..plane.credit import DEFAULT_WINDOW
from .errors import RanksUnavailable
from .fanin import Fanin
from .inflight import InFlight, Publish
from .live import LiveStore
from .merge import OutputBudget, OutputMerger
from .messages import Parent
from .outputs import RankOutputs
from .ranktable import RankInfo, RankTable, describe_unavailable
from .requests import Request

log = logging.getLogger(__name__)


@dataclass
class PoolSettings:
    """What the pool needs of ``HubKernel``'s settings."""

    flush_interval: float = 0.1
    heartbeat_interval: float = 1.0
    interrupt_grace: float = 3.0
    start_timeout: float = 120.0
    tcp_ip: str = "127.0.0.1"
    fanin: str = "direct"  # HubKernel.fanin: direct, agents, or auto (agents if > 1 node)
    agent_timeout: float = 4.0  # seconds of silence after which an agent is lost
    agent_return: float = 10.0  # seconds a lost agent's node waits for it to come back
    fanout: int = 64  # HubKernel.fanout: above this many nodes, agents form a tree
    output_window: int = DEFAULT_WINDOW  # HubKernel.output_window, bytes per sender


class RankPlane:
    """Ranks reached through a fan-in. Methods without a leading underscore are
    thread-safe; the others, and everything that touches a socket, run on the plane
    thread."""

    #: whether :meth:`restart` can start the ranks again (the kernel's own ranks)
    restartable = False

    def __init__(self, size: int, job_dir: Path, publish: Publish,
                 settings: PoolSettings | None = None,
                 budget: OutputBudget | None = None) -> None:
        self.job_dir = job_dir
        self.settings = settings or PoolSettings()
        self.size = size
        self.table = RankTable(size, job_dir)
        self.inflight = InFlight(self.table, publish)
        self.budget = budget or OutputBudget()
        self.live = LiveStore()  # values the ranks publish mid-cell (hpckernel.publish)
        self.fanin: Fanin | None = None
        self.loop = asyncio.new_event_loop()
        self.ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="hpckernel-plane", daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failed_steps: dict[str, float] = {}
        #: the tick's steps, each run even when another fails (``_tick``)
        self._steps: list[tuple[str, Callable[[float], None]]] = [
            ("published values", self.live.flush),
            ("requests in flight", self._tick_requests),
            ("heartbeat", self._tick_heartbeat),
        ]
        self._last_beat = 0.0

    # -- thread-safe API --------------------------------------------------------------

    def submit(self, kind: str, targets: list[int], header: Mapping[str, object] | None = None,
               value: object = None, parent: Parent | None = None, output: str = "live",
               label: str = "", per_rank: dict[int, object] | None = None,
               keep: RankOutputs | None = None) -> Request:
        """Send a request to ``targets``. ``output``: ``live`` publishes merged output to
        IOPub under ``parent``, ``capture`` keeps it on the request, ``none`` drops it.
        ``per_rank`` gives each target a value of its own instead of ``value``; ``keep``
        keeps every rank's whole output (``outputs.py``)."""
        request = Request(kind, targets, parent=parent, label=label, outputs=keep)
        if output != "none":
            if output == "capture":
                request.captured = []
            request.merger = OutputMerger(targets,
                                          lambda *m: self.inflight.emit(request, *m),
                                          self.budget, keep=keep)
        self.loop.call_soon_threadsafe(self._send_request, request, header or {}, value,
                                       per_rank)
        return request

    def expire(self, request: Request, reason: str) -> None:
        """Stop waiting for the ranks that have not answered ``request`` (a control request
        whose answer is overdue): they count as failed with ``reason``."""
        self.loop.call_soon_threadsafe(self.inflight.expire, request, reason)

    def interrupt(self) -> None:
        """Interrupt every open request on the ranks (the notebook's interrupt button)."""
        self.loop.call_soon_threadsafe(self._interrupt)

    def restart(self) -> Future[None]:
        """Replace every rank with a fresh one; resolves when the new ranks are ready (the
        kernel's own ranks; others say why not)."""
        refused: Future[None] = Future()
        refused.set_exception(RanksUnavailable("these ranks were not started by this "
                                               "kernel: it cannot start them again"))
        return refused

    def describe(self) -> str:
        """One line for ``%ranks`` and the dashboard: the ranks' MPI, or how they are
        reached."""
        return ""

    def snapshot(self) -> list[RankInfo]:
        """A copy of the rank table with what the fan-in keeps apart (busy ranks, load)."""
        if threading.current_thread() is self._thread:
            return self._snapshot()
        done: Future[list[RankInfo]] = Future()
        self.loop.call_soon_threadsafe(lambda: done.set_result(self._snapshot()))
        return done.result(timeout=10)

    def _snapshot(self) -> list[RankInfo]:
        infos = [replace(info, queue=deque(info.queue)) for info in self.table]
        if self.fanin is not None:
            self.fanin.fill(infos)
        return infos

    # -- the plane thread ---------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _spawn(self, coro: Coroutine[object, None, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        """Every flush interval, each step: flush output, notice deaths, heartbeat, give
        up on stuck ranks. A step that fails is logged and the others run on: nothing a
        rank sends may stop the heartbeat (without it every rank would leave)."""
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            now = time.monotonic()
            for name, step in self._steps:
                try:
                    step(now)
                except Exception:
                    self._step_failed(name, now)

    def _step_failed(self, name: str, now: float) -> None:
        if now - self._failed_steps.get(name, -1e9) >= 10:  # a line per step per 10 s
            self._failed_steps[name] = now
            log.exception("the plane's %s step failed (it runs again at the next tick)",
                          name)

    def _tick_requests(self, now: float) -> None:
        self.inflight.tick(now, self.settings.interrupt_grace)

    def _tick_heartbeat(self, now: float) -> None:
        if now - self._last_beat >= self.settings.heartbeat_interval:
            self._last_beat = now
            if self.fanin is not None:
                self.fanin.heartbeat(now)

    def _send_request(self, request: Request, header: Mapping[str, object], value: object,
                      per_rank: dict[int, object] | None = None) -> None:
        unavailable = self.table.unavailable(request.targets, kinds.is_control(request.kind))
        if unavailable:
            request.future.set_exception(RanksUnavailable(describe_unavailable(unavailable)))
            return
        if self.fanin is None:
            request.future.set_exception(RanksUnavailable("the ranks are not started"))
            return
        try:
            self.fanin.send(request, {**header, "id": request.id}, value, per_rank)
        except Exception as e:  # an unpicklable value: the caller's error, not the plane's
            request.future.set_exception(TypeError(
                f"cannot send this value to the ranks: {type(e).__name__}: {e}"))

    def _interrupt(self) -> None:
        if self.fanin is not None:
            self.fanin.interrupt()
        self.inflight.interrupted(time.monotonic())
