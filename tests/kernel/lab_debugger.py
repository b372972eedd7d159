"""JupyterLab's debugger, as its package sends it (JupyterLab 4, packages/debugger/src:
``session.ts`` start/stop, ``service.ts`` restoreState/updateBreakpoints/_getAllFrames,
``handler.ts`` the bug icon), driven through any jupyter_client blocking client: the
hpckernel hub, or plain ipykernel as the control."""

from __future__ import annotations

import queue
import time
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient


class LabDebugger:
    """One notebook's debugger panel: requests on the control channel, ``debug_event``s and
    cells on IOPub/shell."""

    def __init__(self, kc: BlockingKernelClient, kernel_name: str = "hpckernel-test") -> None:
        self.kc = kc
        self.kernel_name = kernel_name
        self.seq = 0
        self.events: list[dict[str, Any]] = []  # debug_event contents not consumed yet
        self.iopub: dict[str, list[dict[str, Any]]] = {}  # other IOPub messages by parent
        self.replies: dict[str, dict[str, Any]] = {}
        self.stopped: set[int] = set()  # JupyterLab's model.stoppedThreads

    # -- the wire -------------------------------------------------------------------------

    def request(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float = 60) -> dict[str, Any]:
        """One DAP request as ``session.sendRequest`` sends it; the reply's content."""
        message = {"type": "request", "seq": self.seq, "command": command}
        self.seq += 1
        if arguments is not None:
            message["arguments"] = arguments
        msg = self.kc.session.msg("debug_request", message)
        self.kc.control_channel.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            reply = self.kc.get_control_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                assert reply["msg_type"] == "debug_reply"
                return dict(reply["content"])

    def _pump(self, deadline: float) -> None:
        try:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            return  # the caller's deadline says whether that is a failure
        if msg["msg_type"] == "debug_event":
            event = msg["content"]
            # service.ts: a stopped event replaces the stopped threads; continued drops one.
            if event.get("event") == "stopped":
                self.stopped = {event["body"]["threadId"]}
            elif event.get("event") == "continued":
                self.stopped.discard(event["body"]["threadId"])
            self.events.append(event)
        else:
            self.iopub.setdefault(msg["parent_header"].get("msg_id", ""), []).append(msg)

    def event(self, name: str, timeout: float = 60, **body: Any) -> dict[str, Any]:
        """The next ``debug_event`` called ``name`` whose body has ``body``'s items."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("event") == name and all(
                        event.get("body", {}).get(k) == v for k, v in body.items()):
                    self.events.remove(event)
                    return event
            assert time.monotonic() < deadline, f"no {name} event {body}; got {self.events}"
            self._pump(deadline)

    def execute(self, code: str, store_history: bool = True) -> str:
        return str(self.kc.execute(code, store_history=store_history))

    def finish(self, msg_id: str, timeout: float = 60) -> tuple[dict[str, Any], str]:
        """Wait for a cell's end: its execute reply content and its stream text."""
        deadline = time.monotonic() + timeout
        while not any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                      for m in self.iopub.get(msg_id, [])):
            assert time.monotonic() < deadline, f"cell {msg_id} did not end"
            self._pump(deadline)
        while msg_id not in self.replies:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            self.replies[reply["parent_header"].get("msg_id")] = reply
        text = "".join(m["content"]["text"] for m in self.iopub.pop(msg_id)
                       if m["msg_type"] == "stream")
        return dict(self.replies.pop(msg_id)["content"]), text

    def outputs(self, msg_id: str) -> list[dict[str, Any]]:
        return self.iopub.get(msg_id, [])

    # -- what JupyterLab does ---------------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        """``session.connection = ...``: a bare debugInfo (seq 0, no arguments)."""
        return self.request("debugInfo")

    def start(self) -> dict[str, Any]:
        """The bug icon (handler.ts startDebugger): restoreState(true), which starts the
        session (session.ts start: initialize, attach) when not started, then the panels:
        displayDefinedVariables (inspectVariables) and displayModules (modules)."""
        info = self.request("debugInfo", {})
        assert info["success"], info
        assert not info["body"]["isStarted"]
        init = self.request("initialize", {
            "clientID": "jupyterlab", "clientName": "JupyterLab",
            "adapterID": self.kernel_name, "pathFormat": "path", "linesStartAt1": True,
            "columnsStartAt1": True, "supportsVariableType": True,
            "supportsVariablePaging": True, "supportsRunInTerminalRequest": True,
            "locale": "en"})
        assert init["success"], init
        attach = self.request("attach", {})
        assert attach["success"], attach
        variables = self.request("inspectVariables", {})
        assert variables["success"], variables
        if init["body"].get("supportsModulesRequest"):
            # displayModules reads body.modules (ipykernel's reply has no "success").
            assert isinstance(self.request("modules", {})["body"]["modules"], list)
        return init

    def set_breakpoints(self, code: str, lines: list[int]) -> tuple[str, dict[str, Any]]:
        """A click in a cell's gutter (service.ts updateBreakpoints): dumpCell, debugInfo,
        setBreakpoints. The cell's path and the setBreakpoints reply."""
        dumped = self.request("dumpCell", {"code": code})
        assert dumped["success"], dumped
        path = dumped["body"]["sourcePath"]
        assert self.request("debugInfo", {})["success"]
        reply = self.request("setBreakpoints", {"breakpoints": [{"line": n} for n in lines],
                                                "source": {"path": path},
                                                "sourceModified": False})
        return path, reply

    def current_thread(self) -> int:
        """service.ts _currentThread: the stopped thread, else 1."""
        return next(iter(self.stopped), 1)

    def frames(self) -> list[dict[str, Any]]:
        """_getAllFrames: stackTrace of the current thread."""
        reply = self.request("stackTrace", {"threadId": self.current_thread()})
        assert reply["success"], reply
        return list(reply["body"]["stackFrames"])

    def variables(self, frame: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
        """_onCurrentFrameChanged: scopes of the frame, then variables of each scope; by
        scope name, by variable name."""
        scopes = self.request("scopes", {"frameId": frame["id"]})
        assert scopes["success"], scopes
        found = {}
        for scope in scopes["body"]["scopes"]:
            reply = self.request("variables",
                                 {"variablesReference": scope["variablesReference"]})
            assert reply["success"], reply
            found[scope["name"]] = {v["name"]: v for v in reply["body"]["variables"]}
        return found

    def step(self, command: str) -> dict[str, Any]:
        """continue/next/stepIn/stepOut of the current thread (service.ts)."""
        thread = self.current_thread()
        if command == "continue":
            self.stopped.discard(thread)
        reply = self.request(command, {"threadId": thread})
        assert reply["success"], reply
        return reply

    def stop(self) -> None:
        """The bug icon again (session.ts stop)."""
        assert self.request("disconnect", {"restart": False,
                                           "terminateDebuggee": False})["success"]
