"""The hub's ``sys.stdout`` and ``sys.stderr``: ipykernel's stream, flushed only when
something waits.

ipykernel flushes both streams twice for every request (before the reply and before
``idle``), and each flush is a round trip to the IOPub thread: the caller schedules the
send and an event, then sleeps until the thread sets it. Most cells print nothing in the
hub (their output comes from the ranks), and those four thread hand-offs were most of what
the hub cost beyond ipykernel for a no-op cell (M1 at N=1: 1.13-1.20x ipykernel's time
before, 1.00-1.03x after). Here a flush with nothing buffered, nothing scheduled for a
flush and no message waiting in the IOPub thread's queue returns at once; anything else
takes ipykernel's way, so what a ``%%local`` cell or a rank printed still goes before the
reply."""

from __future__ import annotations

from ipykernel.iostream import OutStream


class HubOutStream(OutStream):
    """ipykernel's ``OutStream`` whose ``flush`` skips the IOPub round trip when idle."""

    def flush(self) -> None:
        """Send what is buffered and wait for the IOPub thread, unless nothing waits."""
        if self._nothing_waits():
            if self.echo is not None:  # a terminal's copy (IPKernelApp.quiet=False)
                try:
                    self.echo.flush()
                except OSError:
                    pass
            return
        super().flush()

    def _nothing_waits(self) -> bool:
        if self._flush_pending or self._subprocess_flush_pending:
            return False
        pub_thread = self.pub_thread
        # Messages published but not sent yet (a rank's output): the caller's reply must
        # not overtake them.
        if pub_thread is None or pub_thread._events:
            return False
        with self._buffer_lock:
            return not any(buffer.tell() for buffer in self._buffers.values())
