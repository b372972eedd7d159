"""The rank's SIGINT handler: the hub's interrupt (``channel.HubChannel._interrupt``) becomes
a ``KeyboardInterrupt`` in the main thread, except inside :func:`held` sections.

Queueing a piece of output and counting it as sent (``capture.OutStream``,
``channel.HubChannel.send_output``) must not be cut in two: an interrupt in between would
leave a piece queued but not counted (sent again: twice in the rank's output), or a request
for credit counted but never sent (a wait for ever). There the interrupt is held and raised
when the section ends; waits inside a section (for credit) stay interruptible
(:func:`allowed`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_main = threading.main_thread().ident
_held = False  # the main thread is in a held section
_pending = False  # an interrupt arrived meanwhile
#: Set once the rank is debugged (worker/debugger.py): lets a thread stopped at a breakpoint
#: go before the interrupt is raised in it.
debugger_hook: Callable[[], None] | None = None


def handler(signum: int, frame: FrameType | None) -> None:
    """The SIGINT handler (Python runs it in the main thread)."""
    global _pending
    if _held:
        _pending = True
        return
    if debugger_hook is not None:
        debugger_hook()
    raise KeyboardInterrupt


def _raise_pending() -> None:
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


@contextmanager
def held(discard: bool = False) -> Iterator[None]:
    """A section of the main thread that an interrupt does not cut (other threads: no-op);
    an interrupt that came meanwhile is raised at its end, or forgotten with ``discard``
    (it was for what the section finished)."""
    global _held, _pending
    if threading.get_ident() != _main or _held:
        yield
        return
    _held = True
    try:
        yield
    finally:
        _held = False
        if discard:
            _pending = False
        else:
            _raise_pending()


@contextmanager
def allowed() -> Iterator[None]:
    """Inside :func:`held`: a wait that an interrupt may end (raised at once if one came)."""
    global _held
    if threading.get_ident() != _main or not _held:
        yield
        return
    _held = False
    try:
        _raise_pending()
        yield
    finally:
        _held = True
