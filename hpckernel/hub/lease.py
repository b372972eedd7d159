"""The hub's lease: a hub that no client has been connected to for a while ends itself.

A hub in a batch job holds a scarce allocation. If the Jupyter server that started it dies
(SIGKILL, a lost laptop), nothing would ever shut it down; so the hub watches the TCP
connections to its control and shell sockets (the KernelManager keeps one to the control
socket for the kernel's whole life) and, once none has existed for ``timeout`` seconds,
calls ``expire`` — which stops the ranks and ends the hub, and so the job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


class ClientLease:
    """Counts client connections on some sockets; calls ``expire`` after ``timeout`` s
    without any. Create it before the sockets are used by other threads."""

    def __init__(self, sockets: list[zmq.Socket[bytes]], timeout: float,
                 expire: Callable[[], None]) -> None:
        self.timeout = timeout
        self.expire = expire
        self.connected = 0
        self.alone_since: float | None = time.monotonic()
        self._monitors = [s.get_monitor_socket(EVENTS) for s in sockets]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpckernel-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the watch; must run before the kernel's ZMQ context is terminated, which
        would otherwise wait forever for the monitor sockets."""
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self._watch()
        finally:
            for monitor in self._monitors:
                monitor.close(linger=0)

    def _watch(self) -> None:
        poller = zmq.Poller()
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        while not self._stopping.is_set():
            for monitor, _ in poller.poll(1000):
                event = parse_monitor_message(monitor.recv_multipart())["event"]
                self.connected += 1 if event == zmq.EVENT_ACCEPTED else -1
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
