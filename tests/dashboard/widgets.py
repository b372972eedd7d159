"""Reading ipywidgets' comm traffic of a real kernel, as a frontend would."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.kernel.harness import Kernel


class Comms:
    """Every widget model the kernel opened, with its state kept up to date."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.state: dict[str, dict[str, Any]] = {}
        self.updates: dict[str, list[dict[str, Any]]] = {}
        #: custom messages (the live plot's new points) per widget, with their size in bytes
        self.custom: dict[str, list[tuple[dict[str, Any], int]]] = {}

    def take(self, msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "comm_open":
            comm_id = content["comm_id"]
            self.state[comm_id] = dict(content["data"].get("state", {}))
            self.updates[comm_id] = [dict(self.state[comm_id])]
        elif msg["msg_type"] == "comm_msg" and content["data"].get("method") == "update":
            comm_id = content["comm_id"]
            self.state.setdefault(comm_id, {}).update(content["data"]["state"])
            self.updates.setdefault(comm_id, []).append(content["data"]["state"])
        elif msg["msg_type"] == "comm_msg" and content["data"].get("method") == "custom":
            self.custom.setdefault(content["comm_id"], []).append(
                (content["data"]["content"], len(json.dumps(content))))

    def run(self, code: str, timeout: float = 60) -> dict[str, Any]:
        """Run a cell, keeping every comm message meanwhile (also those of widgets that
        update from their own threads, whatever cell they are parented to); the reply."""
        kc = self.kernel.kc
        msg_id = kc.execute(code)
        deadline = time.monotonic() + timeout
        while True:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self.take(msg)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                break
        while True:
            reply: dict[str, Any] = kc.get_shell_msg(
                timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply

    def wait(self, check: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
        """Read IOPub until ``check()`` holds (messages are the clock, not sleeps)."""
        deadline = time.monotonic() + timeout
        while not check():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}: {self.state}"
            try:
                self.take(self.kernel.kc.get_iopub_msg(timeout=min(left, 1.0)))
            except Exception:  # queue.Empty: nothing yet
                continue

    def models(self, name: str) -> list[str]:
        """Comm ids of the models of ``_model_name``/``_view_name`` name."""
        return [c for c, s in self.state.items()
                if name in (s.get("_model_name"), s.get("_view_name"))]

    def find(self, **state: Any) -> str:
        found = [c for c, s in self.state.items()
                 if all(s.get(k) == v for k, v in state.items())]
        assert found, f"no widget with {state}"
        return found[-1]

    def click(self, comm_id: str) -> None:
        """What a browser sends when a Button is clicked."""
        msg = self.kernel.kc.session.msg("comm_msg", {
            "comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}})
        self.kernel.kc.shell_channel.send(msg)
