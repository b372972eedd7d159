"""Running code on the ranks from the hub: the engine behind ``%%px`` and ``ranks``.

A ``%%px`` cell has one path, ``PxController.run_cell``, whether the notebook sent it
(``HubKernel.do_execute`` awaits it) or hub code ran the ``%%px`` magic (which waits for it
on the plane thread's loop).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .. import provenance
from ..targets import TargetError, format_sorted, parse_targets
from . import transfer
from .allocation import Allocation
from .cell_outputs import CellOutputs, PxHandle, ReadLimits, render_outputs
from .cell_routing import PxOptions
from .errors import HubError
from .limits import ReplyLimit
from .messages import ErrorContent, Parent, Publish, msg_id
from .outputs import Output, OutputStore, output_size
from .rank_launchers import LaunchError
from .rank_plane import RankPlane
from .rank_pool import RanksUnavailable, describe_unavailable
from .requests import RemoteError, Request
from .transfer import TransferError

#: Requests whose replies carry no value, so no share of HubKernel.max_reply_size is worked
#: out for them (reading the available memory costs ≈50 µs, and every cell is one).
_NO_VALUE_KINDS = frozenset({"execute", "push"})

#: where a request's merged output goes: into the current cell, kept on its handle, nowhere
OutputMode = Literal["live", "capture", "none"]

#: the IOPub parent of the cell that is running now (from the kernel)
ParentGetter = Callable[[], "Parent | None"]


class PxController:
    """Default targets, the last non-blocking cell, and the calls both faces share."""

    def __init__(self, pool: RankPlane, parent: ParentGetter,
                 publish: Publish, outputs: OutputStore) -> None:
        self.pool = pool
        self.parent = parent
        self.publish = publish
        self.outputs = outputs
        self.targets = "all"
        self.block = True
        self.last: PxHandle | None = None  # the last --noblock cell (%pxresult)
        #: the cells run on the ranks, by execution count, as long as their output is kept
        self.cells: OrderedDict[int, CellOutputs] = OrderedDict()
        self.latest: PxHandle | None = None  # the last %%px cell (``_px``)
        self.allocation: Allocation | None = None  # the Slurm job the hub runs in, if any
        #: what one request or read may bring into the hub (HubKernel.max_reply_size,
        #: HubKernel.output_page)
        self.limits = ReadLimits()
        #: the msg_id of the cell the user last interrupted (the kernel's interrupt_request):
        #: a cell interrupted before it reached the ranks is interrupted once it is sent
        self.interrupted_cell: str | None = None
        #: provenance fields of its cells that differ from the kernel's own (an attached
        #: live job's ranks, hosts and job: ``live/client.py``)
        self.context: dict[str, object] = {}

    @property
    def reply_limit(self) -> ReplyLimit:
        """The bytes one request may bring into the hub (HubKernel.max_reply_size)."""
        return self.limits.reply

    @reply_limit.setter
    def reply_limit(self, limit: ReplyLimit) -> None:
        """Set by the kernel from ``HubKernel.max_reply_size`` (also on ``%config``)."""
        self.limits.reply = limit

    @property
    def size(self) -> int:
        """How many ranks there are (the plane's)."""
        return self.pool.size

    def resolve(self, spec: str | int | slice | Sequence[int] | None) -> list[int]:
        """The ranks a target spec names; None: the default targets (``%pxconfig``)."""
        return parse_targets(self.targets if spec is None else spec, self.size)

    def submit(self, kind: str, targets: list[int], header: Mapping[str, object] | None = None,
               value: object = None, *, block: bool = True, label: str = "",
               execution_count: int | None = None, output: OutputMode | None = None,
               per_rank: dict[int, object] | None = None, hint: str = "",
               parent: Parent | None = None) -> PxHandle:
        """Send one request to ``targets`` (the plane does the rest) and return its handle.

        ``output``: ``live`` publishes the merged output into the current cell (default when
        ``block``), ``capture`` keeps it on the handle (``--noblock``), ``none`` drops it;
        with output, every rank's whole output is also kept (``hint``: how a user reads it,
        ``{ranks}`` standing for a target spec). ``parent``: the IOPub parent, when not the
        current cell's. Requests whose replies carry values get their share of
        ``max_reply_size`` in the header."""
        header = header or {}
        if kind not in _NO_VALUE_KINDS and "max_bytes" not in header:
            header = {**header, **self.reply_limit.header(len(targets))}
        mode: OutputMode = output or ("live" if block else "capture")
        keep = None if mode == "none" else self.outputs.open(uuid.uuid4().hex, hint)
        request = self.pool.submit(kind, targets, header, value,
                                   parent=self.parent() if parent is None else parent,
                                   output=mode, label=label, per_rank=per_rank, keep=keep)
        request.execution_count = execution_count
        handle = PxHandle(request, self._replay,
                          CellOutputs(request, self.size, self._show_outputs, self.limits))
        if not block:
            self.last = handle
        return handle

    def _replay(self, request: Request) -> None:
        """Publish into the current cell what ``request``'s cell showed (``--noblock``)."""
        parent = self.parent()
        for msg_type, content, metadata in request.captured or []:
            self.publish(msg_type, content, metadata, parent)

    def _show_outputs(self, outputs: dict[int, list[Output]], notice: str = "") -> None:
        """Publish into the current cell these ranks' outputs, then ``notice``, paced by
        the kernel's output budget (jupyter_server would drop a burst silently). Runs in
        the shell's thread (``%pxoutput``), where waiting is fine."""
        parent = self.parent()
        budget = self.pool.budget
        messages = render_outputs(outputs)
        if notice:
            messages.append(("stream", {"name": "stderr", "text": notice + "\n"},
                             {"hpckernel": {"notice": True}}))
        for msg_type, content, metadata in messages:
            size = output_size(content)
            granted = budget.take(size)
            while granted is None:
                time.sleep(0.05)
                granted = budget.take(size)
            if granted < size:
                time.sleep((size - granted) / budget.bytes_per_s)
            self.publish(msg_type, content, metadata, parent)

    # -- one %%px cell -----------------------------------------------------------------

    async def run_cell(self, code: str, options: PxOptions, ns: dict[str, object], *,
                       count: int | None = None, silent: bool = False,
                       parent: Parent | None = None, cell: PxCell | None = None,
                       extra: Mapping[str, object] | None = None) -> PxCell:
        """Run a ``%%px`` cell: resolve its targets, wait for the ranks, send ``--in``
        values, run it, then gather ``--out`` values into ``ns`` (the hub's namespace);
        ``extra`` goes into the ``execute`` request's header.

        Returns once it ran (at once with ``--noblock``); raises ``CellError``, ready for
        the notebook, when it could not run or failed on some rank. ``cell`` is filled in
        as it goes (the provenance record reads it also after a failure)."""
        cell = cell if cell is not None else PxCell()
        parent = self.parent() if parent is None else parent
        try:
            cell.targets = self.resolve(options.targets)
        except TargetError as e:
            raise CellError("TargetError", str(e), [str(e)]) from None
        try:
            await self.ready(parent)
        except LaunchError as e:
            raise CellError("LaunchError", str(e), [str(e), "Fix the cause, then run "
                            "%restart_ranks (or restart the kernel)."]) from None
        cell.block = self.block if options.block is None else options.block
        try:
            if options.ins:
                values = transfer.hub_values(ns, options.ins)
                pushed = self.push(cell.targets, values, options.scatter, parent=parent)
                await asyncio.wrap_future(pushed.request.future)
                pushed.request.raise_for_errors()
        except (TransferError, RemoteError, RanksUnavailable, TypeError) as e:
            raise CellError(type(e).__name__, f"--in: {e}",
                            [f"--in: {e}", "The cell did not run."]) from None
        # extra: what else the ranks need to know of the cell (hub/debugger.py's names);
        # the targets too (as node agents get them): a kernel rank run live takes a
        # safepoint after a cell that ran on every rank only (live/kernel_ranks.py).
        header = {"code": code, "silent": silent, "execution_count": count,
                  "targets": format_sorted(cell.targets), **(extra or {})}
        label = f"[{count}]" if count is not None else "%%px"
        hint = f"%pxoutput {{ranks}} --cell {count}" if count is not None else (
            "_px.display_outputs('{ranks}')")
        cell.handle = handle = self.submit("execute", cell.targets, header, block=cell.block,
                                           label=label, execution_count=count, hint=hint,
                                           parent=parent)
        if self.interrupted_cell is not None and self.interrupted_cell == msg_id(parent):
            self.pool.interrupt()  # the interrupt came before the cell reached the ranks
        self._remember(handle, count)
        ns["_px"] = handle
        if not cell.block:
            return cell
        try:
            await asyncio.wrap_future(handle.request.future)
        except RanksUnavailable as e:
            infos = self.pool.snapshot()
            cell.ranks = provenance.state_ranges(cell.targets, {
                r: infos[r].state if infos[r].state in ("dead", "stuck") else "not run"
                for r in cell.targets})
            raise CellError("RanksUnavailable", str(e), [str(e)]) from None
        error = handle.request.error_content()
        if error is not None:
            raise CellError(error["ename"], error["evalue"], error["traceback"])
        if options.outs:
            try:
                pulled = self.pull(cell.targets, options.outs, options.concat, parent=parent)
                await asyncio.wrap_future(pulled.request.future)
                ns.update(finish_gather(pulled.request, options.outs, options.concat))
            except (TransferError, RemoteError, RanksUnavailable) as e:
                raise CellError(type(e).__name__, f"--out: {e}", [
                    f"--out: {e}", "The cell itself ran; its output is above."]) from None
        return cell

    def _remember(self, handle: PxHandle, count: int | None) -> None:
        self.latest = handle
        if count is not None:
            self.cells[count] = handle.cell
            while len(self.cells) > max(self.outputs.cells, 1):
                self.cells.popitem(last=False)

    def cell(self, count: int | None) -> CellOutputs:
        """The outputs of cell ``In[count]``, or of the last cell run on the ranks."""
        if count is None:
            if self.latest is None:
                raise LookupError("no cell has run on the ranks yet")
            return self.latest.cell
        kept = self.cells.get(count)
        if kept is None:
            known = (f"cells {min(self.cells)}-{max(self.cells)}" if self.cells else "none")
            raise LookupError(f"cell {count} did not run on the ranks, or its output is no "
                              f"longer kept (kept: {known}; HubKernel.output_history)")
        return kept

    async def ready(self, parent: Parent | None) -> None:
        """Wait for the ranks to register; while they start, the cell shows a line that
        turns into the start time once they are up (a display, updated in place)."""
        if self.pool.ready.done():
            self.pool.ready.result()
            return
        display_id = uuid.uuid4().hex
        t0 = time.monotonic()

        def show(text: str, msg_type: str) -> None:
            self.publish(msg_type, {"data": {"text/plain": f"[hpckernel] {text}"},
                                    "metadata": {}, "transient": {"display_id": display_id}},
                         {"hpckernel": {"notice": True}}, parent)

        show(f"waiting for {self.pool.size} ranks to start...", "display_data")
        await asyncio.wrap_future(self.pool.ready)
        show(f"{self.pool.size} ranks started in {time.monotonic() - t0:.1f} s",
             "update_display_data")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the ranks are up (raises why they could not start)."""
        self.pool.ready.result(timeout)

    def run(self, kind: str, targets: list[int], header: Mapping[str, object] | None = None,
            value: object = None) -> list[object]:
        """Synchronous round trip for the ``ranks`` API; raises RemoteError on failure."""
        self.wait_ready()
        handle = self.submit(kind, targets, header, value)
        return handle.result()

    # -- data in and out (transfer.py says how) ----------------------------------------

    def push(self, targets: list[int], values: dict[str, object], scatter: bool = False,
             parent: Parent | None = None) -> PxHandle:
        """Assign ``values`` on ``targets``: the same everywhere, or split with ``scatter``."""
        pieces = transfer.per_rank(values, targets, scatter)
        return self.submit("push", targets, value=None if pieces else values,
                           per_rank=pieces, output="none", label="push", parent=parent)

    def pull(self, targets: list[int], names: list[str], concat: bool = False,
             parent: Parent | None = None) -> PxHandle:
        """Read ``names`` on ``targets``; ``transfer.collect`` turns the reply into lists.
        With ``concat`` the hub briefly holds the parts and their concatenation: each rank
        may send half as much."""
        limit = self.reply_limit.header(len(targets), copies=2 if concat else 1)
        return self.submit("pull", targets, {"names": names, **limit}, output="none",
                           label="pull", parent=parent)

    def gather(self, targets: list[int], names: list[str], concat: bool = False
               ) -> dict[str, object]:
        """Synchronous pull: each name's values (a list, or one array with ``concat``)."""
        self.wait_ready()
        handle = self.pull(targets, names, concat)
        handle.wait()
        return finish_gather(handle.request, names, concat)

    # -- looking into running ranks ------------------------------------------------------

    def live(self, targets: list[int]) -> tuple[list[int], str]:
        """The targets that can answer (not dead or starting), and a note on the others."""
        infos = self.pool.snapshot()
        gone = [infos[r] for r in targets if infos[r].state in ("dead", "starting")]
        live = [r for r in targets if infos[r].state not in ("dead", "starting")]
        return live, describe_unavailable(gone) if gone else ""

    def ask(self, kind: str, targets: list[int], header: Mapping[str, object],
            timeout: float = 10.0) -> Request:
        """A request the ranks' I/O threads answer while the ranks run (``peek``,
        ``where``); a rank silent for ``timeout`` s counts as failed."""
        self.wait_ready()
        handle = self.submit(kind, targets, header, output="none", label=kind)
        if not handle.wait(timeout):
            self.pool.expire(handle.request, f"did not answer within {timeout:g} s (is its "
                             "main thread in C code that holds the GIL?)")
            handle.wait()
        return handle.request


@dataclass
class PxCell:
    """Where a ``%%px`` cell ran and how (filled in by ``PxController.run_cell``)."""

    targets: list[int] | None = None
    block: bool = True
    handle: PxHandle | None = None
    #: the ranks' states when the cell could not run on them (dead, stuck, not run), as
    #: ``provenance.state_ranges`` gives them
    ranks: dict[str, str] = field(default_factory=dict)


class CellError(HubError):
    """A ``%%px`` cell that failed, as the notebook's error output shows it."""

    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(evalue)
        self.ename, self.evalue, self.traceback = ename, evalue, traceback

    def content(self) -> ErrorContent:
        """The ``error`` message's content for the notebook."""
        return {"ename": self.ename, "evalue": self.evalue, "traceback": self.traceback}

    def _render_traceback_(self) -> list[str]:
        # IPython (the %%px magic in hub code) shows this, not the hub's own stack.
        return [*self.traceback, f"{self.ename}: {self.evalue}"]


def finish_gather(request: Request, names: list[str], concat: bool) -> dict[str, object]:
    """The gathered values of a finished pull: lists, or arrays with ``concat``."""
    values = transfer.collect(request, names)
    return {n: transfer.concat(n, v) if concat else v for n, v in values.items()}


__all__ = ["CellError", "CellOutputs", "PxCell", "PxController", "PxHandle", "RemoteError",
           "render_outputs"]
