"""A rank's side of the debugger: the hub's ``dap`` requests, answered by a
``DebugTarget`` (debugpy's pydevd in this process); its events go up as ``dapevent``.

Nothing is imported or started until the hub's first ``dap`` request, so a rank that is
never debugged pays nothing. Requests arrive on the I/O thread (a control request: they are
answered while a cell runs, or while it is stopped at a breakpoint); the target's own thread
answers them and sends the reply itself.
"""

from __future__ import annotations

from types import FrameType
from typing import TYPE_CHECKING, Any

from IPython.core.compilerop import CachingCompiler

from ..debug.cell_lines import LeadingLines
from ..debug.target import DebugTarget, response
from ..plane import Message, pack
from . import interrupts

if TYPE_CHECKING:
    from .channel import HubChannel
    from .shell import RankShell


class CellCompiler(CachingCompiler):
    """IPython's compiler, naming the next cell as the hub says while it is debugged: the
    file name the front end sets its breakpoints in (``debug_path`` of an ``execute``)."""

    next_name: str | None = None

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        name, self.next_name = self.next_name, None
        return name or super().get_code_name(raw_code, transformed_code, number)


class RankDebugger:
    """The debugger of one rank (``channel.control["dap"]``, and the runner's hooks)."""

    def __init__(self, channel: HubChannel, shell: RankShell, rank: int) -> None:
        self.channel = channel
        self.shell = shell
        self.rank = rank
        self.target: DebugTarget | None = None
        self.lines = LeadingLines(shell)

    def control(self, msg: Message) -> None:
        """A ``dap`` request of the hub (on the I/O thread): answered later, by the target."""
        request = msg.header.get("dap")
        if not isinstance(request, dict):
            self._reply(msg.header.get("id"), response({}, message="no DAP request"))
            return
        if self.target is None:
            self.target = DebugTarget(lambda: self.shell.user_ns, self._reply, self._event,
                                      self.shell.user_expressions)
            interrupts.debugger_hook = self._intercept
        self.target.submit(msg.header.get("id"), request)

    def _reply(self, request_id: Any, answer: dict[str, Any]) -> None:
        self.channel.send(pack("reply", {"id": request_id, "rank": self.rank, "status": "ok",
                                         "request": "dap", "dap": answer}))

    def _event(self, event: dict[str, Any]) -> None:
        self.channel.send(pack("dapevent", {"rank": self.rank, "event": event}))

    def _intercept(self, frame: FrameType | None) -> bool:
        return self.target is not None and self.target.intercept_interrupt(frame)

    # -- the main thread, around each cell (RankRunner.execute) ---------------------------

    def before_cell(self, header: dict[str, Any]) -> str:
        """The code to run for an ``execute`` request. While this rank is debugged, the cell
        is traced and compiled under ``debug_path``, with ``debug_offset`` empty lines in
        front (the hub's ``%%px`` line), so that its lines are the front end's."""
        code: str = header["code"]
        target = self.target
        if target is None:
            return code
        target.trace_main()
        self.lines.keep(target.attached)
        path = header.get("debug_path")
        if not target.attached or not isinstance(path, str):
            return code
        compiler = self.shell.compile
        if isinstance(compiler, CellCompiler):
            compiler.next_name = path
        return "\n" * int(header.get("debug_offset") or 0) + code

    def after_cell(self) -> None:
        compiler = self.shell.compile
        if isinstance(compiler, CellCompiler):
            compiler.next_name = None  # not used if the cell did not compile
