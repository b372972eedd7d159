"""The hub: the Jupyter kernel the notebook talks to, fanning cells out to the ranks.

An ``IPythonKernel`` subclass: ``%%local`` cells, comms/widgets, history and
``is_complete`` are plain ipykernel; ``do_execute`` decides what goes to the ranks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bunch, Instance, Type, observe
from zmq.eventloop.zmqstream import ZMQStream

from .. import __version__, provenance
from ..live.magics import AttachMagics
from ..plane import make_job_dir
from ..plane.headers import PlaneHeader
from ..sizes import parse_size
from ..targets import format_sorted
from ..widgets.magics import JobMagics, LiveMagics
from .allocation import Allocation
from .cell_files import CellFiles, HubCellCompiler
from .cell_routing import HubMagics, MagicUsageError, PxOptions, route_cell, strip_local_marker
from .controllers import Controllers
from .debugger import HubDebugger
from .hidden_requests import is_hidden, run_hidden
from .iopub_safe import safe_content
from .kernel_settings import HubSettings
from .limits import ReplyLimit
from .magics import PxMagics
from .messages import Content, Parent, msg_id
from .outputs import OutputStore
from .px_controller import CellError, PxCell, PxController
from .rank_launchers import RankLauncher
from .rank_pool import RankPool, RanksUnavailable
from .ranks import RankView
from .recorder import Recorder
from .requests import Request
from .usage import Usage


class HubKernel(IPythonKernel, HubSettings):
    """The Jupyter kernel of an hpckernel session (``IPKernelApp.kernel_class``).

    Runs outside MPI, in the kernel process the notebook talks to. It starts the ranks
    (``launcher_class``) and owns the plane to them (``RankPool``); ``do_execute`` routes
    each cell (``cells.route_cell``): ``%%local`` cells and the hub's magics to ipykernel in
    this process, everything else to the ranks through ``PxController.run_cell``, whose
    merged output comes back as IOPub messages. Every cell leaves a provenance record
    (``Recorder``). Interrupts, completion and inspection are forwarded to the ranks.
    """

    implementation = "hpckernel"
    implementation_version = __version__

    launcher = Instance(RankLauncher, allow_none=True)
    # %%local cells are named where a debug session's front end looks for them.
    compiler_class = Type(HubCellCompiler)

    @observe("output_groups", "output_memory", "output_history", "output_disk", "output_page")
    def _output_settings_changed(self, change: Bunch) -> None:
        if getattr(self, "px", None) is not None:  # a change by %config
            self._configure_outputs()

    def _configure_outputs(self) -> None:
        self.outputs.group_limit = self.output_groups
        self.outputs.memory = parse_size(self.output_memory)
        self.outputs.disk = parse_size(self.output_disk)
        self.outputs.cells = self.output_history
        self.px.limits.page = parse_size(self.output_page)

    @observe("max_reply_size")
    def _reply_size_changed(self, change: Bunch) -> None:
        if getattr(self, "px", None) is not None:  # a change by %config, after __init__
            self.px.reply_limit = ReplyLimit.parse(change["new"])
    pool = Instance(RankPool, allow_none=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.launcher = self.launcher_class(parent=self)
        self.job_dir = make_job_dir(self.job_dir_parent or None)
        self.pool = RankPool(self.launcher, self.job_dir, self._publish,
                             self.pool_settings())
        self.outputs = OutputStore(Path(self.job_dir))
        self.px = PxController(self.pool, lambda: self.get_parent("shell"), self._publish,
                               self.outputs)
        self._configure_outputs()
        self.px.reply_limit = ReplyLimit.parse(self.max_reply_size)
        cwd = Path.cwd()
        notebook = provenance.notebook_path(os.environ.get("JPY_SESSION_NAME"), cwd)
        self.recorder = Recorder(Path(self.provenance_log) if self.provenance_log
                                 else provenance.log_path(notebook, cwd),
                                 self._context, notebook)
        assert self.shell is not None
        self.shell.configurables.append(self)  # %config HubKernel.max_reply_size = '8GB'
        self.cells = CellFiles(Path(self.job_dir))
        if isinstance(self.shell.compile, HubCellCompiler):
            self.shell.compile.cells = self.cells
        # Not self.debugger: ipykernel's own (unused here) has that name.
        self.hub_debugger = HubDebugger(self.px, self._publish_debug_event, self.cells,
                                        self.shell, self._control_loop)
        self.usage = Usage()
        self.pool.dap_events = self.hub_debugger.on_event  # debugged ranks' DAP events
        self.controllers = Controllers(self.px)
        self.shell.register_magics(PxMagics(self.shell, self.controllers, self.recorder,
                                            self.hub_debugger), JobMagics, LiveMagics,
                                   AttachMagics)
        self.hub_magics = HubMagics.of(PxMagics, JobMagics, LiveMagics, AttachMagics)
        self.shell.user_ns["ranks"] = RankView(self.px)
        # %%local cells reach IPython whole (so history keeps them as typed); this drops
        # the marker line before IPython compiles them.
        self.shell.input_transformers_cleanup.insert(0, strip_local_marker)
        self._local_running = False
        #: _context's answer, and what it was worked out from (the launch, the probe)
        self._context_memo: tuple[tuple[object, ...], Content] = ((), {})
        self._notices: list[str] = []
        self._last_parent: Parent | None = None
        self.allocation = self.px.allocation = Allocation.from_environment()
        self.pool.start()
        # Probed once, off the kernel's event loop (git may be slow on a network FS).
        self._environment: Future[dict[str, object]] = asyncio.run_coroutine_threadsafe(
            provenance.probe_environment(cwd), self.pool.loop)
        if self.allocation is not None:
            asyncio.run_coroutine_threadsafe(self.allocation.refresh(), self.pool.loop)

    @property
    def banner(self) -> str:  # type: ignore[override]
        """The front end's banner: the ranks, then IPython's."""
        return (f"hpckernel {__version__}: cells run on {self.pool.size if self.pool else '?'}"
                " MPI ranks; %%local runs in the hub.\n" + super().banner)

    def _publish(self, msg_type: str, content: Content, metadata: Content,
                 parent: Parent | None) -> None:
        """Send one IOPub message; called from the plane thread as output arrives. Content
        the JSON packer refuses (lone surrogates, odd objects in metadata) is sent made
        safe (``iopub_safe.py``): a message that cannot go would stall its cell."""
        assert self.session is not None
        try:
            self.session.send(self.iopub_socket, msg_type, content, parent=parent or {},
                              metadata=metadata, ident=self._topic(msg_type))
        except (UnicodeEncodeError, ValueError, TypeError):
            self.session.send(self.iopub_socket, msg_type, safe_content(content),
                              parent=parent or {}, metadata=safe_content(metadata),
                              ident=self._topic(msg_type))

    def notify(self, text: str) -> None:
        """Tell the user something that happened outside any cell (walltime warning): now,
        in the last cell's output, and again at the top of the next cell's output."""
        self._notices.append(text)
        # Sent under the parent of the last cell, the only one a frontend shows outside
        # a request (a signal handler has no parent of its own).
        self._publish("stream", {"name": "stderr", "text": f"[hpckernel] {text}\n"},
                      {"hpckernel": {"notice": True}}, self._last_parent)

    def _flush_notices(self) -> None:
        self._notices.extend(self.outputs.take_late_notices())
        notices, self._notices = self._notices, []
        for text in notices:
            self._publish("stream", {"name": "stderr", "text": f"[hpckernel] {text}\n"},
                          {"hpckernel": {"notice": True}}, self.get_parent("shell"))

    # -- execute -------------------------------------------------------------------------

    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: dict[str, str] | None = None,
                         allow_stdin: bool = False, *, cell_meta: dict[str, object] | None = None,
                         cell_id: str | None = None) -> Content:
        """Run a cell where ``route_cell`` sends it (ipykernel calls this for every
        ``execute_request``); VS Code's hidden queries go to rank 0 alone."""
        parent: Parent = self.get_parent("shell") or {}
        if is_hidden(code, store_history, silent):  # VS Code's variables (hidden_requests.py)
            assert self.shell is not None
            return await run_hidden(self.px, self._publish, code, self.shell.execution_count,
                                    parent)
        self._last_parent = parent
        self._flush_notices()
        record = None if silent else self.recorder.begin(code, cell_id)
        reply, request = await self._execute(code, silent, store_history, user_expressions,
                                             allow_stdin, cell_meta, cell_id, record)
        # A rank's error text may hold what JSON cannot carry: the reply must still go.
        reply = safe_content(reply) if reply.get("status") == "error" else reply
        if record is not None:
            self.recorder.end(record, reply, msg_id(parent) or "", request)
        return reply

    async def _execute(self, code: str, silent: bool, store_history: bool,
                       user_expressions: dict[str, str] | None, allow_stdin: bool,
                       cell_meta: dict[str, object] | None, cell_id: str | None,
                       record: dict[str, object] | None) -> tuple[Content, Request | None]:
        record = record if record is not None else {}
        try:
            route = route_cell(code, self.hub_magics)
        except MagicUsageError as e:
            return self._px_error("UsageError", str(e), [str(e)], silent), None
        if route.kind == "px":
            return await self._execute_px(code, route.code, route.options, silent,
                                          store_history, record)
        record["kind"] = "local" if route.kind == "local" else "magic"
        # Only a cell of the main shell can be interrupted; subshells run in threads.
        main = threading.current_thread() is threading.main_thread()
        self._local_running = self._local_running or main
        debugged = main and route.kind == "local"
        try:
            if debugged:
                await self.hub_debugger.before_local_cell()
            return await super().do_execute(
                code, silent, store_history, user_expressions, allow_stdin,
                cell_meta=cell_meta, cell_id=cell_id), None
        finally:
            if debugged:
                self.hub_debugger.after_local_cell()
            if main:
                self._local_running = False

    async def _execute_px(self, cell: str, body: str, options: PxOptions, silent: bool,
                          store_history: bool, record: dict[str, object]
                          ) -> tuple[Content, Request | None]:
        assert self.shell is not None
        count = self.shell.execution_count
        if store_history and not silent:
            self.shell.history_manager.store_inputs(count, cell)
            self.shell.execution_count += 1
        ran = PxCell()
        try:
            # The lines the hub took off (a %%px line): the debugged ranks count them.
            debug = await self.hub_debugger.px_cell(cell, cell.count("\n", 0,
                                                                    len(cell) - len(body)))
            # The kernel's own ranks, or (``--job``) a live batch job's, attached if need be.
            px = await self.controllers.get_async(options.job)
            record.update(px.context)  # where it runs, if not on the kernel's own ranks
            await px.run_cell(body, options, self.shell.user_ns, count=count, silent=silent,
                              cell=ran, extra=debug)
        except CellError as e:
            if ran.ranks:
                record["ranks"] = ran.ranks
            request = ran.handle.request if ran.handle is not None else None
            return self._px_error(e.ename, e.evalue, e.traceback, silent, count), request
        finally:
            # Ranges, not lists: a record lists no rank one by one (16,384 would be most of
            # the hub's CPU per cell); the same for the reply's metadata.
            record["block"] = ran.block
            record["targets"] = where = (None if ran.targets is None
                                         else format_sorted(ran.targets))
        assert ran.handle is not None
        if not ran.block:
            self._publish("execute_result", {"data": {"text/plain": repr(ran.handle)},
                                             "metadata": {}, "execution_count": count},
                          {}, self.get_parent("shell"))
            return {"status": "ok", "execution_count": count, "user_expressions": {},
                    "payload": []}, ran.handle.request
        return {"status": "ok", "execution_count": count, "user_expressions": {},
                "payload": [], "metadata": {"hpckernel": {"ranks": where}}
                }, ran.handle.request

    def finish_metadata(self, parent: Parent, metadata: Content,
                        reply_content: Content) -> Content:
        """Adds the cell's provenance record to the ``execute_reply`` metadata."""
        metadata = super().finish_metadata(parent, metadata, reply_content)
        record = self.recorder.reply_metadata(msg_id(parent) or "")
        if record is not None:
            metadata["hpckernel"] = {"provenance": record}
        return metadata

    def _context(self) -> Content:
        """Where cells run now: the provenance record's fields that are not the cell's. Read
        twice per cell: the same dict until a launch or the environment probe changes it
        (not a copy of the rank table, at thousands of ranks milliseconds, nor the rest)."""
        assert self.pool is not None and self.session is not None
        env = self._environment
        ready = self.pool.ready
        key = (ready, env.done(), self.pool.mpi_version)
        if self._context_memo[0] == key:
            return self._context_memo[1]
        alloc = self.allocation
        hosts = sorted({i.host for i in self.pool.snapshot() if i.host})
        context: Content = {"size": self.pool.size, "hosts": hosts,
                   "job": {"id": alloc.job_id, "nodes": alloc.nodelist,
                           "partition": alloc.partition} if alloc else None,
                   "mpi": provenance.mpi_summary(self.pool.mpi_version),
                   "environment": env.result() if env.done() and not env.exception() else None,
                   "session": self.session.session}
        if ready.done():  # while ranks start, their hosts are not all known yet
            self._context_memo = (key, context)
        return context

    def _px_error(self, ename: str, evalue: str, traceback: list[str], silent: bool,
                  count: int | None = None) -> Content:
        content: Content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        if not silent:
            self._publish("error", content, {}, self.get_parent("shell"))
        assert self.shell is not None
        return {"status": "error", "execution_count": self.shell.execution_count - 1
                if count is None else count, "user_expressions": {}, "payload": [], **content}

    # -- interrupt, completion, shutdown ---------------------------------------------------

    async def interrupt_request(self, stream: ZMQStream, ident: list[bytes],
                                parent: Parent) -> None:
        """Interrupt busy ranks, and the hub's own code if a %%local cell is running.

        Called on the control thread (the kernelspec uses ``interrupt_mode: message``,
        since a remote hub cannot receive the client's SIGINT)."""
        assert self.pool is not None
        # Whether the hub's own code runs is read first: once the ranks are interrupted the
        # cell may end and the next one start (a %restart_ranks), which this interrupt must
        # not hit.
        local = self._local_running
        # A cell still on its way to the ranks is interrupted as soon as it is sent (named
        # first: the cell looks for it right after it is sent, and this interrupt of what is
        # open may come before that).
        self.px.interrupted_cell = msg_id(self.get_parent("shell"))
        self.pool.interrupt()
        for attached in self.controllers.attached():  # a %%px --job cell running
            attached.pool.interrupt()
        if local:
            await super().interrupt_request(stream, ident, parent)
            return
        assert self.session is not None
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    # -- the debugger and the usage panel ----------------------------------------------

    def _control_loop(self) -> asyncio.AbstractEventLoop:
        """The control thread's loop, where the debugger runs (hub/debugger.py)."""
        return self.control_thread.io_loop.asyncio_loop  # type: ignore[no-any-return]

    async def do_debug_request(self, msg: dict[str, object]) -> dict[str, object]:
        """JupyterLab's and VS Code's debugger, for the debugged ranks (hub/debugger.py)."""
        return await self.hub_debugger.process(msg)

    async def usage_request(self, stream: ZMQStream, ident: list[bytes],
                            parent: Parent) -> None:
        """The hub's CPU and memory, and its ranks' (hub/usage.py)."""
        assert self.pool is not None and self.session is not None
        pool = self.pool
        content = await asyncio.to_thread(lambda: self.usage.content(pool.snapshot()))
        self.session.send(stream, "usage_reply", content, parent, ident)

    async def _ask_rank0(self, kind: str, header: PlaneHeader) -> Content | None:
        assert self.pool is not None
        if not self.pool.ready.done() or self.pool.ready.exception():
            return None
        handle = self.px.submit(kind, [0], header, output="none")
        try:
            request = await asyncio.wait_for(asyncio.wrap_future(handle.request.future), 2.0)
        except asyncio.TimeoutError:
            self.pool.expire(handle.request, "no answer within 2 s")
            return None
        except RanksUnavailable:
            return None
        if request.errors:
            return None
        value = request.values.get(0)
        return value if isinstance(value, dict) else None

    async def do_complete(self, code: str, cursor_pos: int | None) -> Content:
        """Completion in the namespace of rank 0 (of the hub for ``%%local`` cells)."""
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        if route_cell(code, self.hub_magics).kind == "px":
            reply = await self._ask_rank0("complete", {"code": code, "cursor_pos": cursor_pos})
            if reply is not None:
                return reply
        return super().do_complete(code, cursor_pos)  # type: ignore[no-any-return]

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0,
                         omit_sections: Iterable[str] = ()) -> Content:
        """Inspection (shift-tab) in the namespace of rank 0 (of the hub for ``%%local``
        cells)."""
        if route_cell(code, self.hub_magics).kind == "px":
            reply = await self._ask_rank0("inspect", {"code": code, "cursor_pos": cursor_pos,
                                                      "detail_level": detail_level})
            if reply is not None:
                return reply
        return super().do_inspect(  # type: ignore[no-any-return]
            code, cursor_pos, detail_level, omit_sections)

    def do_history(  # type: ignore[override]
            self, hist_access_type: str, output: bool, raw: bool, session: int = 0,
            start: int = 0, stop: int | None = None, n: int | None = None,
            pattern: str | None = None, unique: bool = False) -> Content:
        """ipykernel's history, with the current session's number made absolute."""
        found = super().do_history(
            hist_access_type, output, raw, session, start, stop, n, pattern, unique)
        # (session, line, input or (input, output)) rows, as IPython's history gives them
        rows: list[tuple[object, ...]] = found["history"]
        # IPython numbers the current session 0 in range queries, but absolutely in tail
        # and search: answer with the absolute number, so a client can chain the two.
        assert self.shell is not None
        current = self.shell.history_manager.session_number
        found["history"] = [(current if s == 0 else s, *rest) for s, *rest in rows]
        reply: Content = found
        return reply

    def do_shutdown(self, restart: bool) -> Content:  # type: ignore[override]
        """End the ranks and the hub's stores, then shut ipykernel down."""
        self.stop_ranks()
        self.recorder.close()
        self.outputs.close()
        return super().do_shutdown(restart)  # type: ignore[no-any-return]

    def stop_ranks(self) -> None:
        """End the ranks and remove the job directory (also run at interpreter exit)."""
        if self.pool is not None:
            self.pool.shutdown()
        shutil.rmtree(Path(self.job_dir), ignore_errors=True)
