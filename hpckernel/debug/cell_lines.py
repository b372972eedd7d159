"""A debugged cell's lines must be the front end's: IPython drops a cell's leading empty
lines before it compiles it, which moves every breakpoint. ipykernel's debugger takes that
transform out while a session is on; so do the ranks and the hub."""

from __future__ import annotations

from typing import Any


class LeadingLines:
    """Takes IPython's ``leading_empty_lines`` out of a shell's transforms, and back."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._removed: list[Any] = []

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
