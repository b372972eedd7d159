"""debugpy's debugger (pydevd) in this process, reached over an unnamed socket pair.

ipykernel runs ``debugpy.listen`` on a loopback TCP port and connects to it; any user of
the machine can connect to such a port first. Here pydevd gets one end of
``socket.socketpair()`` instead: a pair of connected Unix sockets with no name in the file
system and no port, whose descriptors only this process holds (Python makes them
non-inheritable), so no other process — of this user or another — can reach the debugger.
pydevd speaks the debug adapter protocol (DAP) on it itself, as it does for
``debugpy.listen(in_process_debug_adapter=True)``; no adapter process is started.

Only the thread that calls :meth:`PydevdLink.trace_current_thread` (the main thread, where
cells run) is traced: the process's other threads (the rank's I/O thread, the hub's plane)
never stop and cost nothing.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from .dap import DapMessage

#: The DAP header before each message's JSON body.
_HEADER = b"Content-Length: "
_SEPARATOR = b"\r\n\r\n"


class DebuggerUnavailable(RuntimeError):
    """debugpy cannot be imported in this process."""


class Pydevd(Protocol):
    """What :class:`PydevdLink` uses of the ``pydevd`` module (debugpy's copy, untyped)."""

    #: start_client(host, port): pydevd's connection to its client (replaced while starting).
    start_client: Callable[[str, int], socket.socket]

    def settrace(self, host: str | None = ..., port: int = ..., *, suspend: bool,
                 trace_only_current_thread: bool, patch_multiprocessing: bool,
                 wait_for_ready_to_run: bool, notify_stdin: bool,
                 block_until_connected: bool = ...,
                 dont_trace_start_patterns: tuple[str, ...] = ...,
                 dont_trace_end_patterns: tuple[str, ...] = ...) -> None:
        """Start pydevd (the first call) or trace the calling thread (later calls)."""


def _import_pydevd() -> Pydevd:
    # Frozen stdlib modules make pydevd print a warning on every start; the cells it debugs
    # are not frozen. ipykernel's kernelspec sets the same.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        import debugpy  # noqa: F401
        from debugpy.server import api  # noqa: F401  (selects debugpy's pydevd and DAP)
    except ImportError as e:
        raise DebuggerUnavailable(f"debugpy is not installed here ({e}): "
                                  "pip install debugpy") from None
    import pydevd

    return pydevd


class DapStream:
    """DAP messages in and out of a byte stream (``Content-Length`` framing)."""

    def __init__(self) -> None:
        self._buffer = b""

    @staticmethod
    def frame(message: DapMessage) -> bytes:
        """``message`` as the bytes of the stream: its header and its JSON body."""
        body = json.dumps(message).encode()
        return _HEADER + str(len(body)).encode() + _SEPARATOR + body

    def feed(self, data: bytes) -> list[DapMessage]:
        """The whole messages that ``data`` completes (the rest is kept for later); a
        ValueError if the stream is not DAP, or a message is not a JSON object."""
        self._buffer += data
        messages: list[DapMessage] = []
        while True:
            end = self._buffer.find(_SEPARATOR)
            if end < 0:
                return messages
            head = self._buffer[:end]
            if not head.startswith(_HEADER):
                raise ValueError(f"bad DAP header: {head[:80]!r}")
            size = int(head[len(_HEADER):])
            start = end + len(_SEPARATOR)
            if len(self._buffer) < start + size:
                return messages
            message = json.loads(self._buffer[start:start + size])
            if not isinstance(message, dict):
                raise ValueError(f"a DAP message that is not an object: {message!r:.80}")
            messages.append(message)
            self._buffer = self._buffer[start + size:]


class PydevdLink:
    """pydevd in this process; :attr:`sock` is this side's end of its DAP stream.

    Started once (pydevd cannot be unloaded); a debug session that ends leaves it idle,
    with no thread traced, and a new session reuses it."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.pydevd: Pydevd | None = None
        self.stream = DapStream()

    def start(self) -> None:
        """Start pydevd (called once, from a thread that is never traced)."""
        if self.sock is not None:
            return
        pydevd = _import_pydevd()
        import debugpy

        ours, theirs = socket.socketpair()
        # pydevd connects with start_client(host, port) (pydevd.PyDB.connect): it is
        # handed the other end of the pair instead, so it opens no socket of its own.
        connect = pydevd.start_client
        pydevd.start_client = lambda host, port: theirs
        debugpy_dir = os.path.dirname(debugpy.__file__)
        try:
            pydevd.settrace(host="socketpair", port=0, suspend=False,
                            trace_only_current_thread=True, patch_multiprocessing=False,
                            block_until_connected=True, wait_for_ready_to_run=False,
                            notify_stdin=False, dont_trace_start_patterns=(debugpy_dir,),
                            dont_trace_end_patterns=("debugpy_launcher.py",))
        finally:
            pydevd.start_client = connect
        self.pydevd, self.sock = pydevd, ours
        # settrace traced the calling thread: it must not be (it serves the debugger).
        self.untrace_current_thread()

    def send(self, message: DapMessage) -> None:
        """Send ``message`` to pydevd (from the debugger's thread: ``DebugTarget``)."""
        assert self.sock is not None
        self.sock.sendall(DapStream.frame(message))

    def receive(self) -> list[DapMessage]:
        """What pydevd sent (call when :attr:`sock` is readable); EOFError if it closed."""
        assert self.sock is not None
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("pydevd closed its connection")
        return self.stream.feed(data)

    # -- the main thread ------------------------------------------------------------------

    def trace_current_thread(self) -> None:
        """Trace the calling thread from now on (again, after an interrupt or a session
        that ended untraced it); cheap when it is traced already."""
        if self.pydevd is None:
            return
        from _pydevd_bundle.pydevd_constants import PYDEVD_USE_SYS_MONITORING

        if not PYDEVD_USE_SYS_MONITORING and sys.gettrace() is not None:
            return
        self.pydevd.settrace(suspend=False, trace_only_current_thread=True,
                             patch_multiprocessing=False, notify_stdin=False,
                             wait_for_ready_to_run=False)

    def untrace_current_thread(self) -> None:
        """Stop tracing the calling thread (its code runs at full speed again)."""
        if self.pydevd is None:
            return
        import pydevd_tracing
        from _pydevd_bundle.pydevd_constants import PYDEVD_USE_SYS_MONITORING

        if PYDEVD_USE_SYS_MONITORING:
            from _pydevd_sys_monitoring import pydevd_sys_monitoring

            pydevd_sys_monitoring.stop_monitoring(all_threads=False)
        else:
            pydevd_tracing.SetTrace(None)

    def main_thread_suspended(self) -> bool:
        """Whether pydevd holds the main thread at a breakpoint or step."""
        if self.pydevd is None:
            return False
        from _pydevd_bundle.pydevd_additional_thread_info import set_additional_thread_info
        from _pydevd_bundle.pydevd_constants import STATE_SUSPEND

        info = set_additional_thread_info(threading.main_thread())
        return bool(info.pydev_state == STATE_SUSPEND)

    def resume_main_thread(self) -> None:
        """Let the main thread go on, as a DAP ``continue`` of it would (its wait loop sees
        the change within pydevd's poll interval)."""
        from _pydevd_bundle.pydevd_additional_thread_info import set_additional_thread_info
        from _pydevd_bundle.pydevd_thread_lifecycle import internal_run_thread

        internal_run_thread(threading.main_thread(), set_additional_thread_info)
