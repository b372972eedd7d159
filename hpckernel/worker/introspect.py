"""Looking into a rank while its main thread runs a cell: ``peek`` and ``where``.

Both are served by the I/O thread (``channel.HubChannel.control``), so they answer while the
main thread is busy — in a Python loop, in ``time.sleep``, or in an MPI call that released
the GIL — without stopping it.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

import hpckernel

from ..plane import Message, pack
from ..plane.headers import PlaneHeader
from ..plane.wire import OutFrame
from .limit import ReplyTooLarge, over_limit

if TYPE_CHECKING:  # the rank imports IPython after it has registered with the hub
    from .channel import HubChannel
    from .shell import RankShell

_CELL = re.compile(r"<ipython-input-(\d+)-[0-9a-f]+>")


class StackFrame(TypedDict):
    """One frame of a ``where`` answer (``%where`` shows it)."""

    file: str  # ``In[7]`` for a cell
    line: int | None
    function: str
    code: str


class Where(TypedDict):
    """The value of a ``where`` reply: what the main thread runs, and for how long."""

    state: Literal["idle", "busy"]
    seconds: float
    stack: list[StackFrame]


@functools.cache
def _machinery() -> tuple[str, ...]:
    """Frames of these files are the rank's machinery, not the user's code."""
    import runpy

    import IPython

    return (str(Path(IPython.__file__ or "?").parent),
            str(Path(hpckernel.__file__ or "?").parent), runpy.__file__ or "?",
            "<frozen runpy>")


class PeekError(RuntimeError):
    """A peeked value that cannot be sent to the hub."""


def _lookup(shell: RankShell, dotted: str) -> object:
    head, *attrs = dotted.split(".")
    try:
        value = shell.user_ns[head]
    except KeyError:
        raise NameError(f"name {head!r} is not defined") from None
    for attr in attrs:
        value = getattr(value, attr)
    return value


def peek(shell: RankShell, rank: int, msg: Message) -> list[OutFrame]:
    """The current values of ``names`` (``x`` or ``x.attr``) in the rank's namespace.

    The reply is pickled in band, here, in one go: arrays are copied while the main thread
    may keep changing them, so the hub gets a snapshot, not memory that is still moving."""
    names: list[str] = msg.header["names"]
    values = [_lookup(shell, name) for name in names]
    header: PlaneHeader = {"id": msg.header["id"], "rank": rank, "status": "ok"}
    for attempt in range(3):
        try:
            # Measured out of band first (arrays are not copied): copying a value over the
            # limit in band only to refuse it could take longer than the hub waits.
            too_large = over_limit(pack("reply", header, values, has_value=True), msg.header)
            if too_large:
                raise ReplyTooLarge(too_large)
            return pack("reply", header, values, has_value=True, inband=True)
        except RuntimeError as e:  # "dictionary changed size during iteration"
            if "changed size" not in str(e) or attempt == 2:
                raise
        except ReplyTooLarge:
            raise
        except Exception as e:
            name, value = next(((n, v) for n, v in zip(names, values, strict=True)
                                if not _picklable(v)), (names[0], values[0]))
            text = repr(value)
            raise PeekError(f"{name} is a {type(value).__name__} that cannot be sent to the "
                            f"hub ({type(e).__name__}: {e}); its repr: "
                            f"{text[:200]}{'...' if len(text) > 200 else ''}") from None
    raise AssertionError("unreachable")


def _picklable(value: object) -> bool:
    try:
        pack("x", {}, value, has_value=True, inband=True)
    except Exception:
        return False
    return True


def where(channel: HubChannel, rank: int, msg: Message) -> tuple[str, PlaneHeader, Where]:
    """The main thread's Python stack if it runs a request (user frames only)."""
    since = channel.busy_since
    header: PlaneHeader = {"id": msg.header["id"], "rank": rank, "status": "ok"}
    main = threading.main_thread().ident
    frame = sys._current_frames().get(main) if main is not None else None
    if since is None or frame is None:
        return "reply", header, {"state": "idle", "seconds": 0.0, "stack": []}
    return "reply", header, {"state": "busy", "seconds": round(time.monotonic() - since, 1),
                             "stack": user_frames(traceback.extract_stack(frame))}


def user_frames(stack: traceback.StackSummary) -> list[StackFrame]:
    """From the first frame of the cell on (or, outside cells, without the rank's own
    machinery), with cell file names shown as ``In[7]``."""
    cells = [i for i, f in enumerate(stack) if _CELL.fullmatch(f.filename)]
    frames = list(stack)[cells[0]:] if cells else [
        f for f in stack if not f.filename.startswith(_machinery())]
    out: list[StackFrame] = []
    for f in frames:
        cell = _CELL.fullmatch(f.filename)
        out.append({"file": f"In[{cell[1]}]" if cell else f.filename, "line": f.lineno,
                    "function": f.name, "code": (f.line or "").strip()})
    return out
