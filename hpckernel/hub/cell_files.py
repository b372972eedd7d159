"""The file name of each cell while it is debugged, as the front ends compute it.

JupyterLab (and VS Code) set breakpoints in a cell by a path they compute themselves from
``debugInfo``: ``tmpFilePrefix + murmur2(cell source, hashSeed) + tmpFileSuffix``. The
prefix is a ``cells`` directory in the job directory (which every node of a Slurm job can
read), so the same path names the cell on the hub and on every rank. ``dumpCell`` writes
the cell there, for pydevd, which verifies a breakpoint only in a file that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from ipykernel.compiler import XCachingCompiler, get_tmp_hash_seed, murmur2_x86

SUFFIX = ".py"
HASH_SEED: int = get_tmp_hash_seed()


class CellFiles:
    """Where the kernel's debugged cells are (``prefix``) and their names."""

    def __init__(self, job_dir: Path) -> None:
        self.directory = Path(os.path.realpath(job_dir)) / "cells"
        self.prefix = f"{self.directory}{os.sep}"

    def path(self, code: str) -> str:
        """The file name of the cell ``code`` (the whole cell, as the front end has it)."""
        return f"{self.prefix}{murmur2_x86(code, HASH_SEED)}{SUFFIX}"

    def dump(self, code: str) -> str:
        """Write the cell to its file (``dumpCell``); its path."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        path = self.path(code)
        # Written elsewhere then renamed: a rank reading it never sees half a cell.
        part = Path(f"{path}.{os.getpid()}.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(code)
        os.replace(part, path)
        return path


class HubCellCompiler(XCachingCompiler):
    """The hub's compiler: ``%%local`` cells are named in the same directory as the ranks'
    cells (ipykernel's names them in its own temp directory, which a debug session's one
    ``tmpFilePrefix`` could not also cover)."""

    cells: CellFiles | None = None  # set by the kernel once it has its job directory

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        """The file name a cell compiles under: its ``CellFiles`` path once the kernel set one."""
        if self.cells is None:
            return str(super().get_code_name(raw_code, transformed_code, number))
        return self.cells.path(raw_code)
