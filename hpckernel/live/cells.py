"""Running a notebook's cell inside the program, at a safepoint (``safepoints.py``).

The cell runs in the program's ``__main__`` namespace, with the locals of the function that
called ``safepoint()`` readable too (a loop inside ``main()``); names it assigns go into
``__main__``. Its output is captured (bounded) and goes back in the reply, never printed
into the program's own output and never waited on: a notebook that vanished costs the
program nothing. The value of a last expression comes back as its ``repr``.

An interrupt from the notebook becomes a ``KeyboardInterrupt`` raised in the main thread
while, and only while, it runs a cell (``PyThreadState_SetAsyncExc``, not SIGINT: the
program's own SIGINT handling stays its own). One that comes as the cell ends is cleared
before the program goes on.
"""

from __future__ import annotations

import ast
import ctypes
import linecache
import sys
import threading
import traceback
from collections import ChainMap
from types import FrameType
from typing import Any

#: Most characters of each stream (and of the result's repr) a rank sends back for a cell.
MAX_OUTPUT = 64 * 1024


class _Capture:
    """A bounded text stream (``sys.stdout`` while a cell runs)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.cut = 0

    def write(self, text: str) -> int:
        room = MAX_OUTPUT - self.size
        if len(text) > room:
            self.cut += len(text) - max(room, 0)
            text = text[:max(room, 0)]
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        out = "".join(self.parts)
        if self.cut:
            out += f"\n[{self.cut} more characters not sent: at most {MAX_OUTPUT} a cell]\n"
        return out


# Two prototypes of one C function: raising takes the exception class, clearing takes NULL.
_raise_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))
_clear_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))


def _traceback(error: BaseException) -> list[str]:
    """The error's traceback from the cell's own frames on (without this module's)."""
    here = __file__
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename != here]
    return ["Traceback (most recent call last):\n",
            *traceback.format_list(frames), *traceback.format_exception_only(error)]


class CellRunner:
    """Runs cells on the main thread; interrupts them from the I/O thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_cell: str | None = None
        self._interrupted: set[str] = set()
        self._main = threading.main_thread().ident or 0

    def interrupt(self, cell_id: str | None = None) -> None:
        """(I/O thread) Stop the running cell (or ``cell_id`` when it starts)."""
        with self._lock:
            if cell_id is not None and cell_id != self._in_cell:
                self._interrupted.add(cell_id)
            elif self._in_cell is not None:
                _raise_in(self._main, KeyboardInterrupt)

    def run(self, cell_id: str, code: str, name: str, frame: FrameType | None
            ) -> dict[str, Any]:
        """(main thread) The reply fields of running ``code``: status, the error's
        ename/evalue/traceback, ``stdout``, ``stderr``, ``out``."""
        out, err = _Capture(), _Capture()
        fields: dict[str, Any] = {"status": "ok"}
        saved = sys.stdout, sys.stderr
        try:
            with self._lock:
                self._in_cell = cell_id
                if cell_id in self._interrupted:
                    self._interrupted.discard(cell_id)
                    _raise_in(self._main, KeyboardInterrupt)
            sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
            result = self._exec(code, name, frame)
            if result is not None:
                fields["out"] = repr(result)[:MAX_OUTPUT]
        except BaseException as e:  # the cell's error, or the notebook's interrupt
            fields = {"status": "error", "ename": type(e).__name__, "evalue": str(e),
                      "traceback": _traceback(e)}
        finally:
            self._leave()
            sys.stdout, sys.stderr = saved
        fields["stdout"], fields["stderr"] = out.text(), err.text()
        return fields

    def _leave(self) -> None:
        # An interrupt set just as the cell ended may fire in here: catch it and clear
        # again, until the cell is left with none pending.
        while True:
            try:
                with self._lock:
                    self._in_cell = None
                    _clear_in(self._main, None)
                return
            except KeyboardInterrupt:
                continue

    @staticmethod
    def _exec(code: str, name: str, frame: FrameType | None) -> Any:
        main = sys.modules["__main__"].__dict__
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        tree = ast.parse(code, name)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body[-1].value)
            tree.body.pop()
        local: dict[str, Any] = {}
        # The caller's locals, readable; what the cell assigns lands in ``local``.
        scope = ChainMap(local, dict(frame.f_locals) if frame is not None
                         and frame.f_globals is not frame.f_locals else {})
        try:
            exec(compile(tree, name, "exec"), main, scope)
            return None if last is None else eval(compile(last, name, "eval"), main, scope)
        finally:
            main.update(local)
