"""The hub's side of the plane: a thread that talks to every rank.

``RankPool`` runs an asyncio loop of its own (the plane thread), so that the kernel's shell
(async ``do_execute``) and plain synchronous code in the hub namespace (``ranks.pull``) can
both wait on it. It starts, watches and restarts the ranks, and joins the parts that do one
job each: the sockets (``transport``), the rank table (``ranktable``) and the requests in
flight (``inflight``). Output goes straight to IOPub through the ``publish`` callback, which
is thread-safe in ipykernel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zmq.asyncio

from ..plane import Message, pack, write_plane_info
from ..plane.credit import DEFAULT_WINDOW, Credits
from .agents import Agents
from .inflight import InFlight, Publish
from .live import LiveStore
from .merge import OutputBudget, OutputMerger
from .outputs import RankOutputs
from .rank_launchers import LaunchError, RankLauncher, log_tail
from .ranktable import RankInfo, RankTable, describe_unavailable
from .requests import Request
from .transport import Transport

__all__ = ["CONTROL_KINDS", "PoolSettings", "Publish", "RankInfo", "RankPool",
           "RanksUnavailable", "describe_unavailable"]

log = logging.getLogger(__name__)

#: Requests a rank's I/O thread answers while the rank may be busy: no queueing, no state.
CONTROL_KINDS = frozenset({"complete", "inspect", "peek", "where"})


class RanksUnavailable(RuntimeError):
    """Some target ranks are dead or stuck; the message says what to do."""


@dataclass
class PoolSettings:
    flush_interval: float = 0.1
    heartbeat_interval: float = 1.0
    interrupt_grace: float = 3.0
    start_timeout: float = 120.0
    tcp_ip: str = "127.0.0.1"
    fanin: str = "direct"  # HubKernel.fanin: direct, agents, or auto (agents if > 1 node)
    agent_timeout: float = 4.0  # seconds of silence after which an agent is dead
    fanout: int = 64  # HubKernel.fanout: above this many nodes, agents form a tree
    output_window: int = DEFAULT_WINDOW  # HubKernel.output_window, bytes per sender


class RankPool:
    """All ranks of one kernel. Methods without a leading underscore are thread-safe; the
    others, and everything that touches a socket, run on the plane thread."""

    def __init__(self, launcher: RankLauncher, job_dir: Path, publish: Publish,
                 settings: PoolSettings | None = None) -> None:
        self.launcher = launcher
        self.job_dir = job_dir
        self.settings = settings or PoolSettings()
        self.size = launcher.ranks
        self.table = RankTable(self.size, job_dir)
        self.inflight = InFlight(self.table, publish)
        self.budget = OutputBudget()
        self.live = LiveStore()  # values the ranks publish mid-cell (hpckernel.publish)
        self.agents = Agents(self, self.settings.agent_timeout)
        #: how far each rank's output is taken in (flow control, plane/credit.py)
        self.credits: Credits[int] = Credits(self.settings.output_window)
        self.use_agents = False  # decided at each launch (settings.fanin)
        self.loop = asyncio.new_event_loop()
        self.ready: Future[None] = Future()
        self.mpi_version = ""
        self._thread = threading.Thread(target=self._run, name="hpckernel-plane", daemon=True)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._launch_task: asyncio.Task[None] | None = None
        self._launches = 0

    # -- thread-safe API --------------------------------------------------------------

    def start(self) -> None:
        """Bind the plane and launch the ranks; ``ready`` resolves once all registered."""
        started: Future[None] = Future()
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(started), self.loop)
        started.result(timeout=30)

    def submit(self, kind: str, targets: list[int], header: dict[str, Any] | None = None,
               value: Any = None, parent: dict[str, Any] | None = None, output: str = "live",
               label: str = "", per_rank: dict[int, Any] | None = None,
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
        self.loop.call_soon_threadsafe(self._interrupt)

    def restart(self) -> Future[None]:
        """Replace every rank with a fresh one; resolves when the new ranks are ready."""
        return asyncio.run_coroutine_threadsafe(self._restart(), self.loop)

    def snapshot(self) -> list[RankInfo]:
        if not self.use_agents or threading.current_thread() is self._thread:
            return self._snapshot()
        # Agents keep the ranks' busy states: read them where they change.
        done: Future[list[RankInfo]] = Future()
        self.loop.call_soon_threadsafe(lambda: done.set_result(self._snapshot()))
        return done.result(timeout=10)

    def _snapshot(self) -> list[RankInfo]:
        infos = [replace(info, queue=deque(info.queue)) for info in self.table]
        if self.use_agents:
            self.agents.fill(infos)
        return infos

    def shutdown(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
        except Exception:
            log.exception("rank shutdown failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    # -- the plane thread: lifecycle ----------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, started: Future[None]) -> None:
        try:
            # The context's I/O threads carry every rank's bytes; the ZAP handler runs on it.
            self.ctx = zmq.asyncio.Context()
            self.transport = Transport(self.ctx, self.size, self.settings.tcp_ip)
            info = replace(self.transport.bind(), window=self.settings.output_window)
            self.plane_file = write_plane_info(self.job_dir, info)
            self.transport.on_agent = self.agents.handle
            for router in self.transport.routers:
                self._spawn(self.transport.receive(router, self._handle))
            self._spawn(self._tick())
            await self._launch()
            started.set_result(None)
        except Exception as e:
            started.set_exception(e)

    async def _launch(self) -> None:
        if self.ready.done():
            self.ready = Future()
        self.table.reset()
        self.agents.reset()
        self.credits.reset()
        fanin = self.settings.fanin
        self.use_agents = fanin == "agents" or (fanin == "auto" and self.launcher.node_count() > 1)
        self.launcher.agents = self.use_agents
        self.launcher.fanout = self.settings.fanout
        self.inflight.per_rank = not self.use_agents
        self._started_at = time.monotonic()
        self._launches += 1  # so that checks scheduled for earlier ranks are dropped
        try:
            await self.launcher.start(self.job_dir, self.plane_file)
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
        if proc is not None and all(i.state == "idle" for i in self.table) and not (
                self.use_agents and self.inflight.busy()):
            # Idle ranks can leave on their own (MPI_Finalize); busy ones are terminated.
            if self.use_agents:
                self.agents.broadcast("shutdown")
            else:
                frames = pack("shutdown", {})
                for info in self.table:
                    self._send_to(info.rank, frames)
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

    async def _tick(self) -> None:
        """Flush merged output, notice deaths, heartbeat, and give up on stuck ranks."""
        last_beat = 0.0
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            now = time.monotonic()
            self.live.flush(now)
            self.inflight.tick(now, self.settings.interrupt_grace)
            beat_due = now - last_beat >= self.settings.heartbeat_interval
            # With agents, a rank's death also comes as a "lost" rank in its node's reply.
            if beat_due or (len(self.inflight) and not self.use_agents):
                self._check_exits()
            if beat_due:
                last_beat = now
                if self.use_agents:
                    self.agents.heartbeat(now)
                else:
                    beat = pack("hb", {})
                    for info in self.table:
                        if info.state in ("idle", "busy", "stuck"):
                            self._send_to(info.rank, beat)
            if not self.ready.done() and now - self._started_at > self.settings.start_timeout:
                await self.launcher.stop()
                self._launch_failed(f"the ranks did not start within "
                                    f"{self.settings.start_timeout:g} s:\n"
                                    f"{log_tail(self.job_dir)}")

    # -- the plane thread: messages -----------------------------------------------------

    def _handle(self, rank: int, msg: Message) -> None:
        info = self.table[rank]
        header = msg.header
        if msg.msg_type == "register":
            self.register(info, header)
        elif msg.msg_type == "hb":
            info.cpu, info.rss = header.get("cpu", 0.0), header.get("rss", 0)
        elif msg.msg_type in ("stream", "display"):
            request = self.inflight.get(header.get("id") or "")
            if request is not None and request.merger is not None:
                if msg.msg_type == "stream":
                    request.merger.add_stream(rank, header["name"], header["text"])
                else:
                    request.merger.add_display(rank, header["msg_type"], msg.value())
            # Taken in (merged, or dropped: its request is over): the rank may send more.
            self._credit(rank, msg)
        elif msg.msg_type == "more":  # the rank waits: all it sent before this is taken in
            self._credit(rank, msg)
        elif msg.msg_type == "reply":
            self.inflight.reply(info, header, msg)
        elif msg.msg_type == "live":
            self.live.add(str(header.get("name")), info.rank, msg.value())

    def _credit(self, rank: int, msg: Message) -> None:
        frames = self.credits.answer(rank, msg.msg_type, msg.header)
        if frames is not None:
            self._send_to(rank, frames)

    def register(self, info: RankInfo, header: dict[str, Any]) -> None:
        """A rank's registration (directly, or through its node's agent)."""
        info.pid, info.host = header.get("pid"), header.get("host", "")
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

    def _send_request(self, request: Request, header: dict[str, Any], value: Any,
                      per_rank: dict[int, Any] | None = None) -> None:
        control = request.kind in CONTROL_KINDS
        unavailable = self.table.unavailable(request.targets, control)
        if unavailable:
            request.future.set_exception(RanksUnavailable(describe_unavailable(unavailable)))
            return
        header = {**header, "id": request.id}
        try:
            if self.use_agents:
                to_nodes = self.agents.pack_request(request, header, value, per_rank)
            else:
                frames = ({r: pack(request.kind, header, per_rank[r], has_value=True)
                           for r in request.targets} if per_rank is not None else
                          dict.fromkeys(request.targets, pack(request.kind, header, value,
                                                              has_value=value is not None)))
        except Exception as e:  # an unpicklable value: the caller's error, not the plane's
            request.future.set_exception(TypeError(
                f"cannot send this value to the ranks: {type(e).__name__}: {e}"))
            return
        self.inflight.add(request, control)
        if self.use_agents:
            for node, node_frames in to_nodes:
                self.agents.send(node, node_frames)
            return
        for rank in request.targets:
            self._send_to(rank, frames[rank])

    def _interrupt(self) -> None:
        now = time.monotonic()
        if self.use_agents:
            self.agents.broadcast("interrupt")  # each agent interrupts its busy ranks
        else:
            frames = pack("interrupt", {})
            for info in self.table:
                if info.state == "busy":
                    self._send_to(info.rank, frames)
        self.inflight.interrupted(now)

    def _send_to(self, rank: int, frames: list[Any]) -> None:
        if not self.transport.send(rank, frames):
            self.unreachable(rank)

    # -- the plane thread: deaths -------------------------------------------------------

    def unreachable(self, rank: int) -> None:
        """``rank`` cannot be reached (directly, or by its node's agent)."""
        # The socket can learn of a death before rank.sh has written the exit code: give it
        # a moment, so the user reads "killed by SIGSEGV" rather than "unreachable".
        self._check_exits()
        if self.table[rank].state != "dead":
            self.loop.call_later(1.0, self._confirm_unreachable, rank, self._launches)

    def _confirm_unreachable(self, rank: int, launch: int) -> None:
        self._check_exits()
        if launch == self._launches and self.table[rank].state != "dead":
            self._rank_died(rank, "is unreachable")

    def _rank_died(self, rank: int, reason: str) -> None:
        self.inflight.fail_rank(rank, self.table.mark_dead(rank, reason))

    def _check_exits(self) -> None:
        for rank, reason in self.table.new_exits():
            self._rank_died(rank, reason)
