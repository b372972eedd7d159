"""Running a notebook's cell inside the program, at a safepoint (``safepoints.py``), and
stopping it only where every target can stop it alike.

The cell runs in the program's ``__main__`` namespace, with the locals of the function that
called ``safepoint()`` readable too (a loop inside ``main()``); names it assigns go into
``__main__``. Its output goes to the notebook as a kernel rank's does (``stream`` and an
``execute_result`` display, tagged with the request, through the node's agent), never into
the program's own output, and never waited on: what does not fit the output window now is
dropped with a note, so that a notebook that stopped reading costs the program nothing.

Stopping (the notebook's interrupt): a rank running the cell is asked to *hold* it
(:meth:`CellRunner.hold`). While cells run, a trace function is set on the main thread that
does nothing until a hold is asked for; then every frame of the main thread traces lines,
and at the next line of Python the main thread holds, says so, and waits for the
endpoint's verdict: stop (``KeyboardInterrupt`` raised there) or go on. A rank inside a
call (an MPI collective, ``time.sleep``, C code) cannot hold; then no rank is stopped, so
that none is left waiting in a collective for a partner that was stopped.
"""

from __future__ import annotations

import ast
import linecache
import logging
import sys
import threading
import time
from collections import ChainMap
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from ..plane.credit import display_size
from ..worker.capture import OutStream
from .safepoints import HOLD_LIMIT, Safepoints

#: Code where the main thread never holds: it may hold a lock the I/O thread needs then
#: (the output window's, logging's).
_NEVER_HOLD = (str(Path(__file__).parents[1]), str(Path(logging.__file__).parent),
               threading.__file__)

#: send_output(kind, header, size, value) -> False when the window has no room now
SendOutput = Callable[[str, dict[str, object], int, object], bool]
#: answer(held) for a hold asked for: where the rank holds the cell ("cell", "start",
#: "done": it has left it, "no": it could not)
Answer = Callable[[str], None]
#: A trace function (``sys.settrace``): the tracer for the frame's lines next, or None
Tracer = Callable[[FrameType, str, object], "Tracer | None"]


class CellRunner:
    """Runs cells on the main thread; holds and stops them for the I/O thread."""

    def __init__(self, state: Safepoints, rank: int, send: SendOutput) -> None:
        self.state = state
        self.cond = state.cond  # one lock for the cell's whole life on this rank
        self.rank = rank
        self._send = send
        self._main = threading.main_thread().ident
        self.running: str | None = None  # the cell (its endpoint id) the main thread runs
        self._hold: Answer | None = None  # a hold asked for, not reached yet
        self._holding = False
        self._verdict: bool | None = None  # stop?
        self._request = ""  # the running cell's request id (its output carries it)
        self.dropped = 0  # characters of output not sent (no room in the window)
        self.streams: tuple[OutStream, ...] = ()  # the running cell's stdout and stderr

    # -- the I/O thread ---------------------------------------------------------------------

    def flush(self) -> None:
        """Send the running cell's output so far (the I/O thread, every 0.1 s meanwhile)."""
        for stream in self.streams:
            stream.try_flush()

    def hold(self, cell_id: str, answer: Answer) -> str | None:
        """Hold ``cell_id``: at once where it is not running here (held at its safepoint if
        it has not started, else "done"); else at the running cell's next line, answered
        then (None now)."""
        with self.cond:
            if self.running == cell_id:
                if self._hold is None and not self._holding:
                    self._hold = answer
                    self._trace_main()
                return None
        return "start" if self.state.hold(cell_id) else "done"

    def release(self, cell_id: str, stop: bool) -> None:
        """The endpoint's verdict on a hold: stop the cell, or let it go on."""
        with self.cond:
            if self.running == cell_id:
                if self._holding:
                    self._verdict = stop
                    self.cond.notify_all()
                elif self._hold is not None:
                    answer, self._hold = self._hold, None
                    answer("no")  # not held in time: it goes on
        self.state.release(cell_id, stop)

    def _trace_main(self) -> None:
        frame = sys._current_frames().get(self._main or 0)
        while frame is not None:
            frame.f_trace = self._line
            frame = frame.f_back

    # -- the main thread ----------------------------------------------------------------------

    def _call(self, frame: FrameType, event: str, arg: object) -> Tracer | None:
        return self._line if self._hold is not None else None

    def _line(self, frame: FrameType, event: str, arg: object) -> Tracer | None:
        if event != "line" or frame.f_code.co_filename.startswith(_NEVER_HOLD):
            return self._line if self._hold is not None else None
        with self.cond:
            answer, self._hold = self._hold, None
            if answer is None:
                return None
            self._holding, self._verdict = True, None
            answer("cell")
            deadline = time.monotonic() + HOLD_LIMIT
            while self._verdict is None and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            stop = bool(self._verdict)
            self._holding, self._verdict = False, None
        if stop:
            raise KeyboardInterrupt("stopped from the notebook")
        return None

    def run(self, cell_id: str, request_id: str, code: str, name: str,
            frame: FrameType | None) -> dict[str, object]:
        """(main thread) Run ``code`` as cell ``cell_id`` of request ``request_id``; its
        reply's fields (status, and the error's ename/evalue/traceback)."""
        streams = (OutStream("stdout", self._stream, 1), OutStream("stderr", self._stream, 2))
        fields: dict[str, object] = {"status": "ok"}
        saved, tracer = (sys.stdout, sys.stderr), sys.gettrace()
        with self.cond:
            self.running, self._request, self.dropped = cell_id, request_id, 0
        self.streams = streams
        try:
            sys.stdout, sys.stderr = streams  # type: ignore[assignment]
            sys.settrace(self._call)
            result = _exec(code, name, frame)
            sys.settrace(tracer)
            if result is not None:
                self._display(repr(result))
        except BaseException as e:  # the cell's error, or the notebook's stop
            sys.settrace(tracer)
            fields = {"status": "error", "ename": type(e).__name__, "evalue": str(e),
                      "traceback": _traceback(e)}
        finally:
            sys.settrace(tracer)
            for stream in streams:
                stream.flush()
            sys.stdout, sys.stderr = saved
            self.streams = ()
            self._leave()
        if self.dropped:
            fields["dropped"] = self.dropped
        return fields

    def _leave(self) -> None:
        with self.cond:
            self.running = None
            answer, self._hold = self._hold, None
            if answer is not None:
                answer("done")  # asked to hold as it ended: it holds nothing any more

    def _stream(self, name: str, text: str, wait: bool) -> bool:
        header = {"id": self._request, "rank": self.rank, "name": name, "text": text}
        if not self._send("stream", header, len(text), None):
            self.dropped += len(text)
        return True  # sent or dropped: never kept, never waited for

    def _display(self, text: str) -> None:
        content = {"data": {"text/plain": text}, "metadata": {}}
        header = {"id": self._request, "rank": self.rank, "msg_type": "execute_result"}
        if not self._send("display", header, display_size(content), content):
            self.dropped += len(text)


def _traceback(error: BaseException) -> list[str]:
    """The error's traceback from the cell's own frames on (without this module's)."""
    import traceback

    here = __file__
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename != here]
    return ["Traceback (most recent call last):\n",
            *traceback.format_list(frames), *traceback.format_exception_only(error)]


def _exec(code: str, name: str, frame: FrameType | None) -> object:
    main = sys.modules["__main__"].__dict__
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    tree = ast.parse(code, name)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body[-1].value)
        tree.body.pop()
    local: dict[str, object] = {}
    # The caller's locals, readable; what the cell assigns lands in ``local``.
    scope = ChainMap(local, dict(frame.f_locals) if frame is not None
                     and frame.f_globals is not frame.f_locals else {})
    try:
        exec(compile(tree, name, "exec"), main, scope)
        return None if last is None else eval(compile(last, name, "eval"), main, scope)
    finally:
        main.update(local)
