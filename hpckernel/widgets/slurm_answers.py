"""Text a widget shows once Slurm answers: the call runs on the private loop of
`hpckernel.slurm.sync`, so a button's callback never waits on Slurm (``jobviews.py``,
``panel.py``)."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from typing import TypeVar

import ipywidgets as w

from ..slurm import sync

T = TypeVar("T")


def error_html(error: BaseException) -> str:
    """An error as a red block, for a view's message line."""
    return f"<pre style='color:#c00'>{html.escape(str(error))}</pre>"


def run_then(coro: Awaitable[T], done: Callable[[T], None],
             failed: Callable[[BaseException], None]) -> None:
    """Run ``coro`` on the sync loop; then ``done(result)`` or ``failed(error)`` there."""
    async def wrapper() -> None:
        try:
            result = await coro
        except Exception as e:
            failed(e)
            return
        done(result)
    asyncio.run_coroutine_threadsafe(wrapper(), sync.loop())


def show_async(target: w.HTML, coro: Awaitable[str]) -> None:
    """Show the text ``coro`` returns (or its error) in ``target`` once it is done."""
    target.value = "<i>asking Slurm…</i>"
    run_then(coro, lambda text: setattr(target, "value", f"<pre>{html.escape(text)}</pre>"),
             lambda e: setattr(target, "value", error_html(e)))


def trouble_html(trouble: str) -> str:
    """The poller's trouble line (Slurm busy, retrying …), or nothing."""
    return f"<i style='color:#b26a00'>{html.escape(trouble)}</i>" if trouble else ""
