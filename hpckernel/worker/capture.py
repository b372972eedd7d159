"""Capture of a rank's stdout/stderr and rich display output.

Text is buffered and handed to the I/O thread in chunks, so a rank printing in a tight loop
costs one plane message per flush interval, not one per ``print``. A chunk waits for room in
the output window (``plane/credit.py``): a rank that prints faster than the hub takes its
output in waits in ``print``, with at most ``FLUSH_BYTES`` buffered here.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable, Mapping

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher

from . import interrupts

# Flush at once when this much text is waiting, so memory stays bounded during a flood; and
# the most text one message carries (one large write goes as several).
FLUSH_BYTES = 64 * 1024

#: send(name, text, wait) queues one message; False when the window is full and not ``wait``
SendStream = Callable[[str, str, bool], bool]
#: send(msg_type, content) queues one display message (``RankRunner.send_display``)
SendDisplay = Callable[[str, Mapping[str, object]], None]


class OutStream(io.TextIOBase):
    """A text stream (``sys.stdout``/``sys.stderr``) whose writes go to the hub."""

    def __init__(self, name: str, send: SendStream, fileno: int) -> None:
        super().__init__()
        self.name_ = name
        self._send = send
        self._fileno = fileno
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._size = 0
        #: the thread that must never wait here (the I/O thread: it receives the credits a
        #: writer holding the lock waits for), and what it wrote, sent with the next flush
        self.no_wait: int | None = None
        self._aside: deque[str] = deque()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """Always UTF-8 (what the hub decodes)."""
        return "utf-8"

    @property
    def name(self) -> str:
        """``<stdout>`` or ``<stderr>``, as Python names its own."""
        return f"<{self.name_}>"

    def writable(self) -> bool:
        """Always writable."""
        return True

    def isatty(self) -> bool:
        """Never: the notebook is not a terminal."""
        return False

    def fileno(self) -> int:
        """The original descriptor: libraries that write to it (faulthandler, subprocess)
        end up in the launcher log."""
        return self._fileno

    def write(self, text: str) -> int:  # type: ignore[override]
        """Buffer ``text``; flushed when ``FLUSH_BYTES`` wait, or by the I/O thread while a
        request runs."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        if threading.get_ident() == self.no_wait:  # a warning while answering a completion
            self._aside.append(text)
            return len(text)
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            full = self._size >= FLUSH_BYTES
        if full:
            self.flush()
        return len(text)

    def close(self) -> None:
        """Flush, and stay usable: a cell cannot close the notebook's stream."""
        self.flush()

    def flush(self) -> None:
        """Send what is buffered, waiting for room in the window if need be."""
        with self._lock:
            self._send_parts(True)

    def discard(self) -> None:
        """Forget what is buffered (the request it belongs to was interrupted)."""
        with self._lock:
            self._parts.clear()
            self._aside.clear()
            self._size = 0

    def try_flush(self) -> None:
        """Send what is buffered and fits the window now. Called by the I/O thread, which
        must never wait: it receives the credits (and a writer may hold the lock, waiting)."""
        if self._lock.acquire(blocking=False):
            try:
                self._send_parts(False)
            finally:
                self._lock.release()

    def _send_parts(self, wait: bool) -> None:
        # Sent under the lock so that chunks of one stream keep their order.
        while self._aside:
            self._parts.append(self._aside.popleft())
        if not self._parts:
            return
        text = "".join(self._parts)
        done = 0
        try:
            while done < len(text):
                chunk = text[done:done + FLUSH_BYTES]
                with interrupts.held():  # queued and counted, or neither
                    if not self._send(self.name_, chunk, wait):
                        break
                    done += len(chunk)
        finally:
            # What is not sent (no room, or an interrupt while waiting) stays buffered.
            self._parts[:] = [text[done:]] if done < len(text) else []
            self._size = len(text) - done


class RankDisplayHook(DisplayHook):
    """Turns a cell's last expression into an ``execute_result`` sent to the hub."""

    send: SendDisplay | None = None

    def write_output_prompt(self) -> None:
        """Nothing: the front end shows the prompt."""

    def write_format_data(self, format_dict: dict[str, object],
                          md_dict: dict[str, object] | None = None) -> None:
        """Send the result's mime bundle (called by IPython's ``DisplayHook.__call__``)."""
        if self.send is not None:
            content = {"data": format_dict, "metadata": md_dict or {},
                       "execution_count": self.prompt_count}
            self.send("execute_result", content)


class RankDisplayPublisher(DisplayPublisher):
    """Sends ``display()`` output (``display_data``, updates, ``clear_output``) to the hub."""

    send: SendDisplay | None = None

    def publish(  # type: ignore[override]
        self,
        data: dict[str, object],
        metadata: dict[str, object] | None = None,
        source: object = None,
        *,
        transient: dict[str, object] | None = None,
        update: bool = False,
        **kwargs: object,
    ) -> None:
        """Send one ``display_data`` (or ``update_display_data``); called by IPython's
        ``display()``."""
        if self.send is None:
            return
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        self.send("update_display_data" if update else "display_data", content)

    def clear_output(self, wait: bool = False) -> None:
        """Send ``clear_output`` (IPython's ``clear_output()``)."""
        if self.send is not None:
            self.send("clear_output", {"wait": wait})
