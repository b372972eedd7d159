"""One rank of a live job (``python -m hpckernel.live``): the program on the main thread,
unchanged; beside it, started in the background so that the program does not wait for
it, the rank's I/O thread (``worker.channel.HubChannel``) talking to its node's agent.

Rank 0 starts the job's endpoint (``endpoint.py``); the first rank of each node starts the
node's agent (``hpckernel.agent``, as in the kernel). The I/O thread answers, while the
program runs: heartbeats, ``peek`` (variables of ``__main__`` and of the functions on the
main thread's stack), ``where`` (the main thread's stack), ``lvals`` (published values
after a sequence number), the safepoint protocol (``larm``, ``lrun``, ``lcancel``,
``safepoints.py``) and the holding of a cell to stop it (``lpark``, ``lunpark``,
``cells.py``). Nothing here can end the program: the live machinery failing leaves a
warning on stderr and the program running.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from collections import ChainMap
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, SimpleNamespace

from ..agent.tree import FANOUT_ENV, NODES_ENV
from ..deathsig import die_with_parent
from ..plane import Message, kinds, pack
from ..plane.addresses import node_name
from ..plane.credentials import PLANE_FILE
from ..plane.nodes import NODE_ENV, agent_plane_file, wait_for_plane_info
from ..plane.private import make_private_dir
from ..plane.wire import OutFrame
from ..targets import rank_intervals
from ..worker import publish
from ..worker.channel import HubChannel
from ..worker.heartbeat import Heartbeat
from ..worker.introspect import peek, user_frames
from ..worker.mpi_files import release_when_shared
from . import safepoints as sp
from .cells import CellRunner
from .history import History

log = logging.getLogger("hpckernel.live")

#: A message's frames, as ``pack`` makes them.
Frames = list[OutFrame]

#: Seconds a rank waits for its node's agent (and the agent for the endpoint) to start.
START_TIMEOUT = 60.0
#: Seconds the first ranks wait at the end for the agent (and endpoint) they started.
END_WAIT = 10.0
#: Never give up on the endpoint: the program must not end because nobody talks to it.
FOREVER = 1e9


def identity(environ: dict[str, str] | None = None) -> tuple[int, int, str, int, int]:
    """(rank, size, node key, rank on the node, nodes) from the launcher's environment, as
    ``launcher/rank.sh`` works them out (``HPCKERNEL_NODES`` pretends K nodes)."""
    env = os.environ if environ is None else environ
    rank = int(env.get("PMI_RANK") or env.get("SLURM_PROCID") or
               env.get("OMPI_COMM_WORLD_RANK") or 0)
    size = int(env.get("PMI_SIZE") or env.get("SLURM_NTASKS") or
               env.get("OMPI_COMM_WORLD_SIZE") or 1)
    pretend = int(env.get("HPCKERNEL_NODES") or 0)
    if pretend > 0:
        node = rank * pretend // size
        first = (node * size + pretend - 1) // pretend
        return rank, size, str(node), rank - first, pretend
    if env.get("SLURM_NODEID"):
        return (rank, size, env["SLURM_NODEID"], int(env.get("SLURM_LOCALID") or 0),
                int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES") or 1))
    local = int(env.get("MPI_LOCALRANKID") or env.get("OMPI_COMM_WORLD_LOCAL_RANK") or 0)
    return rank, size, node_name(), local, 1


#: Code of Python itself, of installed packages, and of hpckernel: not the program's.
_NOT_PROGRAM = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix,
                      str(Path(__file__).parents[1])})


def _programs(filename: str) -> bool:
    """Whether a frame of ``filename`` is the program's own code (its locals are peeked)."""
    return not filename.startswith(_NOT_PROGRAM) and not filename.startswith("<frozen")


def start_here(where: tuple[int, int, str, int, int] | None = None) -> LiveRank:
    """This process's live machinery, started (``where``: its rank, size, node key, rank on
    the node and node count, by default from the launcher's environment): called by
    ``python -m hpckernel.live``, a kernel rank of a submitted notebook and a notebook
    kernel run live (``kernel_ranks.py``, ``notebook.py``)."""
    from .files import job_id, live_dir

    job, step = job_id()
    live = LiveRank(*(where or identity()), live_dir(job, step), job, step)
    live.start()
    return live


class LiveRank:
    """This rank's live machinery; :meth:`start` returns at once."""

    def __init__(self, rank: int, size: int, node: str, local: int, nodes: int,
                 directory: Path, job: str, step: str) -> None:
        self.rank, self.size, self.node, self.local, self.nodes = rank, size, node, local, nodes
        self.directory = directory
        self.job, self.step = job, step
        self.state = sp.Safepoints(self._run_cell)
        self.cells = CellRunner(self.state, rank, self._send_output)
        self.history = History()
        self.started = time.monotonic()
        self.channel: HubChannel | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self._ready = threading.Event()
        self._done = threading.Event()

    # -- start and end ----------------------------------------------------------------------

    def start(self) -> None:
        """Install the safepoints and the publish keeper, and connect in the background
        (``start_here``)."""
        sp.install(self.state)
        publish.install_keeper(self.history.add)
        threading.Thread(target=self._connect, name="hpckernel-live-start",
                         daemon=True).start()

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.children.append(subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.DEVNULL, env=env,
            preexec_fn=die_with_parent))

    def _connect(self) -> None:
        try:
            if self.rank == 0:
                make_private_dir(self.directory)
                self._spawn(["-m", "hpckernel.live.endpoint", str(self.directory), "--job",
                             self.job, "--step", self.step, "--size", str(self.size),
                             "--nodes", str(self.nodes)])
            if self.local == 0:
                wait_for_plane_info(self.directory / PLANE_FILE, START_TIMEOUT)
                # Above 64 nodes the agents form a tree, as a kernel's do (agent/tree.py).
                env = {**os.environ, NODE_ENV: self.node, NODES_ENV: str(self.nodes),
                       FANOUT_ENV: os.environ.get(FANOUT_ENV) or "64"}
                self._spawn(["-m", "hpckernel.agent", str(self.directory), self.node,
                             "--hub-timeout", str(FOREVER)], env)
            info = wait_for_plane_info(agent_plane_file(self.directory, self.node),
                                       START_TIMEOUT)
            channel = HubChannel(info, self.rank, queue.SimpleQueue(), flush=self.cells.flush,
                                 hub_timeout=FOREVER)
            channel.fatal = False
            channel.control.update({
                kinds.HB: Heartbeat(self.rank), kinds.PEEK: self._peek,
                kinds.WHERE: self._where, kinds.LVALS: self._values, kinds.LARM: self._arm,
                kinds.LRUN: self._decide, kinds.LCANCEL: self._cancel,
                kinds.LPARK: self._hold, kinds.LUNPARK: self._release})
            channel.register = {"rank": self.rank, "size": self.size, "pid": os.getpid(),
                                "host": node_name(), "python": sys.version.split()[0],
                                "mpi": "", "error": None}
            channel.send(pack(kinds.REGISTER, channel.register))
            channel.start()
            self.channel = channel
        except Exception as e:  # the program runs on, unwatched
            print(f"hpckernel.live: rank {self.rank} cannot be attached to: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
        finally:
            self._ready.set()
        # Linux's parent-death signal follows the thread that started a child, not the
        # process: this thread lives as long as the program, so the children do too.
        self._release_mpi_files()
        self._done.wait()

    def _release_mpi_files(self) -> None:
        """Once the program's MPI is initialised, the node's first rank unlinks MPI's
        shared-memory files as soon as every rank of the node maps them (``worker/mpi_files.py``):
        a job that is cancelled or crashes leaves nothing in ``/dev/shm``. MPICH makes them
        at a communicator's first use, so it keeps looking: every 0.2 s until some are
        unlinked, then every second (a read of its own ``/proc/self/maps``); backing off to
        10 s while a rank of the node has not mapped them yet."""
        if self.local != 0:
            return
        interval, released = 0.2, False
        while not self._done.wait(interval):
            unlinked, left = self._unlink_mpi_files()
            released = released or unlinked > 0
            if left:
                interval = min(interval * 2, 10.0)
            else:
                interval = 1.0 if released else 0.2

    @staticmethod
    def _mpi_initialized() -> bool:
        mpi = sys.modules.get("mpi4py.MPI")
        initialized = getattr(mpi, "Is_initialized", None)
        return initialized is not None and bool(initialized())

    def _unlink_mpi_files(self) -> tuple[int, int]:
        """On the node's first rank, once MPI is initialised: unlink MPI's files that every
        rank of the node maps (how many, and how many are left for later)."""
        if self.local != 0 or not self._mpi_initialized():
            return 0, 0
        return release_when_shared()

    def end(self, error: BaseException | None) -> None:
        """The program returned (or raised ``error``): say so, then wait a little for the
        processes this rank started (the node's other ranks still use its agent)."""
        # A program that ends between two polls (a step that fails at once, then
        # MPI_Abort) would leave MPI's files: unlinked here too, before the exit.
        self._unlink_mpi_files()
        unrun = self.state.end()
        sp.install(None)
        self._ready.wait(START_TIMEOUT)
        channel = self.channel
        if channel is not None:
            if unrun is not None:
                channel.send(self._reply(unrun.id, {
                    "status": "error", "ename": "ProgramEnded",
                    "evalue": f"the program ended before safepoint {unrun.at}"}))
            status = {"status": "ok"} if error is None or (
                isinstance(error, SystemExit) and error.code in (0, None)) else {
                "status": "error", "ename": type(error).__name__, "evalue": str(error)[:500]}
            channel.send(pack(kinds.LEND, {"rank": self.rank, **status}))
        deadline = time.monotonic() + END_WAIT
        for child in self.children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        self._done.set()
        if channel is not None:
            channel.stop()

    # -- answered by the I/O thread ---------------------------------------------------------

    def _reply(self, request_id: str | None, fields: Mapping[str, object],
               value: object = None) -> Frames:
        return pack(kinds.REPLY, {"id": request_id, "rank": self.rank, **fields}, value,
                    has_value=value is not None, inband=True)

    def _send_output(self, kind: str, header: dict[str, object], size: int, value: object
                     ) -> bool:
        channel = self.channel
        return channel is not None and channel.send_output(kind, header, size, value,
                                                           wait=False)

    def _main_frame(self) -> FrameType | None:
        return sys._current_frames().get(self.state.main or 0)

    def _peek(self, msg: Message) -> Frames:
        main = sys.modules["__main__"].__dict__
        scopes = []
        frame = self._main_frame()
        while frame is not None:  # the locals of the program's functions, innermost first
            if frame.f_locals is not main and (
                    frame.f_globals is main or _programs(frame.f_code.co_filename)):
                scopes.append(frame.f_locals)
            frame = frame.f_back
        return peek(SimpleNamespace(user_ns=ChainMap(*scopes, main)),  # type: ignore[arg-type]
                    self.rank, msg)

    def _where(self, msg: Message) -> tuple[str, dict[str, object], dict[str, object]]:
        frame = self._main_frame()
        # The program's own frames (not Python's, installed packages' or hpckernel's).
        stack = [f for f in user_frames(traceback.extract_stack(frame))
                 if _programs(f["file"])] if frame is not None else []
        since = self.channel.busy_since if self.channel is not None else None
        state = "ended" if self.state.ended else "busy"
        seconds = time.monotonic() - (since or self.started)
        return "reply", {"id": msg.header["id"], "rank": self.rank, "status": "ok"}, {
            "state": state, "seconds": round(seconds, 1), "stack": stack,
            "safepoint": self.state.count, "cell": since is not None}

    def _values(self, msg: Message) -> Frames:
        since = 0
        for ranks, seq in msg.header.get("since") or []:
            if any(lo <= self.rank <= hi for lo, hi in rank_intervals(ranks)):
                since = int(seq)
                break
        return self._reply(msg.header["id"], {"status": "ok"},
                           self.history.since(since, msg.header.get("names")))

    def _arm(self, msg: Message) -> Frames:
        if self.state.ended:
            return self._reply(msg.header["id"], {
                "status": "error", "ename": "ProgramEnded",
                "evalue": "the program has ended: no more safepoints"})
        return self._reply(msg.header["id"], {"status": "ok",
                                              "at": self.state.arm(msg.header["cell"])})

    def _decide(self, msg: Message) -> Frames | None:
        h = msg.header
        assert self.channel is not None  # it handles this message
        if self.channel.ledger.arrived(h["id"] or "") is not True:
            return None  # a copy (its agent was started again): run once
        cell = sp.Decided(h["id"] or "", h["cell"], h["at"], h["code"],
                          f"<live cell {h.get('execution_count') or h['cell'][:8]}>")
        if self.state.decide(cell):
            return None  # the main thread answers once it ran the cell
        return self._reply(h["id"], {"status": "error", "ename": "ProgramEnded",
                                     "evalue": "the program ended before the cell could run"})

    def _cancel(self, msg: Message) -> Frames:
        self.state.cancel(msg.header["cell"])
        return self._reply(msg.header["id"], {"status": "ok"})

    def _hold(self, msg: Message) -> Frames | None:
        request_id = msg.header["id"]

        def answer(held: str) -> None:
            if self.channel is not None:
                self.channel.send(self._reply(request_id, {"status": "ok", "held": held}))

        held = self.cells.hold(msg.header["cell"], answer)
        return None if held is None else self._reply(request_id, {"status": "ok",
                                                                  "held": held})

    def _release(self, msg: Message) -> Frames:
        self.cells.release(msg.header["cell"], msg.header["stop"])
        return self._reply(msg.header["id"], {"status": "ok"})

    # -- the main thread, at a safepoint ------------------------------------------------

    def _run_cell(self, cell: sp.Decided, frame: FrameType | None, stopped: bool) -> None:
        channel = self.channel
        if channel is None:
            return
        ledger = channel.ledger
        if stopped or not ledger.start(cell.id):
            fields: dict[str, object] = {"status": "error", "ename": "KeyboardInterrupt",
                                      "evalue": "stopped from the notebook before it started"}
        else:
            fields = self.cells.run(cell.cell, cell.id, cell.code, cell.name, frame)
        header = {"id": cell.id, "rank": self.rank, "request": kinds.LRUN, **fields}
        ledger.finish(cell.id, kinds.LRUN, header)  # type: ignore[arg-type]
        channel.send(pack(kinds.REPLY, header))
