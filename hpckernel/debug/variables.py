"""A namespace's variables as DAP ``variables``, while no thread is stopped (JupyterLab's
Variables panel between cells): pydevd's own variable tree over the shell's namespace, as
ipykernel's ``VariableExplorer`` builds it, so that values, types and children look the
same as when stopped."""

from __future__ import annotations

import re

from .dap import DapMessage

#: Names the Variables panel leaves out: IPython's and the kernel's own (ipykernel's list).
_HIDDEN = frozenset({
    "__name__", "__doc__", "__package__", "__loader__", "__spec__", "__annotations__",
    "__builtins__", "__builtin__", "__display__", "get_ipython", "debugpy", "exit", "quit",
    "In", "Out", "_oh", "_dh", "_", "__", "___"})
_NUMBERED = re.compile(r"^_\d")


def shown(name: str) -> bool:
    """Whether the Variables panel shows ``name``."""
    return name not in _HIDDEN and not _NUMBERED.match(name) and not name.startswith("_i")


class _Code:
    co_filename = "<namespace>"
    co_name = "<module>"


class _Frame:
    """What pydevd's frame tracker needs of a frame: globals and locals (the namespace)."""

    def __init__(self, ns: dict[str, object]) -> None:
        self.f_code = _Code()
        self.f_globals = ns
        self.f_locals = ns
        self.f_back = None


class NamespaceExplorer:
    """One snapshot of a namespace's variable tree: references stay valid until the next
    ``inspectVariables`` (which makes a new explorer)."""

    def __init__(self, ns: dict[str, object]) -> None:
        from _pydevd_bundle import pydevd_frame_utils
        from _pydevd_bundle.pydevd_api import PyDevdAPI
        from _pydevd_bundle.pydevd_suspended_frames import (
            SuspendedFramesManager,
            _FramesTracker,
        )

        class _PyDB:  # the part of pydevd's PyDB the tracker reads
            variable_presentation = PyDevdAPI.VariablePresentation()

        self.manager = SuspendedFramesManager()
        self.frame = _Frame(ns)
        self.tracker = _FramesTracker(self.manager, _PyDB())
        self.tracker.track("namespace",
                           pydevd_frame_utils.create_frames_list_from_frame(self.frame))

    def children(self, ref: int | None) -> list[DapMessage]:
        """The variables under ``ref`` (None: the namespace itself), as DAP ``Variable``s."""
        variable = self.manager.get_variable(ref or id(self.frame))
        for attempt in range(3):
            try:
                found: list[DapMessage] = [v.get_var_data()
                                        for v in variable.get_children_variables()]
                break
            except RuntimeError:  # the main thread changed the namespace meanwhile
                if attempt == 2:
                    raise
        return [v for v in found if shown(str(v["name"]))]
