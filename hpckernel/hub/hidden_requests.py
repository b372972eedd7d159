"""VS Code's hidden requests: how its variables view and data viewer get their answers.

vscode-jupyter does not ask the kernel protocol for variables: it runs Python of its own
(``execute_request`` with ``store_history: false``, ``silent: false``) and reads the answer
from the output as JSON — printed (``_VSCODE_getVariable``, ``_VSCODE_getDataFrame``, the
pandas version check of its data viewer) or, for its variables view, set from a thread into
a display (``__jupyter_exec_background__``). Run on every rank as cells are, that code would
answer N times, each labelled with its rank, which no JSON parser reads.

The rule (README, "VS Code"): an ``execute_request`` with ``store_history: false`` whose code
calls one of those helpers (:data:`MARKERS`) runs on rank 0 alone, keeps no history there,
and its output reaches the front end as a plain ipykernel's would: unlabelled, in order,
with the threads it starts waited for (up to :data:`JOIN_THREADS` s) so that their display
updates come before the reply. It leaves no provenance record. Every other request —
VS Code's start-up code too, which changes each rank's state — runs as a cell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .messages import Content, ErrorContent, Parent, Publish
from .outputs import Output, RankOutputs
from .px_controller import PxController
from .rank_launchers import LaunchError
from .rank_pool import RanksUnavailable

#: What VS Code's read-only query code contains (vscode-jupyter: pythonFiles/
#: vscode_datascience_helpers, src/standalone/api/kernels/backgroundExecution.ts,
#: src/webviews/extension-side/dataviewer, src/kernels/helpers.node.ts).
MARKERS = ("_VSCODE_getVariable(", "_VSCODE_getDataFrame(", "__jupyter_exec_background__",
           "import pandas as _VSCODE_pandas", "import sys as _VSCODE_sys")
#: Seconds rank 0 waits for the threads a hidden request starts, before it replies.
JOIN_THREADS = 5.0
#: The rank that answers them.
RANK = 0

def is_hidden(code: str, store_history: bool, silent: bool) -> bool:
    """Whether an execute request is one of VS Code's hidden queries (the rule above)."""
    return not store_history and not silent and any(m in code for m in MARKERS)


class _Unlabelled(RankOutputs):
    """Where rank 0's output of a hidden request goes as it arrives: to the front end as it
    is (the merger's labelled copy is dropped). Keeps nothing."""

    def __init__(self, publish: Publish, parent: Parent | None, count: int) -> None:
        self._publish = publish
        self._parent = parent
        self._count = count

    @property
    def group_limit(self) -> int:
        return 0

    def how_to_see(self, ranks: Iterable[int], start: int = 0) -> str:
        return ""

    def add(self, rank: int, output: Output) -> None:
        content = {k: v for k, v in output.items() if k != "output_type"}
        if output["output_type"] == "execute_result":
            content["execution_count"] = self._count
        self._publish(str(output["output_type"]), content, {}, self._parent)


async def run_hidden(px: PxController, publish: Publish, code: str, count: int,
                     parent: Parent | None) -> Content:
    """Run a hidden request on rank 0 (``HubKernel.do_execute``); its execute reply."""
    error: ErrorContent | None = None
    try:
        if not px.pool.ready.done():
            await asyncio.wrap_future(px.pool.ready)
        header = {"code": code, "silent": False, "store_history": False,
                  "execution_count": count, "join_threads": JOIN_THREADS}
        request = px.pool.submit("execute", [RANK], header, parent=parent, output="capture",
                                 label="hidden", keep=_Unlabelled(publish, parent, count))
        await asyncio.wrap_future(request.future)
        reply = request.replies.get(RANK) or {}
        if reply.get("status") != "ok":
            error = {"ename": str(reply.get("ename", "Error")),
                     "evalue": str(reply.get("evalue", "")),
                     "traceback": list(reply.get("traceback") or [])}
    except (RanksUnavailable, LaunchError) as e:  # the front end logs it
        error = {"ename": type(e).__name__, "evalue": str(e), "traceback": [str(e)]}
    if error is not None:
        publish("error", {**error}, {}, parent)
        return {"status": "error", "execution_count": count, **error}
    return {"status": "ok", "execution_count": count, "user_expressions": {}, "payload": []}
