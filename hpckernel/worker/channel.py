"""The rank's I/O thread: sole owner of the ZMQ socket to the hub.

Any thread may queue outgoing frames with :meth:`HubChannel.send` (a queue plus a wake-up
pipe); only this thread touches the socket. Requests that must be answered while the main
thread is busy — heartbeats, interrupts, completion, ``peek`` and ``where`` — are served
here; cells go to the main thread's inbox.

Output goes under a window of credits (``plane/credit.py``): :meth:`HubChannel.send_output`
waits while the hub (or the node's agent) has not taken in the rank's earlier output, and
this thread, which receives the credits, never waits on them.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import zmq

from ..debug.target import mark_untraced
from ..plane import Message, PlaneInfo, pack, unpack
from ..plane.addresses import node_name
from ..plane.credit import WaitingWindow, stamp_of
from ..plane.shm import prefix_for
from ..plane.wire import to_shm
from . import interrupts
from .limit import ReplyTooLarge, over_limit

log = logging.getLogger(__name__)

#: Requests the I/O thread answers itself; a handler returns (msg_type, header, value), or
#: the packed frames when it serialises the answer itself.
ControlHandler = Callable[[Message], "tuple[str, dict[str, Any], Any] | list[Any] | None"]


class HubChannel:
    """Connects to the hub and moves messages between it and the rank's threads."""

    def __init__(self, info: PlaneInfo, rank: int, inbox: queue.SimpleQueue[Message],
                 flush: Callable[[], None], hub_timeout: float = 30.0) -> None:
        self.info = info
        self.rank = rank
        self.inbox = inbox
        self._flush_streams = flush
        self.hub_timeout = hub_timeout
        # A hub on this node (the IPC case) takes large reply buffers in shared memory.
        self.shm_prefix = prefix_for(info) if info.node == node_name() else None
        self.control: dict[str, ControlHandler] = {}
        self._outbox: queue.SimpleQueue[tuple[list[Any], Future[zmq.MessageTracker] | None]] = (
            queue.SimpleQueue())
        self.window = WaitingWindow(info.window)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._busy_lock = threading.Lock()
        self._busy_id: str | None = None
        self.busy_since: float | None = None  # monotonic time the current request began
        self._main_ident = threading.main_thread().ident
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpckernel-io", daemon=True)
        mark_untraced(self._thread)  # the debugger (worker/debugger.py) never stops it
        self.ctx = zmq.Context()
        self.sock = self._connect()

    def _connect(self) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, str(self.rank).encode())
        sock.setsockopt(zmq.LINGER, 2000)
        if self.info.node == node_name():
            sock.connect(self.info.ipc_url)
        else:
            sock.curve_serverkey = self.info.server_public.encode()
            sock.curve_publickey = self.info.client_public.encode()
            sock.curve_secretkey = self.info.client_secret.encode()
            sock.connect(self.info.tcp_url)
        return sock

    # -- used by any thread -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def thread_ident(self) -> int | None:
        """The I/O thread's (which must never wait for credits: it receives them)."""
        return self._thread.ident

    def send(self, frames: list[Any], track: bool = False) -> Future[zmq.MessageTracker] | None:
        """Queue frames for the hub. With ``track``, the future gives the ZMQ tracker that
        says when the buffers (user arrays sent without copying) may change again."""
        if self.shm_prefix is not None and frames and frames[0] == b"reply":
            frames = to_shm(frames, self.shm_prefix)  # copies the large buffers
            track = track and len(frames) > 3  # only buffers still sent without copying
        done: Future[zmq.MessageTracker] | None = Future() if track else None
        self._queue(frames, done)
        return done

    def _queue(self, frames: list[Any], done: Future[zmq.MessageTracker] | None = None
               ) -> None:
        self._outbox.put((frames, done))
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def send_output(self, kind: str, header: dict[str, Any], size: int, value: Any = None,
                    wait: bool = True) -> bool:
        """Queue one output message (``stream``, ``display``) counting ``size`` bytes against
        the window; while the window is full, wait for credit (interruptible: the hub's
        interrupt raises ``KeyboardInterrupt`` here), or return False without ``wait``."""
        window = self.window
        with interrupts.held(), window.cond:
            while not window.fits(size):
                if not wait:
                    return False
                more = window.ask()
                if more is not None:
                    self._queue(more)
                with interrupts.allowed():
                    if not window.cond.wait(1.0):
                        window.asked = False  # no answer within a second: ask again
            # Stamped and queued under the lock: the stamps reach the hub in their order.
            stamp = window.take(size)
            self._queue(pack(kind, {**header, "sent": stamp}, value,
                             has_value=value is not None))
        return True

    def set_busy(self, request_id: str | None) -> None:
        """Called by the main thread around each request; guards interrupts."""
        with self._busy_lock:
            self._busy_id = request_id
            self.busy_since = None if request_id is None else time.monotonic()

    def stop(self) -> None:
        self._stopping.set()
        self.send([])
        self._thread.join(timeout=5)

    # -- the I/O thread -----------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        last_heard = time.monotonic()
        try:
            while not self._stopping.is_set():
                # While a cell runs, wake up to forward buffered output; idle ranks sleep.
                busy = self._busy_id is not None
                events = dict(poller.poll(100 if busy else 1000))
                if self.sock in events:
                    last_heard = time.monotonic()
                    self._receive_all()
                if self._wake_r in events:
                    os.read(self._wake_r, 4096)
                if busy:
                    self._flush_streams()
                self._send_all()
                if time.monotonic() - last_heard > self.hub_timeout:
                    log.error("rank %d: no word from the hub for %.0f s; exiting",
                              self.rank, self.hub_timeout)
                    os._exit(3)
            self._send_all()
        except Exception:  # pragma: no cover - a crash here would hang the rank silently
            log.exception("rank %d: I/O thread failed", self.rank)
            os._exit(4)

    def _send_all(self) -> None:
        while True:
            try:
                frames, done = self._outbox.get_nowait()
            except queue.Empty:
                return
            if not frames:
                continue
            if done is None:
                self.sock.send_multipart(frames, copy=False)
            else:
                tracker = self.sock.send_multipart(frames, copy=False, track=True)
                assert tracker is not None  # track=True always gives one
                done.set_result(tracker)

    def _receive_all(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                msg = unpack(frames)
            except ValueError as e:
                log.warning("rank %d: dropped malformed message from hub: %s", self.rank, e)
                continue
            self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        if msg.msg_type == "credit":
            self.window.credit(stamp_of(msg.header))
            return
        if msg.msg_type == "interrupt":
            self._interrupt()
            return
        handler = self.control.get(msg.msg_type)
        if handler is None:
            self.inbox.put(msg)
            return
        try:
            answer = handler(msg)
            if isinstance(answer, tuple):
                # In band: the main thread may change these values right after.
                msg_type, header, value = answer
                answer = pack(msg_type, header, value, inband=True)
            too_large = answer is not None and over_limit(answer, msg.header)
            if too_large:
                raise ReplyTooLarge(too_large)
        except Exception as e:  # a control request must never take the I/O thread down
            log.debug("rank %d: %s failed", self.rank, msg.msg_type, exc_info=True)
            answer = pack("reply", {"id": msg.header.get("id"), "rank": self.rank,
                                    "status": "error", "ename": type(e).__name__,
                                    "evalue": str(e)})
        if answer is not None:
            self.sock.send_multipart(answer, copy=False)

    def _interrupt(self) -> None:
        # Only a busy main thread is interrupted: a KeyboardInterrupt while idle would only
        # land in the runner's loop. pthread_kill (not interrupt_main) so that time.sleep
        # and other blocking system calls return EINTR at once.
        with self._busy_lock:
            if self._busy_id is not None and self._main_ident is not None:
                signal.pthread_kill(self._main_ident, signal.SIGINT)
