"""A private event loop on a daemon thread: how sync code runs hpckernel's async Slurm calls.

A notebook's code is sync, and inside a Jupyter kernel an event loop is already running in
the main thread, so neither `asyncio.run` nor `loop.run_until_complete` works there. Every
coroutine runs instead on one loop in a background thread (`run` blocks the caller until the
coroutine is done), which is also where the widgets' refreshes run. Users: the sync `Workflow`
and its widget, the job-control twins (`hpckernel.slurm.jobcontrol`) and the job widgets.
Works the same in a plain script, in ipykernel and in the hpckernel hub's `%%local` cells.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The shared background loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, daemon=True,
                                       name="hpckernel-sync-loop")
            _thread.start()
        return _loop


def in_loop_thread() -> bool:
    """Whether this code runs on the private loop's thread."""
    return threading.current_thread() is _thread


def run(coro: Coroutine[object, None, T], timeout: float | None = None) -> T:
    """Run `coro` on the background loop and return its result (or raise its exception).

    A KeyboardInterrupt (the notebook's interrupt button) cancels the coroutine.
    """
    if in_loop_thread():
        coro.close()
        raise RuntimeError("a sync hpckernel call was made on hpckernel's own event loop "
                           "(from a listener?): use the async methods there")
    future = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return future.result(timeout)
    except (KeyboardInterrupt, concurrent.futures.TimeoutError):
        future.cancel()
        raise


def call_soon(fn: Callable[[], None]) -> None:
    """Run `fn` on the background loop soon (for loop-bound calls such as `Engine.watch`)."""
    loop().call_soon_threadsafe(fn)
