"""The hub's side of the plane: a thread that talks to every rank.

It owns the ROUTER sockets, the rank table and the requests in flight, and runs an asyncio
loop of its own so that the kernel's shell (async ``do_execute``) and plain synchronous code
in the hub namespace (``ranks.pull``) can both wait on it. Output goes straight to IOPub
through the ``publish`` callback, which is thread-safe in ipykernel.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from ..plane import Message, PlaneInfo, make_job_dir, pack, unpack, write_plane_info
from ..plane.addresses import node_name
from ..targets import format_ranks
from .launch import LaunchError, RankLauncher, describe_exit, exit_codes, log_tail
from .live import LiveStore
from .merge import OutputBudget, OutputMerger
from .requests import Request

log = logging.getLogger(__name__)

#: publish(msg_type, content, metadata, parent) sends one IOPub message.
Publish = Callable[[str, dict[str, Any], dict[str, Any], dict[str, Any] | None], None]


#: Requests a rank's I/O thread answers while the rank may be busy: no queueing, no state.
CONTROL_KINDS = frozenset({"complete", "inspect", "peek", "where"})


class RanksUnavailable(RuntimeError):
    """Some target ranks are dead or stuck; the message says what to do."""


@dataclass
class RankInfo:
    """What the hub knows of one rank (shown by ``%ranks``)."""

    rank: int
    state: str = "starting"  # starting, idle, busy, stuck, dead
    pid: int | None = None
    host: str = ""
    cpu: float = 0.0
    rss: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    reason: str = ""  # why it is dead or stuck
    cell: str = ""  # label of the request it runs now ("[7]", "%px"), for the dashboard
    queue: deque[str] = field(default_factory=deque)  # request ids, oldest running


@dataclass
class PoolSettings:
    flush_interval: float = 0.1
    heartbeat_interval: float = 1.0
    interrupt_grace: float = 3.0
    start_timeout: float = 120.0
    tcp_ip: str = "127.0.0.1"


class _KeyCheck:
    """ZAP credentials provider: only the ranks' CurveZMQ key may connect over TCP."""

    def __init__(self, public: str) -> None:
        self.public = public

    def callback(self, domain: str, key: bytes | str) -> bool:
        return (key.decode() if isinstance(key, bytes) else key) == self.public


class RankPool:
    """All ranks of one kernel. Methods without a leading underscore are thread-safe."""

    def __init__(self, launcher: RankLauncher, job_dir: Path, publish: Publish,
                 settings: PoolSettings | None = None) -> None:
        self.launcher = launcher
        self.job_dir = job_dir
        self.publish = publish
        self.settings = settings or PoolSettings()
        self.size = launcher.ranks
        self.ranks = [RankInfo(r) for r in range(self.size)]
        self.requests: dict[str, Request] = {}
        self.budget = OutputBudget()
        self.live = LiveStore()  # values the ranks publish mid-cell (hpckernel.publish)
        self.loop = asyncio.new_event_loop()
        self.ready: Future[None] = Future()
        self.mpi_version = ""
        self._thread = threading.Thread(target=self._run, name="hpckernel-plane", daemon=True)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._launch_task: asyncio.Task[None] | None = None
        self._sockets: list[zmq.asyncio.Socket] = []
        self._by_rank: dict[int, zmq.asyncio.Socket] = {}
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
               label: str = "", per_rank: dict[int, Any] | None = None) -> Request:
        """Send a request to ``targets``. ``output``: ``live`` publishes merged output to
        IOPub under ``parent``, ``capture`` keeps it on the request, ``none`` drops it.
        ``per_rank`` gives each target a value of its own instead of ``value``."""
        request = Request(kind, targets, parent=parent, label=label)
        if output != "none":
            if output == "capture":
                request.captured = []
            request.merger = OutputMerger(targets, lambda *m: self._emit(request, *m),
                                          self.budget)
        self.loop.call_soon_threadsafe(self._send_request, request, header or {}, value,
                                       per_rank)
        return request

    def expire(self, request: Request, reason: str) -> None:
        """Stop waiting for the ranks that have not answered ``request`` (a control request
        whose answer is overdue): they count as failed with ``reason``."""
        self.loop.call_soon_threadsafe(self._expire, request, reason)

    def interrupt(self) -> None:
        self.loop.call_soon_threadsafe(self._interrupt)

    def restart(self) -> Future[None]:
        """Replace every rank with a fresh one; resolves when the new ranks are ready."""
        return asyncio.run_coroutine_threadsafe(self._restart(), self.loop)

    def snapshot(self) -> list[RankInfo]:
        return [replace(info, queue=deque(info.queue)) for info in self.ranks]

    def shutdown(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
        except Exception:
            log.exception("rank shutdown failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    # -- the plane thread -------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, started: Future[None]) -> None:
        try:
            info = self._bind()
            self.plane_file = write_plane_info(self.job_dir, info)
            self._spawn(self._tick())
            await self._launch()
            started.set_result(None)
        except Exception as e:
            started.set_exception(e)

    def _bind(self) -> PlaneInfo:
        self.ctx = zmq.asyncio.Context()
        self.auth = AsyncioAuthenticator(self.ctx)
        self.auth.start()
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        self.auth.configure_curve_callback("*", _KeyCheck(client_public.decode()))
        ipc = self.ctx.socket(zmq.ROUTER)
        tcp = self.ctx.socket(zmq.ROUTER)
        tcp.curve_server = True
        tcp.curve_secretkey = server_secret
        tcp.curve_publickey = server_public
        for sock in (ipc, tcp):
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # restarted ranks reuse their identity
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone rank raises
            sock.setsockopt(zmq.LINGER, 0)
            self._sockets.append(sock)
            self._spawn(self._receive(sock))
        # The IPC socket lives in a short private directory on this node: the job directory
        # can be deeper than a socket path may be (107 bytes), and only local ranks use it.
        self._ipc_dir = make_job_dir()
        ipc_url = f"ipc://{self._ipc_dir}/plane.sock"
        ipc.bind(ipc_url)
        port = tcp.bind_to_random_port(f"tcp://{self.settings.tcp_ip}")
        return PlaneInfo(node=node_name(), ipc_url=ipc_url,
                         tcp_url=f"tcp://{self.settings.tcp_ip}:{port}",
                         server_public=server_public.decode(),
                         client_public=client_public.decode(),
                         client_secret=client_secret.decode(), size=self.size)

    async def _launch(self) -> None:
        if self.ready.done():
            self.ready = Future()
        for info in self.ranks:
            info.state, info.reason, info.pid, info.cell = "starting", "", None, ""
            info.queue.clear()
        self._started_at = time.monotonic()
        self._launches += 1  # so that checks scheduled for earlier ranks are dropped
        try:
            await self.launcher.start(self.job_dir, self.plane_file)
        except LaunchError as e:
            self._launch_failed(str(e))
            return
        self._launch_task = self.loop.create_task(self._watch_launcher())

    def _launch_failed(self, why: str) -> None:
        for info in self.ranks:
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
        starting = [i.rank for i in self.ranks if i.state == "starting"]
        for info in self.ranks:
            if info.state != "dead":
                self._rank_died(info.rank, f"ended when the launcher exited with code {code}")
        if starting or not self.ready.done():
            self._launch_failed(f"the ranks failed to start (launcher exit code {code})"
                                + (f":\n{tail}" if tail else ""))

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart(copy=False)
            try:
                rank = int(frames[0].bytes)
                msg = unpack(frames[1:])
                if not 0 <= rank < self.size:
                    raise ValueError(f"unknown rank {rank}")
            except (ValueError, UnicodeDecodeError) as e:
                log.warning("dropped a malformed plane message: %s", e)
                continue
            self._by_rank[rank] = sock
            try:
                self._handle(rank, msg)
            except Exception:
                log.exception("error handling %s from rank %d", msg.msg_type, rank)

    def _handle(self, rank: int, msg: Message) -> None:
        info = self.ranks[rank]
        info.last_seen = time.monotonic()
        header = msg.header
        if msg.msg_type == "register":
            self._register(info, header)
        elif msg.msg_type == "hb":
            info.cpu, info.rss = header.get("cpu", 0.0), header.get("rss", 0)
        elif msg.msg_type in ("stream", "display"):
            request = self.requests.get(header.get("id") or "")
            if request is None or request.merger is None:
                return
            if msg.msg_type == "stream":
                request.merger.add_stream(rank, header["name"], header["text"])
            else:
                request.merger.add_display(rank, header["msg_type"], msg.value())
        elif msg.msg_type == "reply":
            self._reply(info, header, msg)
        elif msg.msg_type == "live":
            self.live.add(str(header.get("name")), info.rank, msg.value())

    def _register(self, info: RankInfo, header: dict[str, Any]) -> None:
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
        info.state = "idle"
        if all(i.state != "starting" for i in self.ranks) and not self.ready.done():
            log.info("%d ranks ready in %.2f s", self.size,
                     time.monotonic() - self._started_at)
            self.ready.set_result(None)

    def _reply(self, info: RankInfo, header: dict[str, Any], msg: Message) -> None:
        request_id = header.get("id") or ""
        if request_id in info.queue:
            info.queue.remove(request_id)
        if info.state in ("busy", "stuck"):
            info.state = "busy" if info.queue else "idle"
            info.reason = ""
        info.cell = self._label(info)
        request = self.requests.get(request_id)
        if request is None or info.rank in request.replies:
            return  # a reply after we gave up on it (stuck rank) or a duplicate
        if request.merger is not None:
            request.merger.rank_done(info.rank)
        request.replies[info.rank] = header
        if msg.payload:
            try:
                request.values[info.rank] = msg.value()
            except Exception as e:
                request.replies[info.rank] = {**header, "status": "error",
                                              "ename": type(e).__name__, "evalue": str(e)}
        self._maybe_finish(request)

    def _send_request(self, request: Request, header: dict[str, Any], value: Any,
                      per_rank: dict[int, Any] | None = None) -> None:
        control = request.kind in CONTROL_KINDS
        unavailable = [self.ranks[r] for r in request.targets
                       if self.ranks[r].state in ("dead", "starting")
                       or (self.ranks[r].state == "stuck" and not control)]
        if unavailable:
            request.future.set_exception(RanksUnavailable(describe_unavailable(unavailable)))
            return
        header = {**header, "id": request.id}
        try:
            frames = ({r: pack(request.kind, header, per_rank[r], has_value=True)
                       for r in request.targets} if per_rank is not None else
                      dict.fromkeys(request.targets, pack(request.kind, header, value,
                                                          has_value=value is not None)))
        except Exception as e:  # an unpicklable value: the caller's error, not the plane's
            request.future.set_exception(TypeError(
                f"cannot send this value to the ranks: {type(e).__name__}: {e}"))
            return
        self.requests[request.id] = request
        for rank in request.targets:
            info = self.ranks[rank]
            if not control:
                info.queue.append(request.id)
                info.state = "busy" if info.state == "idle" else info.state
                info.cell = self._label(info)
            self._send_to(rank, frames[rank])

    def _label(self, info: RankInfo) -> str:
        request = self.requests.get(info.queue[0]) if info.queue else None
        return request.label if request is not None else ""

    def _expire(self, request: Request, reason: str) -> None:
        for rank in request.targets:
            request.replies.setdefault(rank, {"status": "error", "ename": "RankTimeout",
                                              "evalue": reason})
        self._maybe_finish(request)
        self.requests.pop(request.id, None)  # also when its waiter gave up (cancelled)

    def _send_to(self, rank: int, frames: list[Any]) -> None:
        sock = self._by_rank.get(rank)
        try:
            if sock is None:
                raise zmq.ZMQError(zmq.EHOSTUNREACH)
            sent = asyncio.ensure_future(
                sock.send_multipart([str(rank).encode(), *frames], copy=False))
            sent.add_done_callback(lambda f: self._sent(f, rank))
        except zmq.ZMQError:
            self._unreachable(rank)

    def _sent(self, sent: asyncio.Future[Any], rank: int) -> None:
        if not sent.cancelled() and sent.exception() is not None:
            self._unreachable(rank)

    def _unreachable(self, rank: int) -> None:
        # The socket can learn of a death before rank.sh has written the exit code: give it
        # a moment, so the user reads "killed by SIGSEGV" rather than "unreachable".
        self._check_exits()
        if self.ranks[rank].state != "dead":
            self.loop.call_later(1.0, self._confirm_unreachable, rank, self._launches)

    def _confirm_unreachable(self, rank: int, launch: int) -> None:
        self._check_exits()
        if launch == self._launches and self.ranks[rank].state != "dead":
            self._rank_died(rank, "is unreachable")

    def _emit(self, request: Request, msg_type: str, content: dict[str, Any],
              metadata: dict[str, Any]) -> None:
        if msg_type == "execute_result" and request.execution_count is not None:
            content = {**content, "execution_count": request.execution_count}
        if request.captured is not None:
            request.captured.append((msg_type, content, metadata))
        else:
            self.publish(msg_type, content, metadata, request.parent)

    def _maybe_finish(self, request: Request) -> None:
        if not request.done or request.future.done():
            return
        if request.merger is not None:
            request.merger.flush(final=True)
        self.requests.pop(request.id, None)
        request.finished = time.time()
        request.future.set_result(request)

    def _rank_died(self, rank: int, reason: str) -> None:
        info = self.ranks[rank]
        info.state, info.reason = "dead", reason
        tail = log_tail(self.job_dir, rank)
        # No rank number in the text, so that ranks that died alike collapse into one.
        error = {"status": "error", "ename": "RankDied", "evalue": reason,
                 "traceback": [*([f"last output of the rank:\n{tail}"] if tail else []),
                               "Run %restart_ranks to start fresh ranks."]}
        for request in list(self.requests.values()):
            if rank in request.targets and rank not in request.replies:
                request.replies[rank] = error
                if request.merger is not None:
                    request.merger.rank_done(rank)
                self._maybe_finish(request)
        info.queue.clear()
        info.cell = ""

    def _check_exits(self) -> None:
        for rank, code in exit_codes(self.job_dir).items():
            if 0 <= rank < self.size and self.ranks[rank].state != "dead":
                self._rank_died(rank, describe_exit(code))

    def _interrupt(self) -> None:
        now = time.monotonic()
        frames = pack("interrupt", {})
        for info in self.ranks:
            if info.state == "busy":
                self._send_to(info.rank, frames)
        for request in self.requests.values():
            if request.interrupted_at is None:
                request.interrupted_at = now

    def _give_up_on_stuck(self, request: Request, now: float) -> None:
        assert request.interrupted_at is not None
        if now - request.interrupted_at < self.settings.interrupt_grace:
            return
        for rank in request.targets:
            if rank in request.replies:
                continue
            info = self.ranks[rank]
            info.state = "stuck"
            info.reason = (f"did not stop within {self.settings.interrupt_grace:g} s of the "
                           "interrupt (blocked in C code, e.g. an MPI receive?)")
            request.replies[rank] = {
                "status": "error", "ename": "RankStuck", "evalue": info.reason,
                "traceback": ["The rank is marked stuck. Run %restart_ranks to replace the "
                              "ranks."]}
            if request.merger is not None:
                request.merger.rank_done(rank)
        self._maybe_finish(request)

    async def _tick(self) -> None:
        """Flush merged output, notice deaths, heartbeat, and give up on stuck ranks."""
        last_beat = 0.0
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            now = time.monotonic()
            self.live.flush(now)
            for request in list(self.requests.values()):
                if request.merger is not None:
                    request.merger.flush()
                if request.interrupted_at is not None:
                    self._give_up_on_stuck(request, now)
            if self.requests or now - last_beat >= self.settings.heartbeat_interval:
                self._check_exits()
            if now - last_beat >= self.settings.heartbeat_interval:
                last_beat = now
                beat = pack("hb", {})
                for info in self.ranks:
                    if info.state in ("idle", "busy", "stuck"):
                        self._send_to(info.rank, beat)
            if not self.ready.done() and now - self._started_at > self.settings.start_timeout:
                await self.launcher.stop()
                self._launch_failed(f"the ranks did not start within "
                                    f"{self.settings.start_timeout:g} s:\n"
                                    f"{log_tail(self.job_dir)}")

    async def _restart(self) -> None:
        await self._stop_ranks()
        for request in list(self.requests.values()):
            for rank in request.targets:
                request.replies.setdefault(rank, {
                    "status": "error", "ename": "RanksRestarted",
                    "evalue": "the ranks were restarted while this ran"})
            self._maybe_finish(request)
        await self._launch()
        await asyncio.wrap_future(self.ready)

    async def _stop_ranks(self) -> None:
        if self._launch_task is not None:
            self._launch_task.cancel()
            self._launch_task = None
        proc = self.launcher.proc
        if proc is not None and all(i.state == "idle" for i in self.ranks):
            # Idle ranks can leave on their own (MPI_Finalize); busy ones are terminated.
            frames = pack("shutdown", {})
            for info in self.ranks:
                self._send_to(info.rank, frames)
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except asyncio.TimeoutError:
                log.warning("ranks did not exit after shutdown; terminating them")
        await self.launcher.stop()

    async def _shutdown(self) -> None:
        await self._stop_ranks()
        for task in list(self._tasks):
            task.cancel()
        self.auth.stop()
        self.ctx.destroy(linger=0)
        shutil.rmtree(self._ipc_dir, ignore_errors=True)


def describe_unavailable(infos: list[RankInfo]) -> str:
    """``rank 2 is dead (exited with code 3); ranks 0-1,3 are dead (killed by SIGTERM …)``
    and what to do about it."""
    groups: dict[tuple[str, str], list[int]] = {}
    for info in infos:
        groups.setdefault((info.state, info.reason), []).append(info.rank)
    parts = [f"rank{'s' if len(ranks) > 1 else ''} {format_ranks(ranks)} "
             f"{'are' if len(ranks) > 1 else 'is'} {state}" + (f" ({reason})" if reason else "")
             for (state, reason), ranks in groups.items()]
    hint = ("wait for them to start" if {s for s, _ in groups} == {"starting"}
            else "run %restart_ranks to start fresh ranks")
    return "; ".join(parts) + f": {hint}"
