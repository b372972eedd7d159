"""The px magics as IPython magics of the hub's shell (and of a plain IPython kernel, for
live batch jobs: ``%load_ext hpckernel.widgets``).

The kernel routes a notebook cell that starts with one of these to the hub shell, and
``%%local`` code can call them too. ``%%px``/``%px`` here run the same coroutine as a
``%%px`` cell of the notebook (``PxController.run_cell``), waiting for it on the plane
thread's loop: the kernel's own loop is busy running this magic. ``--job JOBID`` makes
``%%px``, ``%peek`` and ``%where`` use an attached live job's controller instead of the
kernel's own (``controllers.py``); the rest is one path.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..targets import format_ranks
from . import transfer
from .cell_routing import (
    PXCONFIG_PARSER,
    MagicUsageError,
    PxOptions,
    parse_magic,
    parse_px_options,
)
from .controllers import Controllers
from .introspect import format_peek, format_where
from .px_controller import PxController, PxHandle
from .recorder import Recorder

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .debugger import HubDebugger


@magics_class
class PxMagics(Magics):
    """``%%px``, ``%peek``, ``%where`` and the hub's other magics of the ranks."""

    def __init__(self, shell: InteractiveShell | None, controllers: Controllers,
                 recorder: Recorder | None, debugger: HubDebugger | None = None) -> None:
        super().__init__(shell)
        self.controllers = controllers
        self.recorder = recorder
        self.debugger = debugger

    @property
    def px(self) -> PxController:
        """The kernel's own ranks' controller (a usage error in a plain kernel)."""
        return self.controllers.get(None)

    @property
    def _ns(self) -> dict[str, object]:
        assert self.shell is not None
        return self.shell.user_ns  # type: ignore[no-any-return]

    @line_magic("px")  # type: ignore[arg-type]
    def px_line(self, line: str) -> PxHandle | None:
        """%px CODE: run one line of code on the default target ranks."""
        return self._run(line, PxOptions())

    @cell_magic("px")  # type: ignore[arg-type]
    def px_cell(self, line: str, cell: str) -> PxHandle | None:
        """%%px [--targets SPEC] [--noblock] [--in NAME [--scatter]] [--out NAME [--concat]]:
        run the cell on ranks; with --job JOBID, in that live batch job."""
        return self._run(cell, parse_px_options(line))

    def _run(self, code: str, options: PxOptions) -> PxHandle | None:
        """The handle of a --noblock cell, else None; CellError if it failed. Interrupted
        (a plain kernel's interrupt, or %%local code's), it interrupts the ranks and waits
        for the cell's end."""
        px = self.controllers.get(options.job)
        ran = asyncio.run_coroutine_threadsafe(
            px.run_cell(code, options, self._ns, parent=px.parent()), px.pool.loop)
        try:
            cell = ran.result()
        except KeyboardInterrupt:
            px.pool.interrupt()
            cell = ran.result(px.pool.settings.interrupt_grace + 10)
        return None if cell.block else cell.handle

    @line_magic
    def peek(self, line: str) -> None:
        """%peek NAME... [--targets SPEC] [--timeout S]: the current value of variables on
        the ranks, while they run a cell (answered without stopping them); with --job JOBID,
        in that live batch job."""
        args = parse_magic("peek", line)
        px = self.controllers.get(args.job)
        targets, note = px.live(px.resolve(args.targets))
        if targets:
            print(format_peek(px.ask("peek", targets, {"names": args.names}, args.timeout),
                              args.names))
        if note:
            print(f"not asked: {note}")

    @line_magic
    def where(self, line: str) -> None:
        """%where [--targets SPEC] [--job JOBID]: what each rank runs now (its Python
        stack), or each rank of a live batch job."""
        args = parse_magic("where", line)
        px = self.controllers.get(args.job)
        targets, note = px.live(px.resolve(args.targets))
        if targets:
            print(format_where(px.ask("where", targets, {})))
        if note:
            print(f"not asked: {note}")

    @line_magic
    def push(self, line: str) -> None:
        """%push NAME... [--targets SPEC] [--scatter]: send hub variables to the ranks."""
        args = parse_magic("push", line)
        targets = self.px.resolve(args.targets)
        self.px.wait_ready()
        values = transfer.hub_values(self._ns, args.names)
        self.px.push(targets, values, args.scatter).result()

    @line_magic
    def pull(self, line: str) -> None:
        """%pull NAME... [--targets SPEC] [--concat]: gather rank variables into the hub."""
        args = parse_magic("pull", line)
        self._ns.update(
            self.px.gather(self.px.resolve(args.targets), args.names, args.concat))

    @line_magic
    def provenance(self, line: str) -> None:
        """%provenance [N] [--json]: what ran in this session, where, and how it ended."""
        args = parse_magic("provenance", line)
        if self.recorder is None:
            raise MagicUsageError("%provenance: this kernel keeps no provenance records")
        print(self.recorder.show(args.last, args.json))

    @line_magic
    def pxconfig(self, line: str) -> None:
        """%pxconfig [--targets SPEC] [--block|--noblock] [--debug SPEC]: change the defaults
        of cells, and the ranks the debugger stops on."""
        options = parse_px_options(line, PXCONFIG_PARSER)
        if options.targets is not None:
            self.px.resolve(options.targets)  # fail now, not in the next cell
            self.px.targets = options.targets
        if options.block is not None:
            self.px.block = options.block
        if options.debug is not None and self.debugger is not None:
            self.debugger.set_ranks(self.px.resolve(options.debug))
        targets = format_ranks(self.px.resolve(None))
        print(f"cells run on ranks {targets}, {'blocking' if self.px.block else 'noblock'}"
              + (f"; the debugger stops on ranks {format_ranks(self.debugger.ranks)}"
                 if self.debugger is not None else ""))

    @line_magic
    def pxresult(self, line: str) -> None:
        """%pxresult: wait for the last --noblock cell and show its output."""
        handle = self.px.last
        if handle is None:
            raise RuntimeError("no %%px --noblock cell has run yet")
        handle.display_outputs()
        handle.request.raise_for_errors()

    @line_magic
    def pxoutput(self, line: str) -> None:
        """%pxoutput [RANKS] [--cell N] [--from BYTES]: the whole output of RANKS (default:
        all) in the last cell run on the ranks (or in cell In[N]), also what the notebook was
        not shown, a page at a time; waits for a --noblock cell to end."""
        args = parse_magic("pxoutput", line)
        self.px.cell(args.cell).display(args.ranks, args.start)

    @line_magic
    def ranks(self, line: str) -> None:
        """%ranks: each rank's state, pid, host, CPU and memory (and the Slurm job's)."""
        if self.px.allocation is not None:
            print(self.px.allocation.describe())
        print(self.px.pool.describe())
        print(f"{'rank':>4}  {'state':<8} {'pid':>8}  {'host':<16} {'cpu%':>6} {'rss':>9}  note")
        for info in self.px.pool.snapshot():
            cpu, rss = info.usage()
            print(f"{info.rank:>4}  {info.state:<8} {info.pid or '-':>8}  "
                  f"{info.host[:16]:<16} {cpu:>6} {rss:>9}  {info.reason}")

    @line_magic
    def restart_ranks(self, line: str) -> None:
        """%restart_ranks: replace every rank by a fresh one (namespaces are lost)."""
        t0 = time.monotonic()
        self.px.pool.restart().result()
        print(f"{self.px.size} fresh ranks ready in {time.monotonic() - t0:.1f} s")
