"""A debugged cell's lines must be the front end's: IPython drops a cell's leading empty
lines before it compiles it, which moves every breakpoint. ipykernel's debugger takes that
transform out while a session is on; so do the ranks and the hub."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


class LeadingLines:
    """Takes IPython's ``leading_empty_lines`` out of a shell's transforms, and back."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell
        self._removed: list[Callable[[list[str]], list[str]]] = []

    def keep(self, debugged: bool) -> None:
        """Keep leading empty lines while ``debugged``; drop them again after."""
        from IPython.core.inputtransformer2 import leading_empty_lines

        transforms = self.shell.input_transformer_manager.cleanup_transforms
        if debugged and leading_empty_lines in transforms:
            transforms.remove(leading_empty_lines)
            self._removed.append(leading_empty_lines)
        elif not debugged and self._removed:
            transforms[:0] = self._removed
            self._removed = []
