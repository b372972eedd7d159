"""The hub's lease: a hub that no client has been connected to for a while ends itself.

A hub in a batch job holds a scarce allocation. If the Jupyter server that started it dies
(SIGKILL, a lost laptop), nothing would ever shut it down; so the hub watches the
connections to its control and stdin sockets (the KernelManager keeps one to the control
socket for the kernel's whole life; every client connects both) and, once none has existed
for ``timeout`` seconds, calls ``expire`` — which stops the ranks and ends the hub, and so
the job.

Only connections that completed the ZMTP handshake (with CurveZMQ: proved the client's
key) count: a port scanner, or a stranger reconnecting every few seconds, must not keep an
abandoned allocation alive. libzmq reports a failed handshake (no detail, protocol, auth)
right before that connection's ``DISCONNECTED``; every other ``DISCONNECTED`` ends a
connection that had succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
          | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | FAILED | zmq.EVENT_DISCONNECTED


def watch(sock: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
    """A monitor of ``sock`` for the lease; made before ``sock`` binds, so that no client
    can connect unseen."""
    return sock.get_monitor_socket(EVENTS)


class ClientLease:
    """Counts authenticated client connections on the sockets the ``monitors`` watch;
    calls ``expire`` after ``timeout`` s without any."""

    def __init__(self, monitors: list[zmq.Socket[bytes]], timeout: float,
                 expire: Callable[[], None]) -> None:
        self.timeout = timeout
        self.expire = expire
        self.connected = 0
        # per socket: failed handshakes whose DISCONNECTED is still to come
        self._failed = [0] * len(monitors)
        self.alone_since: float | None = time.monotonic()
        self._monitors = monitors
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hpckernel-lease",
                                        daemon=True)

    def start(self) -> None:
        """Start watching the clients' connections (a thread of its own)."""
        self._thread.start()

    def stop(self) -> None:
        """End the watch. The monitors stay open: their owner first stops the sockets'
        events (libzmq sends them blocking), then closes them."""
        self._stopping.set()
        self._thread.join(timeout=5)

    def _count(self, index: int, event: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.connected += 1
        elif event & FAILED:
            self._failed[index] += 1
        elif self._failed[index]:  # the end of a connection that never authenticated
            self._failed[index] -= 1
        else:
            self.connected -= 1

    def _watch(self) -> None:
        poller = zmq.Poller()
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        while not self._stopping.is_set():
            for monitor, _ in poller.poll(1000):
                self._count(self._monitors.index(monitor),
                            parse_monitor_message(monitor.recv_multipart())["event"])
                if self.connected > 0:
                    self.alone_since = None
                elif self.alone_since is None:
                    self.alone_since = time.monotonic()
                    log.warning("no client connected; ending in %.0f s unless one connects",
                                self.timeout)
            if self.alone_since is not None and (
                    time.monotonic() - self.alone_since > self.timeout):
                log.error("no client for %.0f s: releasing the allocation", self.timeout)
                self.expire()
                return
