"""The kernel's debugger, as JupyterLab and VS Code speak to it (DAP in ``debug_request``
and ``debug_event``, as ipykernel answers it), for the debugged ranks.

The hub answers the session's own requests (``initialize``, ``attach``, ``debugInfo``,
``dumpCell``, breakpoints, ``threads``) and passes the others to the process they concern:
each debugged rank (rank 0 unless ``%pxconfig --debug`` says otherwise), and the hub itself
while a ``%%local`` cell runs. Each of them is one DAP thread, ``rank N``; ids of frames
and variables are the hub's own (``dap_ids.py``). Breakpoints are kept here and given to
every process that attaches later (another rank, fresh ranks after a restart).

Everything here runs on the kernel's control thread (its event loop): requests come there,
and events, from the plane thread or the hub's own debugger thread, are passed there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..debug.cell_lines import LeadingLines
from ..debug.dap import DapMessage, member, members, number, response, text
from .cell_files import HASH_SEED, SUFFIX, CellFiles
from .dap_ids import HUB, Key, RefIds, ThreadIds
from .debug_endpoints import Endpoint, LocalEndpoint, RankEndpoint

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .px_controller import PxController

log = logging.getLogger(__name__)
T = TypeVar("T")

#: What the hub's debugger supports (debugpy's adapter's list, which ipykernel passes on).
CAPABILITIES: DapMessage = {
    "supportsConfigurationDoneRequest": True, "supportsConditionalBreakpoints": True,
    "supportsHitConditionalBreakpoints": True, "supportsEvaluateForHovers": True,
    "supportsSetVariable": True, "supportsSetExpression": True,
    "supportsExceptionInfoRequest": True, "supportsExceptionOptions": True,
    "supportsValueFormattingOptions": True, "supportsLogPoints": True,
    "supportsModulesRequest": True, "supportsCompletionsRequest": True,
    "supportsClipboardContext": True, "supportsDelayedStackTraceLoading": True,
    "supportsFunctionBreakpoints": True, "supportsTerminateRequest": False,
    "exceptionBreakpointFilters": [
        {"filter": "raised", "label": "Raised Exceptions", "default": False},
        {"filter": "uncaught", "label": "Uncaught Exceptions", "default": True},
        {"filter": "userUnhandled", "label": "User Uncaught Exceptions", "default": False}],
}

#: The session's own requests; the others go to the process they concern.
_OWN = frozenset({"initialize", "attach", "configurationDone", "debugInfo", "dumpCell",
                  "setBreakpoints", "setExceptionBreakpoints", "setFunctionBreakpoints",
                  "threads", "disconnect", "source", "inspectVariables", "modules"})
#: Answered also when no session is started (as ipykernel does).
_STATIC = frozenset({"debugInfo", "dumpCell", "inspectVariables", "richInspectVariables",
                     "modules", "copyToGlobals", "initialize", "disconnect"})
#: Arguments that name a frame or variable of some process.
_REFS = ("frameId", "variablesReference", "srcFrameId")

CAVEAT = ("a rank paused in the debugger holds up the ranks that wait for it in an MPI "
          "collective or receive; they go on when it does")


class HubDebugger:
    """The debug session of one kernel (see the module docstring)."""

    def __init__(self, px: PxController, publish: Callable[[DapMessage], None],
                 cells: CellFiles, shell: InteractiveShell,
                 loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.px = px
        self.publish = publish
        self.cells = cells
        self.shell = shell
        self._loop = loop
        self.ranks: list[int] = [0]  # the debugged ranks (%pxconfig --debug)
        self.started = False
        self.endpoints: dict[Key, Endpoint] = {}  # attached
        self.local: LocalEndpoint | None = None
        #: source path -> its breakpoints (DAP ``SourceBreakpoint``s), for processes that
        #: attach later
        self.breakpoints: dict[str, list[DapMessage]] = {}
        self.exception_breakpoints: DapMessage | None = None  # the last request's arguments
        self.stopped: dict[int, DapMessage] = {}  # thread id -> its stopped event
        self.threads = ThreadIds(px.size)
        self.refs = RefIds()
        self.timeout = 30.0  # seconds a rank may take to answer
        self.just_my_code = True
        self._attach_lock: asyncio.Lock | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lines = LeadingLines(shell)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The control thread's loop, where the session's state is kept and changed."""
        return self._loop()

    def on_loop(self, coro: Coroutine[object, None, T]) -> asyncio.Future[T]:
        """Run ``coro`` on the debugger's loop; await the result from any loop."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    # -- the front end's requests ---------------------------------------------------------

    async def process(self, request: DapMessage) -> DapMessage:
        """Answer one DAP request (``HubKernel.do_debug_request``, on the control loop)."""
        command = text(request, "command")
        try:
            if not self.started and command not in _STATIC:
                reply = response(request, message="the debugger is not started (send "
                                 "initialize and attach first)")
            elif command in _OWN:
                reply = await getattr(self, f"_on_{command}")(request)
            else:
                reply = await self._route(request)
        except Exception as e:
            log.exception("debug request %s failed", command)
            reply = response(request, message=f"{type(e).__name__}: {e}")
        return {**reply, "type": "response", "seq": request.get("seq", 0),
                "request_seq": request.get("seq", 0), "command": command}

    async def _on_initialize(self, request: DapMessage) -> DapMessage:
        self.started = True
        return response(request, dict(CAPABILITIES))

    async def _on_attach(self, request: DapMessage) -> DapMessage:
        failed = await self._attach_ranks()
        self.publish({"type": "event", "event": "initialized", "seq": 0})
        if failed:
            return response(request, message="; ".join(failed))
        return response(request)

    async def _on_configurationDone(self, request: DapMessage) -> DapMessage:
        return response(request)  # each process was configured as it attached

    async def _on_debugInfo(self, request: DapMessage) -> DapMessage:
        return response(request, {
            "isStarted": self.started, "hashMethod": "Murmur2", "hashSeed": HASH_SEED,
            "tmpFilePrefix": self.cells.prefix, "tmpFileSuffix": SUFFIX,
            "breakpoints": [{"source": path, "breakpoints": points}
                            for path, points in self.breakpoints.items()],
            "stoppedThreads": sorted(self.stopped), "richRendering": True,
            "exceptionPaths": ["Python Exceptions"], "copyToGlobals": True})

    async def _on_dumpCell(self, request: DapMessage) -> DapMessage:
        code = text(member(request, "arguments"), "code")
        return response(request, {"sourcePath": await asyncio.to_thread(self.cells.dump, code)})

    async def _on_setBreakpoints(self, request: DapMessage) -> DapMessage:
        arguments = member(request, "arguments")
        path = text(member(arguments, "source"), "path")
        wanted = members(arguments, "breakpoints")
        reply = await self._to_all(request)
        if reply is None:  # nothing attached yet: verified when a process attaches
            reply = response(request, {"breakpoints": [
                {"verified": True, "line": b.get("line"), "source": {"path": path}}
                for b in wanted]})
        if reply.get("success"):
            # pydevd may move a breakpoint to the next line with code: keep where it is.
            found = members(member(reply, "body"), "breakpoints")
            wanted = [{**b, "line": f.get("line", b.get("line"))}
                      for b, f in zip(wanted, found, strict=False)] + wanted[len(found):]
        if wanted:
            self.breakpoints[path] = wanted
        else:
            self.breakpoints.pop(path, None)
        return reply

    async def _on_setExceptionBreakpoints(self, request: DapMessage) -> DapMessage:
        self.exception_breakpoints = dict(member(request, "arguments"))
        return await self._to_all(request) or response(request, {"breakpoints": []})

    async def _on_setFunctionBreakpoints(self, request: DapMessage) -> DapMessage:
        return await self._to_all(request) or response(request, {"breakpoints": []})

    async def _on_threads(self, request: DapMessage) -> DapMessage:
        return response(request, {"threads": [
            {"id": self.threads.thread(key), "name": self.threads.name(key)}
            for key in self._keys_in_order() if self.endpoints[key].main_thread is not None]})

    async def _on_disconnect(self, request: DapMessage) -> DapMessage:
        endpoints = list(self.endpoints.values())
        self.endpoints.clear()
        await asyncio.gather(*(e.request({"command": "disconnect", "seq": 0,
                                          "arguments": {}}) for e in endpoints))
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.started = False
        self.breakpoints.clear()
        self.exception_breakpoints = None
        self.stopped.clear()
        self.refs = RefIds()
        return response(request)

    async def _on_source(self, request: DapMessage) -> DapMessage:
        path = text(member(member(request, "arguments"), "source"), "path")
        content = await asyncio.to_thread(_read, path) if path else None
        if content is not None:
            return response(request, {"content": content})
        return await self._route(request)  # a file of a rank's node

    async def _on_inspectVariables(self, request: DapMessage) -> DapMessage:
        key = self._default()
        if self.threads.thread(key) not in self.stopped:
            self.refs.forget(key)  # the last snapshot's references: replaced by this one
        return await self._route(request)

    async def _on_modules(self, request: DapMessage) -> DapMessage:
        return await self._route(request)

    # -- routing ----------------------------------------------------------------------------

    def _default(self) -> Key:
        """Where a request that names no thread, frame or variable goes: the process shown
        stopped (the last one), else the first debugged rank."""
        if self.stopped:
            key = self.threads.key(next(reversed(self.stopped)))
            if key is not None:
                return key
        return min(self.ranks)

    async def _route(self, request: DapMessage) -> DapMessage:
        arguments = dict(member(request, "arguments"))
        key: Key | None = None
        if "threadId" in arguments:
            key = self.threads.key(arguments["threadId"])
            endpoint = self.endpoints.get(key) if key is not None else None
            if endpoint is None or endpoint.main_thread is None:
                return response(request, message=f"no thread {arguments['threadId']}")
            arguments["threadId"] = endpoint.main_thread
        for name in _REFS:
            if arguments.get(name):
                found = self.refs.inward(arguments[name])
                if found is None:
                    return response(request, message=f"{name} {arguments[name]} is no longer "
                                    "valid (the thread ran on)")
                key, arguments[name] = found
        if key is None:
            key = self._default()
        endpoint = self.endpoints.get(key) or self._endpoint(key)
        reply = await endpoint.request({**request, "arguments": arguments})
        return self._outward(key, reply)

    def _outward(self, key: Key, reply: DapMessage) -> DapMessage:
        """``reply`` with ``key``'s ids turned into the front end's."""
        body = reply.get("body")
        if not isinstance(body, dict):
            return reply
        refs = self.refs
        for frame in members(body, "stackFrames"):
            frame["id"] = refs.outward(key, frame.get("id"))
        for item in [*members(body, "scopes"), *members(body, "variables"), body]:
            if "variablesReference" in item:
                item["variablesReference"] = refs.outward(key, item["variablesReference"])
        if "allThreadsContinued" in body:
            body["allThreadsContinued"] = False  # one rank goes on, not the others
        return reply

    def _endpoint(self, key: Key) -> Endpoint:
        """An endpoint for ``key``, attached or not (for requests ipykernel answers with no
        session: the namespace's variables, modules)."""
        if key == HUB:
            return self._local()
        return RankEndpoint(self.px, int(key), self.timeout)

    def _local(self) -> LocalEndpoint:
        if self.local is None:
            self.local = LocalEndpoint(self, self.shell)
        return self.local

    def _keys_in_order(self) -> list[Key]:
        return sorted(self.endpoints, key=lambda k: (k == HUB, k if k != HUB else 0))

    async def _to_all(self, request: DapMessage) -> DapMessage | None:
        """Send ``request`` to every attached process; the first one's response (the
        default process's, if attached), or None if none is attached."""
        keys = self._keys_in_order()
        if not keys:
            return None
        replies = await asyncio.gather(*(self.endpoints[k].request(request) for k in keys))
        by_key = dict(zip(keys, replies, strict=True))
        return by_key.get(self._default()) or replies[0]

    # -- attaching processes ----------------------------------------------------------------

    async def _attach_ranks(self) -> list[str]:
        """Attach the debugged ranks not attached yet, detach the others; what failed."""
        if self._attach_lock is None:
            self._attach_lock = asyncio.Lock()
        async with self._attach_lock:
            for key in [k for k in self.endpoints if k != HUB and k not in self.ranks]:
                await self._detach(key)
            try:
                await asyncio.wrap_future(self.px.pool.ready)
            except Exception as e:  # LaunchError: the cell says it; nothing to debug
                return [f"the ranks are not running ({e})"]
            wanted = [r for r in self.ranks if r not in self.endpoints]
            results = await asyncio.gather(*(self._attach(self._endpoint(r)) for r in wanted))
        if self.endpoints and self._watch is None:
            self._watch = asyncio.ensure_future(self._watch_ranks())
        return [why for why in results if why]

    async def _attach(self, endpoint: Endpoint) -> str:
        """Start debugging ``endpoint``'s process, with the session's breakpoints; "" if it
        worked, else why not."""
        name = self.threads.name(endpoint.key)
        steps: list[tuple[str, DapMessage]] = [
            ("initialize", {"clientID": "hpckernel", "adapterID": "python",
                            "pathFormat": "path", "linesStartAt1": True,
                            "columnsStartAt1": True}),
            ("attach", {"justMyCode": self.just_my_code, "rules": _machinery_rules(),
                        "stopAllThreadsOnSuspend": False, "showReturnValue": True})]
        if self.exception_breakpoints is not None:
            steps.append(("setExceptionBreakpoints", self.exception_breakpoints))
        steps += [("setBreakpoints", {"source": {"path": path}, "breakpoints": points})
                  for path, points in self.breakpoints.items()]
        steps.append(("configurationDone", {}))
        for command, arguments in steps:
            reply = await endpoint.request({"type": "request", "seq": 0, "command": command,
                                            "arguments": arguments})
            if not reply.get("success"):
                self.endpoints.pop(endpoint.key, None)
                return f"{name}: {command} failed: {reply.get('message')}"
            if command == "attach":
                endpoint.main_thread = number(member(reply, "body"), "mainThreadId")
                endpoint.pid = number(member(reply, "body"), "pid")
                # From now on its thread may stop: its events must find it.
                self.endpoints[endpoint.key] = endpoint
        return ""

    async def _detach(self, key: Key) -> None:
        endpoint = self.endpoints.pop(key)
        await endpoint.request({"type": "request", "seq": 0, "command": "disconnect",
                                "arguments": {}})
        self._thread_gone(key)

    async def _watch_ranks(self) -> None:
        """End the session of a debugged rank that died or was restarted (every 0.5 s)."""
        while True:
            await asyncio.sleep(0.5)
            table = self.px.pool.table
            for key, endpoint in list(self.endpoints.items()):
                if key == HUB:
                    continue
                info = table[int(key)]
                if info.state == "dead":
                    self._lost(key, f"rank {key} died ({info.reason})")
                elif info.state == "starting" or info.pid != endpoint.pid:
                    self._lost(key, f"rank {key} was restarted")

    def _lost(self, key: Key, why: str) -> None:
        """``key``'s process is gone: the front end's session of it ends, naming it."""
        self.endpoints.pop(key, None)
        self._thread_gone(key)
        self.publish({"type": "event", "event": "output", "seq": 0, "body": {
            "category": "important", "output": f"{why}: its debug session ended\n"}})
        self.publish({"type": "event", "event": "thread", "seq": 0, "body": {
            "reason": "exited", "threadId": self.threads.thread(key)}})
        self.publish({"type": "event", "event": "terminated", "seq": 0, "body": {}})

    def _thread_gone(self, key: Key) -> None:
        self.refs.forget(key)
        thread = self.threads.thread(key)
        if self.stopped.pop(thread, None) is not None:
            self.publish({"type": "event", "event": "continued", "seq": 0,
                          "body": {"threadId": thread, "allThreadsContinued": False}})

    # -- events of the processes ------------------------------------------------------------

    def on_event(self, key: Key, event: Mapping[str, object]) -> None:
        """A DAP event of ``key``'s main thread (any thread; handled on the loop)."""
        self.loop.call_soon_threadsafe(self._event, key, event)

    def _event(self, key: Key, event: Mapping[str, object]) -> None:
        if key not in self.endpoints:
            return  # of a process detached meanwhile
        thread = self.threads.thread(key)
        body: DapMessage = {**member(event, "body"), "threadId": thread}
        if event.get("event") == "stopped":
            name = self.threads.name(key)
            body.update(allThreadsStopped=False,
                        description=f"Paused on {body.get('reason', 'breakpoint')} ({name})",
                        text=f"{name} is paused: {CAVEAT}")
            stopped: DapMessage = {"type": "event", "event": "stopped", "seq": 0, "body": body}
            self.stopped.pop(thread, None)
            self.stopped[thread] = stopped
            self.publish(stopped)
        elif event.get("event") == "continued":
            self.refs.forget(key)
            if self.stopped.pop(thread, None) is None:
                return
            self.publish({"type": "event", "event": "continued", "seq": 0,
                          "body": {"threadId": thread, "allThreadsContinued": False}})
            if self.stopped:
                # A front end that shows one stopped thread (JupyterLab) shows the next.
                self.publish(self.stopped[next(reversed(self.stopped))])

    # -- cells (HubKernel) --------------------------------------------------------------------

    def set_ranks(self, ranks: list[int]) -> None:
        """The ranks to debug from the next cell on (``%pxconfig --debug``)."""
        self.ranks = sorted(set(ranks))

    async def px_cell(self, cell: str, offset: int) -> dict[str, object]:
        """Before a cell runs on the ranks (on the shell's loop): the debugged ranks
        attached, and the ``execute`` header fields that name the cell for them."""
        if not self.started:
            return {}
        for failed in await self.on_loop(self._attach_ranks()):
            log.warning("debugger: %s", failed)
        return {"debug_path": self.cells.path(cell), "debug_offset": offset}

    async def before_local_cell(self) -> None:
        """Before a ``%%local`` cell (on the shell's loop): the hub attached if a session is
        on, and its main thread traced (it is not otherwise)."""
        if not self.started:
            return
        if HUB not in self.endpoints:
            await self.on_loop(self._attach(self._local()))
        if HUB in self.endpoints and self.local is not None:
            self._lines.keep(True)
            self.local.target.trace_main()

    def after_local_cell(self) -> None:
        """After a ``%%local`` cell: the hub's main thread (its asyncio loop, which sends
        the cells to the ranks) runs untraced again."""
        if self.local is not None:
            self.local.target.untrace_main()
            self.local.target.settle_main()
            self._lines.keep(False)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _machinery_rules() -> list[DapMessage]:
    """Code a debugged cell steps over, never into: IPython, ipykernel and hpckernel."""
    import ipykernel
    import IPython

    import hpckernel

    return [{"path": str(Path(m.__file__ or "").parent), "include": False}
            for m in (hpckernel, IPython, ipykernel)]
