"""A rank's side of the debugger: the hub's ``dap`` requests, answered by a
``DebugTarget`` (debugpy's pydevd in this process); its events go up as ``dapevent``.

Nothing is imported or started until the hub's first ``dap`` request, so a rank that is
never debugged pays nothing. Requests arrive on the I/O thread (a control request: they are
answered while a cell runs, or while it is stopped at a breakpoint); the target's own thread
answers them and sends the reply itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..debug.cell_lines import LeadingLines
from ..debug.dap import DapMessage, response
from ..debug.target import DebugTarget
from ..plane import Message, kinds, pack
from ..plane.headers import PlaneHeader
from . import interrupts

if TYPE_CHECKING:
    from .channel import HubChannel
    from .shell import RankShell


class RankDebugger:
    """The debugger of one rank (``channel.control[kinds.DAP]``, and the runner's hooks)."""

    def __init__(self, channel: HubChannel, rank: int) -> None:
        self.channel = channel
        self.rank = rank
        self.shell: RankShell | None = None  # set once built (requests may come before)
        self.target: DebugTarget[str | None] | None = None
        self.lines: LeadingLines | None = None

    def control(self, msg: Message) -> None:
        """A ``dap`` request of the hub (on the I/O thread): answered later, by the target."""
        request = msg.header.get("dap")
        if not isinstance(request, dict):
            self._reply(msg.header.get("id"), response({}, message="no DAP request"))
            return
        if self.target is None:
            self.target = DebugTarget(self._user_ns, self._reply, self._event,
                                      self._expressions)
            interrupts.debugger_hook = self.target.interrupt
        self.target.submit(msg.header.get("id"), request)

    def _user_ns(self) -> dict[str, object]:
        return self.shell.user_ns if self.shell is not None else {}

    def _expressions(self, expressions: dict[str, str]) -> dict[str, object]:
        if self.shell is None:
            return {}
        return self.shell.user_expressions(expressions)  # type: ignore[no-any-return]

    def _reply(self, request_id: str | None, answer: DapMessage) -> None:
        self.channel.send(pack(kinds.REPLY, {"id": request_id, "rank": self.rank,
                                             "status": "ok", "request": kinds.DAP,
                                             "dap": answer}))

    def _event(self, event: DapMessage) -> None:
        self.channel.send(pack(kinds.DAPEVENT, {"rank": self.rank, "event": event}))

    # -- the main thread, around each cell (RankRunner.execute) ---------------------------

    def before_cell(self, header: PlaneHeader) -> str:
        """The code to run for an ``execute`` request. While this rank is debugged, the cell
        is traced and compiled under ``debug_path``, with ``debug_offset`` empty lines in
        front (the hub's ``%%px`` line), so that its lines are the front end's."""
        code: str = header["code"]
        target, shell = self.target, self.shell
        if target is None or shell is None:
            return code
        target.trace_main()
        if self.lines is None:
            self.lines = LeadingLines(shell)
        self.lines.keep(target.attached)
        path = header.get("debug_path")
        if not target.attached or not isinstance(path, str):
            return code
        shell.compile.next_name = path  # the shell's CellCompiler (shell.py)
        return "\n" * int(header.get("debug_offset") or 0) + code

    def after_cell(self) -> None:
        """After an ``execute`` request (ran or not): the shell names its next cell itself."""
        if self.shell is not None:
            self.shell.compile.next_name = None  # not used if the cell did not compile
