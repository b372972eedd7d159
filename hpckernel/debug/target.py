"""One process's debuggee: a rank, or the hub for ``%%local`` cells.

The hub sends it DAP requests (a rank's I/O thread passes them on; the hub's own come from
its control thread); a thread of its own answers them, with pydevd for what concerns the
main thread (breakpoints, stacks, stepping, evaluation in a frame) and, as ipykernel does
itself, the shell's namespace for the rest: ``inspectVariables``, and ``variables``,
``richInspectVariables``, ``modules`` while the main thread is not stopped. Its events
(``stopped``, ``continued`` of the main thread) go to ``notify``.
"""

from __future__ import annotations

import ast
import logging
import os
import queue
import select
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from .dap import DapMessage, member, members, number, response, text
from .pydevd_link import DebuggerUnavailable, PydevdLink
from .variables import NamespaceExplorer, shown

log = logging.getLogger(__name__)

#: What the caller names a request by (a plane request's id, a future's number): passed back.
Tag = TypeVar("Tag")
#: respond(tag, response): the answer to the request submitted with ``tag``.
Respond = Callable[[Tag, DapMessage], None]
#: notify(event): a DAP event of the main thread.
Notify = Callable[[DapMessage], None]


def mark_untraced(thread: threading.Thread) -> None:
    """Keep pydevd away from ``thread``: never traced, stopped or listed (ipykernel marks its
    own threads the same way)."""
    thread.pydev_do_not_trace = True  # type: ignore[attr-defined]
    thread.is_pydev_daemon_thread = True  # type: ignore[attr-defined]


class DebugTarget(Generic[Tag]):
    """Answers the hub's DAP requests for this process (see the module docstring).

    ``submit`` may be called from any thread; ``trace_main``/``untrace_main`` from the main
    thread only, around the cells it runs."""

    def __init__(self, user_ns: Callable[[], dict[str, object]], respond: Respond[Tag],
                 notify: Notify, expressions: Callable[[dict[str, str]], dict[str, object]]
                 ) -> None:
        self.user_ns = user_ns
        self.expressions = expressions  # shell.user_expressions, for rich values at rest
        self.respond = respond
        self.notify = notify
        self.link = PydevdLink()
        self.attached = False
        self.stopped = False  # the main thread, at a breakpoint or step
        self.main_thread_id: int | None = None  # pydevd's DAP id of the main thread
        self.broken = ""  # why there is no debugger here (debugpy missing)
        self._inbox: queue.SimpleQueue[tuple[Tag, DapMessage]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._pending: dict[int, Callable[[DapMessage], None]] = {}
        self._seq = 0
        self._explorer: NamespaceExplorer | None = None
        self._traced = False
        self._thread = threading.Thread(target=self._run, name="hpckernel-debugger",
                                        daemon=True)
        mark_untraced(self._thread)
        self._thread.start()

    # -- any thread -----------------------------------------------------------------------

    def submit(self, tag: Tag, request: DapMessage) -> None:
        """Answer ``request`` (a DAP request) through ``respond(tag, response)``."""
        self._inbox.put((tag, request))
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    # -- the main thread ------------------------------------------------------------------

    def trace_main(self) -> None:
        """Before a cell: trace the main thread if a session is attached, else make sure it
        is not traced."""
        self.settle_main()
        if self.attached:
            self.link.trace_current_thread()
            self._traced = True
        elif self._traced:
            self.untrace_main()

    def untrace_main(self) -> None:
        """After a ``%%local`` cell, or before a cell with no session: the main thread runs
        at full speed again."""
        self.link.untrace_current_thread()
        self._traced = False

    def settle_main(self) -> None:
        """The main thread runs this, so it is not stopped: if pydevd thinks so, a
        KeyboardInterrupt ended a stop without its knowledge (the hub's ``%%local``
        cells): let pydevd know, and the front end."""
        if self.link.main_thread_suspended():
            self.link.resume_main_thread()
            self._main_continued()

    def interrupt(self) -> None:
        """The SIGINT handler's first step, before it raises ``KeyboardInterrupt`` in the
        main thread: if pydevd holds the thread at a breakpoint, mark it running, so that
        the exception leaves pydevd's wait loop with pydevd's state consistent (it stops
        tracing the thread, which ``trace_main`` resumes at the next cell)."""
        if self.attached and self.link.main_thread_suspended():
            self.link.resume_main_thread()
            self._main_continued()

    # -- the debugger's thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.link.start()
        except (DebuggerUnavailable, OSError) as e:
            self.broken = str(e)
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self.link.sock is not None:
            poller.register(self.link.sock.fileno(), select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                    self._drain()
                    continue
                try:
                    messages = self.link.receive()
                except (EOFError, OSError, ValueError) as e:
                    log.error("the debugger's connection failed: %s", e)
                    self.broken = f"the debugger stopped ({e})"
                    poller.unregister(fd)
                    continue
                for message in messages:
                    self._from_pydevd(message)

    def _drain(self) -> None:
        while True:
            try:
                tag, request = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                if self.broken:
                    raise DebuggerUnavailable(self.broken)
                handler = getattr(self, f"_on_{request.get('command')}", None)
                if handler is not None:
                    handler(tag, request)
                else:
                    self._forward(tag, request)
            except Exception as e:
                log.debug("debug request %s failed", request.get("command"), exc_info=True)
                self.respond(tag, response(request, message=f"{type(e).__name__}: {e}"))

    def _forward(self, tag: Tag, request: DapMessage,
                 then: Callable[[DapMessage], None] | None = None) -> None:
        """Send ``request`` to pydevd; its response goes to ``then`` (default: back to the
        hub, with the hub's ``seq``)."""
        self._seq += 1
        seq = request.get("seq", 0)

        def answer(reply: DapMessage) -> None:
            reply["request_seq"] = seq
            if then is not None:
                then(reply)
            else:
                self.respond(tag, reply)

        self._pending[self._seq] = answer
        self.link.send({**request, "type": "request", "seq": self._seq})

    def _from_pydevd(self, message: DapMessage) -> None:
        if message.get("type") == "response":
            seq = message.get("request_seq", -1)
            answer = self._pending.pop(seq, None) if isinstance(seq, int) else None
            if answer is not None:
                try:
                    answer(message)
                except Exception:
                    log.exception("handling pydevd's %s response", message.get("command"))
            return
        if message.get("type") != "event":
            return
        body = member(message, "body")
        if message.get("event") == "stopped" and body.get("threadId") == self.main_thread_id:
            self.stopped = True
            self.notify(message)
        elif message.get("event") == "continued" and (
                body.get("threadId") == self.main_thread_id or body.get("allThreadsContinued")):
            self._main_continued()

    def _main_continued(self) -> None:
        if self.stopped:
            self.stopped = False
            self.notify({"type": "event", "event": "continued", "seq": 0,
                         "body": {"threadId": self.main_thread_id,
                                  "allThreadsContinued": False}})

    # -- requests answered here -----------------------------------------------------------

    def _on_attach(self, tag: Tag, request: DapMessage) -> None:
        arguments = {**member(request, "arguments"), "stopAllThreadsOnSuspend": False}

        def attached(reply: DapMessage) -> None:
            if not reply.get("success"):
                self.respond(tag, reply)
                return

            def main_thread(threads: DapMessage) -> None:
                name = threading.main_thread().name
                for thread in members(member(threads, "body"), "threads"):
                    if thread.get("name") == name:
                        self.main_thread_id = number(thread, "id")
                self.attached = True
                self.respond(tag, {**reply, "body": {"mainThreadId": self.main_thread_id,
                                                     "pid": os.getpid()}})

            self._forward(tag, {"command": "threads", "seq": request.get("seq", 0)},
                          main_thread)

        self._forward(tag, {**request, "arguments": arguments}, attached)

    def _on_disconnect(self, tag: Tag, request: DapMessage) -> None:
        # Never the debuggee's end: a rank outlives every debug session.
        arguments = {"restart": False, "terminateDebuggee": False}

        def detached(reply: DapMessage) -> None:
            self.attached = False
            self._main_continued()
            self.respond(tag, reply)

        self._forward(tag, {**request, "arguments": arguments}, detached)

    def _on_terminate(self, tag: Tag, request: DapMessage) -> None:
        self.respond(tag, response(request, message="the kernel's processes are not ended "
                                   "by the debugger: interrupt or restart the kernel"))

    def _on_inspectVariables(self, tag: Tag, request: DapMessage) -> None:
        self._explorer = NamespaceExplorer(self.user_ns())
        self.respond(tag, response(request, {"variables": self._explorer.children(None)}))

    def _on_variables(self, tag: Tag, request: DapMessage) -> None:
        if not self.stopped:
            ref = number(member(request, "arguments"), "variablesReference")
            found = self._explorer.children(ref) if self._explorer is not None else []
            self.respond(tag, response(request, {"variables": found}))
            return

        def filtered(reply: DapMessage) -> None:
            body = member(reply, "body")
            body["variables"] = [v for v in members(body, "variables")
                                 if shown(str(v["name"]))]
            self.respond(tag, reply)

        self._forward(tag, request, filtered)

    def _on_richInspectVariables(self, tag: Tag, request: DapMessage) -> None:
        arguments = member(request, "arguments")
        name = text(arguments, "variableName")
        if not name.isidentifier():
            ok = name in ("special variables", "function variables")
            self.respond(tag, response(request, {"data": {}, "metadata": {}},
                                       None if ok else f"{name!r} is not a variable name"))
            return
        if not self.stopped:
            result = member(self.expressions({name: name}), name)
            data, metadata = ((member(result, "data"), member(result, "metadata"))
                              if result.get("status") == "ok" else ({}, {}))
            self.respond(tag, response(request, _rich(data, metadata)))
            return

        def rich(reply: DapMessage) -> None:
            if not reply.get("success"):
                self.respond(tag, response(request, message=str(reply.get("message",
                                                                          "failed"))))
                return
            result = member(reply, "body").get("result")
            data: object = {}
            metadata: object = {}
            try:
                if isinstance(result, str):
                    data, metadata = ast.literal_eval(result)
            except (ValueError, SyntaxError, TypeError):
                pass
            if not (isinstance(data, dict) and isinstance(metadata, dict)):
                data, metadata = {}, {}
            self.respond(tag, response(request, _rich(data, metadata)))

        self._forward(tag, {"command": "evaluate", "seq": request.get("seq", 0), "arguments": {
            "expression": f"get_ipython().display_formatter.format({name})",
            "frameId": arguments.get("frameId"), "context": "clipboard"}}, rich)

    def _on_copyToGlobals(self, tag: Tag, request: DapMessage) -> None:
        arguments = member(request, "arguments")
        src, dst = arguments.get("srcVariableName", ""), arguments.get("dstVariableName", "")
        if not (str(src).isidentifier() and str(dst).isidentifier()):
            self.respond(tag, response(request, message="dstVariableName and srcVariableName "
                                       "must be valid identifiers"))
            return

        def copied(reply: DapMessage) -> None:
            self.respond(tag, {**reply, "command": request.get("command")})

        self._forward(tag, {"command": "setExpression", "seq": request.get("seq", 0),
                            "arguments": {"expression": f"globals()['{dst}']", "value": src,
                                          "frameId": arguments.get("srcFrameId")}}, copied)

    def _on_modules(self, tag: Tag, request: DapMessage) -> None:
        modules: list[DapMessage] = []
        for index, module in enumerate(list(sys.modules.values())):
            origin = getattr(getattr(module, "__spec__", None), "origin", None)
            if origin and origin.endswith(".py"):
                modules.append({"id": index, "name": module.__name__, "path": origin})
        self.respond(tag, response(request, {"modules": modules,
                                             "totalModules": len(modules)}))

    def _on_source(self, tag: Tag, request: DapMessage) -> None:
        path = text(member(member(request, "arguments"), "source"), "path")
        if path and Path(path).is_file():
            content = Path(path).read_text(encoding="utf-8", errors="replace")
            self.respond(tag, response(request, {"content": content}))
        else:
            self._forward(tag, request)


def _rich(data: dict[str, object], metadata: dict[str, object]) -> DapMessage:
    return {"data": data, "metadata": {k: v for k, v in metadata.items() if k in data}}

