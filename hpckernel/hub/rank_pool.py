"""All ranks of one kernel: their lifecycle, and the plane thread that talks to them.

``RankPool`` is a ``RankPlane`` (``rank_plane.py``: the plane thread with its own asyncio
loop, so that the kernel's shell, async ``do_execute``, and plain synchronous code in the
hub namespace, ``ranks.pull``, can both wait on it; the rank table, the requests in flight,
the published values) that starts, watches and restarts the ranks, and owns the sockets
(``transport.py``). How messages reach the ranks is the fan-in's business (``fanin/``: each
rank directly, or through one agent per node), chosen at each launch. Output goes straight
to IOPub through the ``publish`` callback, which is thread-safe in ipykernel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import zmq.asyncio

from ..plane import write_plane_info
from ..plane.headers import PlaneHeader
from .errors import RanksUnavailable
from .fanin import FaninContext, FaninSettings, choose
from .inflight import Publish
from .rank_launchers import LaunchError, RankLauncher, log_tail
from .rank_plane import PoolSettings, RankPlane
from .ranktable import RankInfo, describe_unavailable
from .transport import Transport

__all__ = ["PoolSettings", "Publish", "RankInfo", "RankPool", "RanksUnavailable",
           "describe_unavailable"]

log = logging.getLogger(__name__)


class RankPool(RankPlane):
    """All ranks of one kernel. Methods without a leading underscore are thread-safe; the
    others, and everything that touches a socket, run on the plane thread."""

    restartable = True

    def __init__(self, launcher: RankLauncher, job_dir: Path, publish: Publish,
                 settings: PoolSettings | None = None) -> None:
        super().__init__(launcher.ranks, job_dir, publish, settings)
        self.launcher = launcher
        #: where debugged ranks' DAP events go (rank, event): hub/debugger.py, set by the kernel
        self.dap_events: Callable[[int, dict[str, object]], None] | None = None
        self.mpi_version = ""
        self.launches = 0  # the current launch's number (plane/identity.py)
        self._launch_task: asyncio.Task[None] | None = None
        self._steps[2:2] = [("rank exits", self._tick_exits)]
        self._steps.append(("start timeout", self._tick_start_timeout))

    # -- thread-safe API --------------------------------------------------------------

    def start(self) -> None:
        """Bind the plane and launch the ranks; ``ready`` resolves once all registered."""
        started: Future[None] = Future()
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(started), self.loop)
        started.result(timeout=30)

    def restart(self) -> Future[None]:
        """Replace every rank with a fresh one; resolves when the new ranks are ready."""
        return asyncio.run_coroutine_threadsafe(self._restart(), self.loop)

    def shutdown(self, timeout: float = 10.0) -> None:
        """End the ranks and the plane thread (the kernel's shutdown)."""
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
        except Exception:
            log.exception("rank shutdown failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def describe(self) -> str:
        """The launcher's line for ``%ranks``: how the ranks were started, their MPI."""
        return self.launcher.describe()

    # -- the plane thread: lifecycle ----------------------------------------------------

    async def _start(self, started: Future[None]) -> None:
        try:
            # The context's I/O threads carry every rank's bytes; the ZAP handler runs on it.
            self.ctx = zmq.asyncio.Context()
            per_node = -(-self.size // max(self.launcher.node_count(), 1))
            self.transport = Transport(self.ctx, self.size, self.settings.tcp_ip,
                                       peers_per_address=per_node + 16)
            info = replace(self.transport.bind(), window=self.settings.output_window)
            self.plane_file = write_plane_info(self.job_dir, info)
            self._spawn(self._tick())
            await self._launch()
            started.set_result(None)
        except Exception as e:
            started.set_exception(e)

    async def _launch(self) -> None:
        if self.ready.done():
            self.ready = Future()
        self.table.reset()
        self.launches += 1  # so that messages and checks of earlier ranks are dropped
        self.transport.new_launch(self.launches)
        settings = self.settings
        fanin = self.fanin = choose(settings.fanin, self.launcher.node_count())(FaninContext(
            size=self.size, launch=self.launches, table=self.table, inflight=self.inflight,
            live=self.live, transport=self.transport, settings=FaninSettings(
                heartbeat_interval=settings.heartbeat_interval,
                output_window=settings.output_window, agent_timeout=settings.agent_timeout,
                agent_return=settings.agent_return),
            register=self.register, unreachable=self.unreachable,
            ranks_lost=self._ranks_lost, end_ranks=self._end_ranks,
            dap_event=self._dap_event))
        self.transport.on_message = fanin.handle
        self.inflight.reinterrupt = fanin.interrupt
        self.launcher.agents = fanin.uses_agents
        self.launcher.fanout = settings.fanout
        self._started_at = time.monotonic()
        try:
            await self.launcher.start(self.job_dir, self.plane_file, self.launches)
        except LaunchError as e:
            self._launch_failed(str(e))
            return
        self._launch_task = self.loop.create_task(self._watch_launcher())

    def _launch_failed(self, why: str) -> None:
        for info in self.table:
            if info.state != "dead":
                self._rank_died(info.rank, "did not start" if info.state == "starting"
                                else "ended with the launcher")
        if not self.ready.done():
            self.ready.set_exception(LaunchError(why))

    async def _watch_launcher(self) -> None:
        code = await self.launcher.wait()
        await asyncio.sleep(0.2)  # let rank.sh finish writing exit codes
        self._check_exits()
        tail = log_tail(self.job_dir)
        starting = self.table.starting
        for info in self.table:
            if info.state != "dead":
                self._rank_died(info.rank, f"ended when the launcher exited with code {code}")
        if starting or not self.ready.done():
            self._launch_failed(f"the ranks failed to start (launcher exit code {code})"
                                + (f":\n{tail}" if tail else ""))

    async def _restart(self) -> None:
        await self._stop_ranks()
        self.transport.remove_segments()
        self.inflight.fail_all({"status": "error", "ename": "RanksRestarted",
                                "evalue": "the ranks were restarted while this ran"})
        await self._launch()
        await asyncio.wrap_future(self.ready)

    async def _stop_ranks(self) -> None:
        if self._launch_task is not None:
            self._launch_task.cancel()
            self._launch_task = None
        proc = self.launcher.proc
        fanin = self.fanin
        if proc is not None and fanin is not None and fanin.idle():
            # Idle ranks can leave on their own (MPI_Finalize); busy ones are terminated.
            fanin.shutdown()
            try:
                # MPI_Finalize of many ranks sharing few cores takes a while (64 on 2: ≈4 s).
                await asyncio.wait_for(proc.wait(), 2.0 + 0.05 * len(self.table))
            except asyncio.TimeoutError:
                log.warning("ranks did not exit after shutdown; terminating them")
        await self.launcher.stop()

    async def _shutdown(self) -> None:
        await self._stop_ranks()
        for task in list(self._tasks):
            task.cancel()
        self.transport.close()
        self.ctx.destroy(linger=0)

    # -- the plane thread: the tick -------------------------------------------------------

    def _tick_exits(self, now: float) -> None:
        # A direct fan-in learns of a death mid-cell only from the exit code; agents say so.
        beat_due = now - self._last_beat >= self.settings.heartbeat_interval
        if beat_due or (len(self.inflight) and self.fanin is not None
                        and self.fanin.watch_exits()):
            self._check_exits()

    def _tick_start_timeout(self, now: float) -> None:
        if not self.ready.done() and now - self._started_at > self.settings.start_timeout:
            self._started_at = float("inf")  # once
            self._spawn(self._start_timed_out())

    async def _start_timed_out(self) -> None:
        await self.launcher.stop()
        self._launch_failed(f"the ranks did not start within {self.settings.start_timeout:g} "
                            f"s:\n{log_tail(self.job_dir)}")

    # -- the plane thread: requests and registrations -----------------------------------

    def register(self, info: RankInfo, header: PlaneHeader) -> None:
        """A rank's registration (directly, or through its node's agent). A rank that
        registers again (its node's agent was started again) keeps its state."""
        info.pid, info.host = header.get("pid"), header.get("host", "")
        if info.state != "starting":
            return
        self.mpi_version = header.get("mpi") or self.mpi_version
        if header.get("error"):
            self._launch_failed(
                f"rank {info.rank} cannot start: {header['error']}. Check that mpi4py finds an "
                "MPI library (pip install 'hpckernel[mpich]' for a self-contained one).")
            return
        if header.get("size") != self.size:
            self._launch_failed(f"rank {info.rank} is in an MPI world of {header.get('size')} "
                                f"ranks, expected {self.size}: is mpi4py built for the MPI "
                                f"of {getattr(self.launcher, 'mpiexec', 'srun')}?")
            return
        self.table.set_state(info, "idle")
        if self.table.starting == 0 and not self.ready.done():
            log.info("%d ranks ready in %.2f s", self.size,
                     time.monotonic() - self._started_at)
            self.ready.set_result(None)

    # -- the plane thread: deaths -------------------------------------------------------

    def unreachable(self, rank: int) -> None:
        """``rank`` cannot be reached (directly, or by its node's agent)."""
        # The socket can learn of a death before rank.sh has written the exit code: give it
        # a moment, so the user reads "killed by SIGSEGV" rather than "unreachable".
        self._check_exits()
        if self.table[rank].state != "dead":
            self.loop.call_later(1.0, self._confirm_unreachable, rank, self.launches)

    def _confirm_unreachable(self, rank: int, launch: int) -> None:
        self._check_exits()
        if launch == self.launches and self.table[rank].state != "dead":
            self._rank_died(rank, "is unreachable")

    def _rank_died(self, rank: int, reason: str) -> None:
        self.inflight.fail_rank(rank, self.table.mark_dead(rank, reason))

    def _dap_event(self, rank: int, event: dict[str, object]) -> None:
        if self.dap_events is not None:
            self.dap_events(rank, event)

    def _ranks_lost(self, ranks: list[int], reason: str) -> None:
        for rank in ranks:
            if self.table[rank].state != "dead":
                self.inflight.fail_rank(rank, self.table.mark_dead(rank, reason, tail=False))

    def _end_ranks(self, ranks: list[int], reason: str) -> None:
        """``ranks`` cannot be reached though they may still run: end every rank, so that
        none is called dead while it runs (an MPI job cannot go on without some ranks)."""
        log.warning("ending the ranks: %s", reason)
        self._ranks_lost(ranks, reason)
        self._ranks_lost([i.rank for i in self.table],
                         f"ended with the others: {reason}")
        self._spawn(self.launcher.stop())

    def _check_exits(self) -> None:
        for rank, reason in self.table.new_exits(self.launches):
            self._rank_died(rank, reason)
