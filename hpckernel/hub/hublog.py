"""Where the hub's own log goes: the kernel's real stderr, never a notebook cell; bounded.

ipykernel captures file descriptor 2 into the running cell (``OutStream(watchfd=True)``
puts a pipe in its place), so a record written to ``sys.__stderr__`` after that — a
warning, a traceback from the plane thread's event loop — showed up in whatever cell ran
(269 warnings in one cell on a full disk). The hub keeps a descriptor of its own on the real
stderr from before the capture, the kernel's log (the Jupyter server's log, the batch job's
output file), and sends there its package's records, the records of the event loops and
executors it runs (``asyncio``, ``tornado``, ``concurrent.futures``) and the uncaught
exceptions of its own threads (named ``hpckernel-*``); handlers others put on descriptor 2
are pointed there too. What a user's ``%%local`` code logs or prints still goes to the
cell, as in any IPython kernel.

Bounded: every record is cut to a few lines (``badmessages.CapRecords``), and a burst of
records beyond ``RateLimit``'s bucket is dropped and counted in the next record that passes.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

#: Loggers whose records are the hub's own (the package, and what runs its loops and
#: threads: ipykernel's message handlers log their errors through tornado's)
HUB_LOGGERS = ("hpckernel", "asyncio", "concurrent.futures", "tornado")


class RateLimit(logging.Filter):
    """At most ``burst`` records at once and ``per_s`` a second on average; the records
    dropped are counted in the next one that passes."""

    def __init__(self, burst: float = 200, per_s: float = 2.0) -> None:
        super().__init__()
        self.burst, self.per_s = burst, per_s
        self._tokens = burst
        self._last = time.monotonic()
        self._dropped = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` fits the rate (a token per record); the first record let
        through after some were dropped says how many."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_s)
            self._last = now
            if self._tokens < 1:
                self._dropped += 1
                return False
            self._tokens -= 1
            dropped, self._dropped = self._dropped, 0
        if dropped:
            record.msg, record.args = (f"[{dropped} log records dropped: over "
                                       f"{self.per_s:g} a second] {record.getMessage()}"), None
        return True


def own_stderr() -> io.TextIOWrapper:
    """A stream on a copy of file descriptor 2 as it is now: call it before ipykernel puts
    its pipe there. Not inherited by child processes."""
    fd = os.dup(2)
    os.set_inheritable(fd, False)
    return io.TextIOWrapper(io.FileIO(fd, "w"), encoding="utf-8", errors="backslashreplace",
                            line_buffering=True)


def send_hub_log_to(stream: TextIO) -> logging.Handler:
    """Send the hub's records to ``stream`` (from :func:`own_stderr`), rate-limited, and the
    uncaught exceptions of its threads to its log. Called by ``HubApp.initialize``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s | %(message)s"))
    handler.addFilter(RateLimit())
    for name in HUB_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    threading.excepthook = _thread_exceptions(threading.excepthook)
    return handler


def reroute_fd2_handlers(stream: TextIO, *loggers: logging.Logger) -> None:
    """The handlers of ``loggers`` that write to descriptor 2 (set up by others, e.g. on
    ``tornado``, before ipykernel captured it) write to ``stream`` instead, or go where
    the logger has one of ours already. Called by ``HubApp.initialize`` once ipykernel
    is set up."""
    for logger in loggers:
        ours = any(getattr(h, "stream", None) is stream for h in logger.handlers)
        for handler in list(logger.handlers):
            if not isinstance(handler, logging.StreamHandler) or handler.stream is stream:
                continue
            try:
                fd = handler.stream.fileno()
            except (AttributeError, OSError, ValueError):
                continue
            if fd != 2:
                continue
            if ours:
                logger.removeHandler(handler)
            else:
                handler.setStream(stream)


def _thread_exceptions(default: Callable[[threading.ExceptHookArgs], object]
                       ) -> Callable[[threading.ExceptHookArgs], None]:
    log = logging.getLogger("hpckernel.hub")

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else ""
        if not name.startswith("hpckernel") or args.exc_type is SystemExit:
            default(args)  # a thread of the user's %%local code: its cell shows it
            return
        log.error("uncaught exception in thread %s", name, exc_info=args.exc_value)

    return hook

