"""What a rank knows of the requests it was given: which it queues, which it runs, which it
was told to stop, and what it answered to the last ones.

The I/O thread records each request as it arrives and each interrupt; the main thread asks
before it runs a request whether it was stopped meanwhile (an interrupt can come before the
request reaches the main thread: it must not be lost) and records the reply it sent. A
request that arrives twice (a node agent started again gets the open requests again,
``hub/fanin/agents.py``) runs once; a second copy of one already answered is answered again
from what was kept of the reply (its header: a value is not kept, and its loss is said).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import OrderedDict
from typing import TypeVar

from ..plane import kinds
from ..plane.headers import PlaneHeader

#: Stopped ids and answered replies kept (a few cells' worth: requests come one at a time).
KEEP = 256
_V = TypeVar("_V")


class RequestLedger:
    """The rank's requests (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[str] = set()  # queued for the main thread
        self._running: str | None = None
        self.running_since: float | None = None  # monotonic time the running one began
        self._stopped: OrderedDict[str, None] = OrderedDict()
        self._answered: OrderedDict[str, PlaneHeader] = OrderedDict()
        self._main = threading.main_thread().ident

    @property
    def running(self) -> str | None:
        """The id of the request the main thread runs (None: none; the I/O thread asks)."""
        return self._running

    # -- the I/O thread ----------------------------------------------------------------

    def arrived(self, request_id: str) -> PlaneHeader | bool:
        """A request arrived: True if it is new (queue it), False if it is queued or runs
        already (drop it), or the header of the reply it already got (send that again)."""
        with self._lock:
            if request_id in self._waiting or request_id == self._running:
                return False
            answered = self._answered.get(request_id)
            if answered is not None:
                return answered
            self._waiting.add(request_id)
            return True

    def signal_main(self, ids: list[str], anything: bool) -> None:
        """Stop the requests ``ids`` (queued ones never start: :meth:`start` says so), and
        SIGINT the main thread if it runs one of them, or anything with ``anything``. Under
        the lock, so that the main thread cannot finish the request in between (the signal
        would land in the next one)."""
        with self._lock:
            for request_id in ids:
                if request_id in self._waiting:
                    _keep(self._stopped, request_id, None)
            if self._running is not None and (anything or self._running in ids) \
                    and self._main is not None:
                # pthread_kill (not interrupt_main) so that time.sleep and other blocking
                # system calls return EINTR at once.
                signal.pthread_kill(self._main, signal.SIGINT)

    # -- the main thread ---------------------------------------------------------------

    def start(self, request_id: str | None) -> bool:
        """The main thread takes ``request_id``: False if it was stopped before it started
        (answer it as interrupted, without running it)."""
        with self._lock:
            if request_id is not None:
                self._waiting.discard(request_id)
                if request_id in self._stopped:
                    del self._stopped[request_id]
                    return False
            self._running = request_id
            self.running_since = time.monotonic() if request_id is not None else None
            return True

    def finish(self, request_id: str | None, kind: str, header: PlaneHeader) -> None:
        """The main thread answered ``request_id`` with ``header`` (its reply's)."""
        with self._lock:
            self._running = None
            self.running_since = None
            if request_id is None:
                return
            if kind in (kinds.APPLY, kinds.PULL) and header.get("status") == "ok":
                # The value is not kept: a second copy of the request is told it was lost.
                header = {**header, "status": "error", "ename": "ValueLost", "evalue": (
                    "the value was lost on its way to the hub (the node's agent was started "
                    "again): run it again"), "traceback": []}
            _keep(self._answered, request_id, header)


def _keep(table: OrderedDict[str, _V], key: str, value: _V) -> None:
    table[key] = value
    while len(table) > KEEP:
        table.popitem(last=False)
