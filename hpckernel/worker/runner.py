"""Main thread of a rank: connects to the hub, then runs requests one after another."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..deathsig import die_with_parent
from ..live.files import LIVE_ENV
from ..plane import Message, kinds, pack, read_plane_info
from ..plane.addresses import node_name
from ..plane.credit import display_size
from ..plane.headers import PlaneHeader
from ..plane.nodes import agent_plane_file, rank_node, wait_for_plane_info
from . import interrupts, mpi_files, publish
from .channel import HubChannel
from .debugger import RankDebugger
from .heartbeat import Heartbeat
from .introspect import peek, where
from .limit import ReplyTooLarge, over_limit

if TYPE_CHECKING:  # main() imports IPython once the rank has registered with the hub

    from .capture import OutStream
    from .shell import RankShell

#: A request's handler on the main thread: its reply's status fields, and its value.
RequestHandler = Callable[[Message], tuple[PlaneHeader, object]]

log = logging.getLogger("hpckernel.worker")


def _mpi_identity() -> tuple[int, int, str, str | None]:
    """(rank, size, MPI library version, error): import mpi4py, falling back to the
    launcher's environment so that a rank without a working MPI can still report."""
    try:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        return comm.rank, comm.size, MPI.Get_library_version().strip(), None
    except Exception as e:  # ImportError, or mpi4py's RuntimeError without an MPI library
        # What the starter tells (Open MPI's mpirun, MPICH's mpiexec, srun with PMIx, srun)
        rank = int(_first_set("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")
                   or 0)
        size = int(_first_set("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS") or 1)
        return rank, size, "", f"{type(e).__name__}: {e}"


def _first_set(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


class RankRunner:
    """Executes the hub's requests in the rank's namespace, one at a time."""

    def __init__(self, channel: HubChannel, shell: RankShell, rank: int) -> None:
        self.channel = channel
        self.shell = shell
        self.rank = rank
        self.request_id: str | None = None
        self.streams: tuple[OutStream, OutStream] | None = None  # set by main()
        self.debugger: RankDebugger | None = None  # set by main()
        self.pid = os.getpid()
        #: called on the main thread after each request (a kernel rank run live: its
        #: safepoints, ``live/kernel_ranks.py``)
        self.after: Callable[[Message], None] | None = None
        self.handlers: dict[str, RequestHandler] = {
            kinds.EXECUTE: self.execute,
            kinds.APPLY: self.apply,
            kinds.PUSH: self.push,
            kinds.PULL: self.pull,
        }

    # -- output, tagged with the request that produced it ----------------------------

    def send_stream(self, name: str, text: str, wait: bool = True) -> bool:
        """Send text the request printed (the ``OutStream``'s ``send``); False if the window
        is full and not ``wait``."""
        header = {"id": self.request_id, "rank": self.rank, "name": name, "text": text}
        return self.channel.send_output("stream", header, len(text), wait=wait)

    def send_display(self, msg_type: str, content: Mapping[str, object]) -> None:
        """Send a display message (the shell's display hook and publisher call it)."""
        # Text printed before a display() call must reach the notebook before it.
        sys.stdout.flush()
        sys.stderr.flush()
        header = {"id": self.request_id, "rank": self.rank, "msg_type": msg_type}
        self.channel.send_output("display", header, display_size(content), content)

    # -- request handlers: each returns (status header fields, value) ------------------

    def execute(self, msg: Message) -> tuple[PlaneHeader, object]:
        """Run ``code`` as a cell; its error (if any) goes in the reply's fields."""
        self.shell.last_error = None
        count = msg.header.get("execution_count")
        if count is not None:
            # Tracebacks then name the notebook's cell (In[7]), the same on every rank.
            self.shell.execution_count = count
        code = (msg.header["code"] if self.debugger is None
                else self.debugger.before_cell(msg.header))
        threads = set(threading.enumerate()) if msg.header.get("join_threads") else None
        try:
            result = self.shell.run_cell(code, silent=msg.header.get("silent", False),
                                         store_history=msg.header.get("store_history", True))
        finally:
            if self.debugger is not None:
                self.debugger.after_cell()
        if threads is not None:
            # A front end's hidden request (hub/hidden_requests.py) answers from a thread
            # it starts: its output must come before the reply, so wait for it a while.
            _join_new_threads(threads, float(msg.header["join_threads"]))
        if result.success:
            return {"status": "ok"}, None
        err: PlaneHeader = self.shell.last_error or {
            "ename": "Error", "evalue": str(result.error_in_exec or result.error_before_exec),
            "traceback": []}
        return {"status": "error", **err}, None

    def apply(self, msg: Message) -> tuple[PlaneHeader, object]:
        """Call the pickled ``(f, args, kwargs)``; the reply's value is what it returns."""
        f, args, kwargs = msg.value()
        if isinstance(f, types.FunctionType) and f.__module__ == "__main__":
            # A function typed in the notebook sees the rank's namespace (rank, size, the
            # variables of earlier cells), as if it had been defined on the rank.
            scope = {**f.__globals__, **self.shell.user_ns}
            f = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__,
                                   f.__closure__)
        return {"status": "ok"}, f(*args, **kwargs)

    def push(self, msg: Message) -> tuple[PlaneHeader, object]:
        """Assign the pickled dict's values in the rank's namespace."""
        self.shell.user_ns.update(msg.value())
        return {"status": "ok"}, None

    def pull(self, msg: Message) -> tuple[PlaneHeader, object]:
        """The values of the header's ``names`` in the rank's namespace, as a list."""
        names: list[str] = msg.header["names"]
        missing = [n for n in names if n not in self.shell.user_ns]
        if missing:
            raise NameError(f"name {missing[0]!r} is not defined on rank {self.rank}")
        return {"status": "ok"}, [self.shell.user_ns[n] for n in names]

    # -- the loop -------------------------------------------------------------------------

    def serve(self, inbox: queue.SimpleQueue[Message]) -> None:
        """Run the requests the I/O thread queues, until ``shutdown`` (the rank's main loop,
        from ``main()``)."""
        while True:
            try:
                msg = inbox.get()
                if msg.msg_type == kinds.SHUTDOWN:
                    return
                self.handle(msg)
                if self.after is not None:
                    self.after(msg)
            except KeyboardInterrupt:
                # An interrupt that arrived just as a request finished: nothing to stop.
                continue

    def handle(self, msg: Message) -> None:
        """Run one request of the hub (``execute``, ``apply``, ``push``, ``pull``) on this
        rank's main thread and send its reply: ``status`` and, on failure, the error's
        ``ename``/``evalue``/``traceback``, with the value (if any) as payload.

        Called by ``serve`` for each request the I/O thread queues; the request's output is
        tagged with its id meanwhile, and a ``KeyboardInterrupt`` (the hub's interrupt)
        becomes the reply's error like any other exception. Interrupts are held outside
        the request itself: one landing while the reply is made would lose the reply (the
        hub would wait for it until it called the rank stuck). A request interrupted before
        it started here is answered as interrupted without running."""
        request_id = msg.header.get("id")
        with interrupts.held(discard=True):
            if self.streams is not None:
                # A cell may have replaced sys.stdout/sys.stderr: each request writes to the
                # notebook again.
                sys.stdout, sys.stderr = self.streams  # type: ignore[assignment]
            handler = self.handlers.get(msg.msg_type)
            self.request_id = request_id
            value: object = None
            try:
                with interrupts.allowed():
                    if not self.channel.ledger.start(request_id):
                        raise KeyboardInterrupt("interrupted before it started on this rank")
                    if handler is None:
                        raise ValueError(f"unknown request {msg.msg_type!r}")
                    fields, value = handler(msg)
            except BaseException as e:  # KeyboardInterrupt in apply/pull too
                value = None
                fields = {"status": "error", "ename": type(e).__name__, "evalue": str(e),
                          "traceback": traceback.format_exception(e)}
            if os.getpid() != self.pid:
                # A child forked by the cell came back here: only the rank itself may answer
                # the hub (the child shares its sockets but has no I/O thread). End it.
                os._exit(0)
            self._reply(msg, request_id, fields, value)

    def _reply(self, msg: Message, request_id: str | None, fields: PlaneHeader,
               value: object) -> None:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except KeyboardInterrupt:
            # Interrupted while the request's last output waited for room in the window (a
            # flood): that output is dropped, and the reply goes all the same.
            for stream in self.streams or ():
                stream.discard()
            if fields.get("status") == "ok":
                value = None
                fields = {"status": "error", "ename": "KeyboardInterrupt", "evalue": "",
                          "traceback": []}
        header: PlaneHeader = {"id": request_id, "rank": self.rank,
                                  "request": msg.msg_type, **fields}
        try:
            frames = pack(kinds.REPLY, header, value, has_value=value is not None)
        except Exception as e:
            value = None
            header = {**header, "status": "error", "ename": type(e).__name__,
                      "evalue": f"result could not be serialised: {e}"}
            frames = pack(kinds.REPLY, header)
        too_large = over_limit(frames, msg.header)
        if too_large:
            value = None
            header = {**header, "status": "error", "ename": ReplyTooLarge.__name__,
                      "evalue": too_large, "traceback": []}
            frames = pack(kinds.REPLY, header)
        self.channel.ledger.finish(request_id, msg.msg_type, header)  # type: ignore[arg-type]
        sent = self.channel.send(frames, track=value is not None)
        if sent is not None:
            # The value's buffers are sent without copying: keep them unchanged until sent.
            sent.result().wait()


def _join_new_threads(before: set[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))


def _complete(shell: RankShell, msg: Message) -> tuple[str, PlaneHeader, dict[str, object]]:
    code, pos = msg.header["code"], msg.header["cursor_pos"]
    line_start = code.rfind("\n", 0, pos) + 1
    line = code[line_start:code.find("\n", pos) if "\n" in code[pos:] else len(code)]
    text, matches = shell.complete("", line, pos - line_start)
    content = {"matches": matches, "cursor_start": pos - len(text), "cursor_end": pos,
               "metadata": {}, "status": "ok"}
    return "reply", {"id": msg.header["id"], "status": "ok"}, content


def _inspect(shell: RankShell, msg: Message) -> tuple[str, PlaneHeader, dict[str, object]]:
    from IPython.utils.tokenutil import token_at_cursor

    name = token_at_cursor(msg.header["code"], msg.header["cursor_pos"])
    content: dict[str, object] = {"status": "ok", "data": {}, "metadata": {}, "found": False}
    try:
        bundle = shell.object_inspect_mime(name, detail_level=msg.header.get("detail_level", 0))
        bundle.pop("text/html", None)
        content.update(data=bundle, found=True)
    except KeyError:
        pass
    return "reply", {"id": msg.header["id"], "status": "ok"}, content


def main(argv: list[str] | None = None) -> None:
    """``python -m hpckernel.worker PLANE_FILE``: one rank, started by the launcher."""
    # No cyclic garbage collection during the start: MPI, IPython's imports and the shell
    # make ≈10,000 long-lived objects, and collecting them as they appear is ≈10 ms of each
    # rank's CPU. They are frozen (kept out of later collections) once the shell is ready.
    gc.disable()
    parser = argparse.ArgumentParser(prog="python -m hpckernel.worker")
    parser.add_argument("plane_file", help="the hub's 0600 plane file (in the job directory)")
    parser.add_argument("--hub-timeout", type=float, default=30.0,
                        help="exit when the hub has been silent this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    die_with_parent()  # the rank dies with its launcher process
    # The launcher may start ranks with SIGINT ignored; the hub's interrupts need it.
    signal.signal(signal.SIGINT, interrupts.handler)

    import faulthandler

    faulthandler.enable()  # a segfault's Python stack goes to the launcher log
    job_dir = Path(args.plane_file).parent
    node = rank_node()
    # With node agents the rank talks to its node's agent, which starts beside it.
    info = (read_plane_info(args.plane_file) if node is None
            else wait_for_plane_info(agent_plane_file(job_dir, node), args.hub_timeout))
    rank, size, mpi_version, error = _mpi_identity()
    if error is None:
        mpi_files.release()  # nothing of MPI's is left in /dev/shm, however the rank ends

    inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
    streams: list[OutStream] = []

    def flush_streams() -> None:  # the I/O thread's, while a request runs
        for stream in streams:
            stream.try_flush()

    channel = HubChannel(info, rank, inbox, flush=flush_streams, hub_timeout=args.hub_timeout)
    register: PlaneHeader = {"rank": rank, "size": size, "pid": os.getpid(), "host": node_name(),
                "python": sys.version.split()[0], "mpi": mpi_version, "error": error}
    channel.register = register  # sent again to a node agent started again
    channel.send(pack(kinds.REGISTER, register))
    publish.install(channel.send, rank)
    # Heartbeats are answered by the I/O thread from the start, while the shell is built.
    channel.control[kinds.HB] = Heartbeat(rank)
    # The hub's debugger requests (worker/debugger.py), which may come as soon as the rank
    # registers; nothing is started until one does.
    debugger = RankDebugger(channel, rank)
    channel.control[kinds.DAP] = debugger.control
    channel.start()
    if error is not None:
        channel.stop()
        sys.exit(2)

    # IPython only now: the hub knows the rank while it builds its shell.
    from traitlets.config import Config

    from .capture import OutStream
    from .shell import RankShell

    # No SQLite history on the ranks: every rank (and the hub) would commit each cell to
    # the same history file and queue behind its lock (benchmarks/README.md, M1 at N=16).
    shell = RankShell.instance(config=Config(HistoryManager={"enabled": False}))
    runner = RankRunner(channel, shell, rank)
    streams.extend([OutStream("stdout", runner.send_stream, 1),
                    OutStream("stderr", runner.send_stream, 2)])
    for stream in streams:
        stream.no_wait = channel.thread_ident
    sys.stdout, sys.stderr = streams  # type: ignore[assignment]
    runner.streams = (streams[0], streams[1])
    shell.displayhook.send = runner.send_display  # type: ignore[attr-defined]
    shell.display_pub.send = runner.send_display  # type: ignore[attr-defined]
    shell.user_ns.update({"rank": rank, "size": size})

    channel.control.update({
        kinds.COMPLETE: lambda m: _complete(shell, m),
        kinds.INSPECT: lambda m: _inspect(shell, m),
        kinds.PEEK: lambda m: peek(shell, rank, m),
        kinds.WHERE: lambda m: where(channel, rank, m),
    })
    debugger.shell, runner.debugger = shell, debugger
    live = None
    if os.environ.get(LIVE_ENV):  # a submitted notebook's ranks: attachable as a live job's
        from ..live.kernel_ranks import start as start_live

        live = start_live(size)
        runner.after = live[1]
    gc.freeze()
    gc.enable()
    try:
        runner.serve(inbox)
    finally:
        for s in streams:
            s.flush()
        if live is not None:
            live[0].end(None)
        channel.stop()
