"""The rank's I/O thread: keeper of the ZMQ socket to the hub (or to the node's agent).

Any thread may send with :meth:`HubChannel.send`. When nothing is queued it sends at once,
under the socket's lock (the cell's reply: no wake-up of this thread, ≈10 % of a rank's CPU
per no-op cell); otherwise its frames queue behind the others (a queue plus a wake-up pipe)
and this thread sends them in order. The socket is touched only under the lock, and this
thread waits on its file descriptor (``select.poll``), never inside ZMQ, so it never waits
on the socket: what cannot go now (the agent is being started again, ZMQ's queue is full)
waits in ``_pending`` while the thread goes on receiving, so an interrupt always gets
through. Requests that must be answered while the main thread is busy — heartbeats,
interrupts, completion, ``peek`` and ``where`` — are served here (``control``); requests go
to the main thread's inbox once (``ledger.py``: a copy sent again is not run twice).

Output goes under a window of credits (``plane/credit.py``): :meth:`HubChannel.send_output`
waits while the hub (or the node's agent) has not taken in the rank's earlier output, and
this thread, which receives the credits, never waits on them.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future

import zmq

from ..debug.target import mark_untraced
from ..plane import Message, PlaneInfo, kinds, pack, unpack
from ..plane.addresses import node_name
from ..plane.credit import WaitingWindow, stamp_of
from ..plane.droplog import DropLog
from ..plane.headers import PlaneHeader
from ..plane.identity import current_launch, rank_identity
from ..plane.shm import prefix_for
from ..plane.wire import OutFrame, to_shm
from . import interrupts
from .ledger import RequestLedger
from .limit import ReplyTooLarge, over_limit

log = logging.getLogger(__name__)
_drops = DropLog(log)

#: What a control handler answers: (msg_type, header, value), or the packed frames when it
#: serialises the answer itself, or None when the answer goes later (``dap``).
ControlAnswer = tuple[str, Mapping[str, object], object] | list[OutFrame] | None
#: Requests the I/O thread answers itself.
ControlHandler = Callable[[Message], ControlAnswer]
#: A message waiting for the socket, and the future of its tracker (``send(track=True)``).
_Queued = tuple[list[OutFrame], Future[zmq.MessageTracker] | None]
#: Messages waiting for the socket at most (beyond, published values are dropped: the
#: rest is bounded by the output window and by the requests themselves).
MAX_PENDING = 4096
#: ZMQ flags and events as plain ints: pyzmq's enum arithmetic costs microseconds a call.
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
#: Messages received per turn of the I/O thread before it sends what is queued.
RECV_BATCH = 64


class HubChannel:
    """Connects to the hub and moves messages between it and the rank's threads."""

    #: A failure of the I/O thread ends the rank (a kernel's rank would hang silently); a
    #: live job's program runs on, unwatched (``live/rank.py``).
    fatal = True

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
        self.ledger = RequestLedger()
        self.register: PlaneHeader | None = None  # sent again after a reconnect
        self._outbox: queue.SimpleQueue[_Queued] = queue.SimpleQueue()
        self._pending: deque[_Queued] = deque()
        #: held while the socket is used, never while another lock is taken (a leaf)
        self._sock_lock = threading.Lock()
        self._pid = os.getpid()  # a child forked by a cell must not touch the socket
        self.window = WaitingWindow(info.window)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpckernel-io", daemon=True)
        mark_untraced(self._thread)  # the debugger (worker/debugger.py) never stops it
        self._connects = 0
        self._handlers: dict[str, Callable[[Message], None]] = {
            kinds.CREDIT: self._credit, kinds.INTERRUPT: self._interrupt}
        for kind in kinds.REQUESTS:
            self._handlers[kind] = self._request
        self.ctx = zmq.Context()
        self.sock = self._connect()

    def _connect(self) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, rank_identity(current_launch(), self.rank))
        sock.setsockopt(zmq.LINGER, 2000)
        # No queue limit in ZMQ (the output window bounds it); sends never block.
        sock.setsockopt(zmq.SNDHWM, 0)
        # Made before connecting, so that no (re)connection goes unseen.
        self.monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
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
        """Start the I/O thread (the rank's ``main()``, once its control handlers are set)."""
        self._thread.start()

    @property
    def thread_ident(self) -> int | None:
        """The I/O thread's (which must never wait for credits: it receives them)."""
        return self._thread.ident

    @property
    def busy_since(self) -> float | None:
        """Monotonic time the request the main thread runs began (None: it runs none)."""
        return self.ledger.running_since

    def send(self, frames: list[OutFrame], track: bool = False
             ) -> Future[zmq.MessageTracker] | None:
        """Queue frames for the hub. With ``track``, the future gives the ZMQ tracker that
        says when the buffers (user arrays sent without copying) may change again."""
        if self.shm_prefix is not None and frames and frames[0] == b"reply":
            frames = to_shm(frames, self.shm_prefix)  # copies the large buffers
            track = track and len(frames) > 3  # only buffers still sent without copying
        done: Future[zmq.MessageTracker] | None = Future() if track else None
        self._queue(frames, done)
        return done

    def _queue(self, frames: list[OutFrame], done: Future[zmq.MessageTracker] | None = None
               ) -> None:
        io_thread = threading.get_ident() == self._thread.ident
        if not io_thread and frames and os.getpid() == self._pid and self._send_now(
                frames, done):
            return
        self._outbox.put((frames, done))
        if not io_thread:  # the I/O thread sends its own before it waits again
            self._wake()

    def _send_now(self, frames: list[OutFrame], done: Future[zmq.MessageTracker] | None) -> bool:
        """Send ``frames`` from this (not the I/O) thread if nothing is queued before them;
        False if they must queue. An interrupt cannot cut the message in two (held)."""
        with interrupts.held(), self._sock_lock:
            if self._pending or not self._outbox.empty():
                return False
            try:
                tracker = self.sock.send_multipart(frames, _NOBLOCK, copy=False,
                                                   track=done is not None)
            except zmq.Again:
                return False
            # The send may have taken the descriptor's signal of a message that arrived
            # meanwhile: the I/O thread, which waits on it, must look.
            arrived = int(self.sock.get(_EVENTS)) & _POLLIN
        if done is not None:
            assert tracker is not None
            done.set_result(tracker)
        if arrived:
            self._wake()
        return True

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def send_output(self, kind: str, header: Mapping[str, object], size: int,
                    value: object = None, wait: bool = True) -> bool:
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

    def stop(self) -> None:
        """End the I/O thread once it has sent what is queued (the rank's last act)."""
        self._stopping.set()
        self.send([])
        self._thread.join(timeout=5)

    # -- the I/O thread -----------------------------------------------------------------

    def _run(self) -> None:
        # The socket's descriptor signals that its events may have changed (edge-triggered):
        # after every wake-up the socket is drained until ZMQ_EVENTS shows nothing to read.
        poller = select.poll()
        monitor_fd = self.monitor.FD
        for fd in (self.sock.FD, self._wake_r, monitor_fd):
            poller.register(fd, select.POLLIN)
        last_heard = time.monotonic()
        look = True  # at the socket, without waiting: it may hold messages already
        self._connected()
        try:
            while not self._stopping.is_set():
                # While a cell runs, wake up to forward buffered output; idle ranks sleep.
                busy = self.ledger.running is not None
                if not look:
                    for fd, _ in poller.poll(100 if busy or self._pending else 1000):
                        if fd == self._wake_r:
                            os.read(self._wake_r, 4096)
                        elif fd == monitor_fd:
                            self._connected()
                    busy = self.ledger.running is not None
                with self._sock_lock:
                    messages = self._receive()
                if messages:
                    last_heard = time.monotonic()
                    for msg in messages:
                        self._dispatch(msg)
                if busy:
                    self._flush_streams()
                look = self._send_all() or len(messages) >= RECV_BATCH
                if time.monotonic() - last_heard > self.hub_timeout:
                    log.error("rank %d: no word from the hub for %.0f s; exiting",
                              self.rank, self.hub_timeout)
                    os._exit(3)
            self._send_all()
        except Exception:  # pragma: no cover - a crash here would hang the rank silently
            log.exception("rank %d: I/O thread failed", self.rank)
            if self.fatal:
                os._exit(4)

    def _receive(self) -> list[Message]:
        """Up to RECV_BATCH messages waiting on the socket (under its lock)."""
        sock = self.sock
        messages: list[Message] = []
        while len(messages) < RECV_BATCH and int(sock.get(_EVENTS)) & _POLLIN:
            frames = sock.recv_multipart(_NOBLOCK, copy=False)
            try:
                messages.append(unpack(frames))
            except ValueError as e:
                _drops.dropped("the hub", str(e))
        return messages

    def _send_all(self) -> bool:
        """Move what was queued to the socket, as far as it takes it now (never waiting);
        True if messages arrived meanwhile (a send can take the descriptor's signal). Under
        the socket's lock from the queue on, so that a direct send cannot come between."""
        pending = self._pending
        sent: list[tuple[Future[zmq.MessageTracker], zmq.MessageTracker]] = []
        with self._sock_lock:
            while not self._outbox.empty():
                item = self._outbox.get_nowait()
                if not item[0]:
                    continue
                if len(pending) >= MAX_PENDING and item[0][0] == kinds.LIVE.encode():
                    _drops.dropped(f"rank {self.rank}", "published values while the hub is "
                                   "out of reach")
                    continue
                pending.append(item)
            while pending:
                frames, done = pending[0]
                try:
                    tracker = self.sock.send_multipart(frames, _NOBLOCK, copy=False,
                                                       track=done is not None)
                except zmq.Again:
                    break  # the agent is away, or ZMQ's queue is full: its events say when
                pending.popleft()
                if done is not None:
                    assert tracker is not None  # track=True always gives one
                    sent.append((done, tracker))
            arrived = bool(int(self.sock.get(_EVENTS)) & _POLLIN)
        for done, tracker in sent:
            done.set_result(tracker)
        return arrived

    def _connected(self) -> None:
        """A (re)connection: after the first, the peer is a new node agent (started again
        on this node): register with it, and ask for credit afresh."""
        while True:
            try:
                self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._connects += 1
            if self._connects > 1 and self.register is not None:
                self._queue(pack(kinds.REGISTER, {**self.register, "rejoin": True}))
                with self.window.cond:
                    self.window.asked = False
                    self.window.cond.notify_all()

    def _dispatch(self, msg: Message) -> None:
        handler = self._handlers.get(msg.msg_type)
        if handler is not None:
            problem = kinds.check(msg.msg_type, msg.header)
            if problem is not None:
                _drops.dropped("the hub", problem)
                return
            handler(msg)
        elif msg.msg_type in self.control:
            self._answer(msg)
        elif msg.msg_type == kinds.SHUTDOWN:
            self.inbox.put(msg)
        else:
            _drops.dropped("the hub", f"unexpected {msg.msg_type[:40]}")

    def _credit(self, msg: Message) -> None:
        self.window.credit(stamp_of(msg.header))

    def _interrupt(self, msg: Message) -> None:
        ids = msg.header.get("ids") or []
        self.ledger.signal_main([i for i in ids if isinstance(i, str)],
                                bool(msg.header.get("any")))

    def _request(self, msg: Message) -> None:
        """A request for the main thread: queued once; a copy of one answered already is
        answered again (the node's agent was started again and lost the reply)."""
        request_id = str(msg.header["id"])  # kinds.check made sure it is a str
        seen = self.ledger.arrived(request_id)
        if seen is True:
            self.inbox.put(msg)
        elif seen is not False:
            self._queue(pack(kinds.REPLY, {**seen, "id": request_id, "rank": self.rank}))

    def _answer(self, msg: Message) -> None:
        """A control request (``hb``, ``complete``, ``peek`` …), answered here."""
        try:
            answer = self.control[msg.msg_type](msg)
            if isinstance(answer, tuple):
                # In band: the main thread may change these values right after.
                msg_type, header, value = answer
                answer = pack(msg_type, header, value, inband=True)
            too_large = answer is not None and over_limit(answer, msg.header)
            if too_large:
                raise ReplyTooLarge(too_large)
        except Exception as e:  # a control request must never take the I/O thread down
            log.debug("rank %d: %s failed", self.rank, msg.msg_type, exc_info=True)
            answer = pack(kinds.REPLY, {"id": msg.header.get("id"), "rank": self.rank,
                                        "status": "error", "ename": type(e).__name__,
                                        "evalue": str(e)})
        if answer is not None:
            self._queue(answer)
