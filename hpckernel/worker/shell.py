"""The IPython shell each rank runs cells in."""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from traitlets import Type

from .capture import RankDisplayHook, RankDisplayPublisher


class RankShell(InteractiveShell):
    """An InteractiveShell that reports errors and rich output instead of printing them."""

    displayhook_class = Type(RankDisplayHook)
    display_pub_class = Type(RankDisplayPublisher)

    last_error: dict[str, Any] | None = None

    def init_io(self) -> None:
        pass  # sys.stdout/sys.stderr are the rank's OutStreams, set up by the runner

    def init_completer(self) -> None:
        super().init_completer()
        # Jedi finds nothing in a shell without a frontend; the namespace completer does.
        self.Completer.use_jedi = False

    def enable_gui(self, gui: str | None = None) -> None:
        pass  # ranks have no GUI event loop; matplotlib's inline backend still works

    def _showtraceback(self, etype: Any, evalue: Any, stb: list[str]) -> None:
        # Called by IPython for every error in a cell: keep it for the reply.
        self.last_error = {"ename": getattr(etype, "__name__", str(etype)),
                           "evalue": str(evalue), "traceback": list(stb)}
