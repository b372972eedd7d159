"""JupyterLab's debugger on the ranks: the requests its debugger package sends, through
jupyter_client, to a 4-rank kernel — and the same sequence to plain ipykernel as the
control, so that the answers a front end relies on are checked against the reference."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.manager import KernelManager

from .conftest import _close
from .harness import Kernel
from .lab_debugger import LabDebugger

#: A cell with a function; the breakpoint is on its ``return`` line (3), where ``y`` is the
#: rank's own value.
CELL = "def f(x):\n    y = x * 10\n    return y\n\nresult = f(rank)\nprint('done', result)\n"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Kernel, LabDebugger]]:
    k = Kernel(tmp_path, ranks=4, extra=["--HubKernel.interrupt_grace=5"])
    lab = LabDebugger(k.kc)
    lab.connect()
    yield k, lab
    _close(k)


def stop_at_breakpoint(lab: LabDebugger, cell: str, line: int) -> tuple[str, str,
                                                                         dict[str, Any]]:
    """Set a breakpoint on ``line`` of ``cell``, run it, wait until it stops there: the
    cell's path, the execute request's id and the top frame."""
    path, reply = lab.set_breakpoints(cell, [line])
    assert reply["success"] and reply["body"]["breakpoints"][0]["verified"], reply
    msg_id = lab.execute(cell)
    stopped = lab.event("stopped")
    assert stopped["body"]["reason"] == "breakpoint"
    top = lab.frames()[0]
    assert (top["line"], top["source"]["path"]) == (line, path), top
    return path, msg_id, top


def check_lab_sequence(lab: LabDebugger, cell: str, expected: dict[str, str]) -> int:
    """What a front end relies on, for any kernel: the session starts, a breakpoint set
    through dumpCell is verified and hit, the frame shows ``expected`` locals, continue
    ends the cell, and inspectVariables lists its globals. The stopped thread's id."""
    lab.start()
    path, msg_id, top = stop_at_breakpoint(lab, cell, 3)
    info = lab.request("debugInfo", {})["body"]
    assert path.startswith(info["tmpFilePrefix"]) and path.endswith(info["tmpFileSuffix"])
    assert lab.current_thread() in info["stoppedThreads"]
    locals_ = lab.variables(top)["Locals"]
    assert {k: locals_[k]["value"] for k in expected} == expected
    # The rich view of a variable, the evaluate dialog, "copy to globals" (service.ts).
    rich = lab.request("richInspectVariables", {"variableName": "y", "frameId": top["id"]})
    assert rich["body"]["data"]["text/plain"] == expected["y"], rich
    evaluated = lab.request("evaluate", {"context": "repl", "expression": "y + 1",
                                         "frameId": top["id"]})
    assert evaluated["body"]["result"] == str(int(expected["y"]) + 1), evaluated
    copied = lab.request("copyToGlobals", {"srcVariableName": "y", "dstVariableName": "y_",
                                           "srcFrameId": top["id"]})
    assert copied["success"], copied
    thread = lab.current_thread()
    lab.step("continue")
    assert lab.event("continued")["body"]["threadId"] == thread
    reply, _ = lab.finish(msg_id)
    assert reply["status"] == "ok", reply
    names = {v["name"]: v for v in lab.request("inspectVariables", {})["body"]["variables"]}
    assert names["result"]["value"] == names["y_"]["value"] == expected["y"]
    return thread


def test_the_same_sequence_against_plain_ipykernel() -> None:
    """The control: ipykernel itself answers JupyterLab's sequence as checked here."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        lab = LabDebugger(kc, "python3")
        lab.connect()
        lab.finish(lab.execute("rank = 3"))
        check_lab_sequence(lab, CELL, {"x": "3", "y": "30"})
        lab.stop()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_breakpoint_stops_rank_0_then_the_rank_pxconfig_names(
        lab: tuple[Kernel, LabDebugger]) -> None:
    kernel, lab_ = lab
    kernel.kc.kernel_info()
    info = kernel.kc.get_shell_msg(timeout=30)["content"]
    assert "debugger" in info["supported_features"]
    assert check_lab_sequence(lab_, CELL, {"x": "0", "y": "0"}) == 1
    threads = lab_.request("threads", {})["body"]["threads"]
    assert {"id": 1, "name": "rank 0"} in threads
    # %pxconfig --debug 2: the next cell stops on rank 2, a thread named for it.
    msg_id = lab_.execute("%pxconfig --debug 2")
    reply, text = lab_.finish(msg_id)
    assert reply["status"] == "ok" and "debugger stops on ranks 2" in text, text
    msg_id = lab_.execute(CELL)
    stopped = lab_.event("stopped")
    assert stopped["body"]["threadId"] == 3
    assert "collective" in stopped["body"]["text"]
    assert {"id": 3, "name": "rank 2"} in lab_.request("threads", {})["body"]["threads"]
    locals_ = lab_.variables(lab_.frames()[0])["Locals"]
    assert (locals_["x"]["value"], locals_["y"]["value"]) == ("2", "20")
    lab_.step("continue")
    reply, text = lab_.finish(msg_id)
    assert reply["status"] == "ok"
    # Every rank finished the cell: the ones not debugged never stopped.
    assert sorted(text.splitlines()) == [f"[stdout:{r}] done {r * 10}" for r in range(4)]
    names = {v["name"]: v for v in lab_.request("inspectVariables", {})["body"]["variables"]}
    assert names["result"]["value"] == "20"  # rank 2's, the debugged rank's


def test_stepping_in_over_and_out_of_a_function(lab: tuple[Kernel, LabDebugger]) -> None:
    _, lab_ = lab
    lab_.start()
    _, msg_id, _ = stop_at_breakpoint(lab_, CELL, 5)  # result = f(rank)

    def step(command: str) -> list[tuple[str, int]]:
        lab_.step(command)
        assert lab_.event("stopped")["body"]["reason"] == "step"
        return [(f["name"], f["line"]) for f in lab_.frames()]

    # Only the cell's frames: IPython's and hpckernel's are not the user's code.
    assert step("stepIn") == [("f", 2), ("<module>", 5)]
    assert step("next") == [("f", 3), ("<module>", 5)]
    assert step("stepOut") == [("<module>", 5)]
    assert step("next") == [("<module>", 6)]
    # Past the cell's end the ranks' machinery runs on without stopping.
    lab_.step("next")
    reply, text = lab_.finish(msg_id)
    assert reply["status"] == "ok" and "[stdout:0] done 0" in text
    assert not [e for e in lab_.events if e["event"] == "stopped"]


def test_interrupt_while_stopped_ends_the_cell_on_every_rank(
        lab: tuple[Kernel, LabDebugger]) -> None:
    kernel, lab_ = lab
    lab_.start()
    _, msg_id, _ = stop_at_breakpoint(lab_, CELL, 3)
    kernel.km.interrupt_kernel()
    reply, text = lab_.finish(msg_id, timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert reply["evalue"].startswith("rank 0: KeyboardInterrupt")
    assert sorted(text.splitlines()) == [f"[stdout:{r}] done {r * 10}" for r in (1, 2, 3)]
    assert lab_.event("continued")["body"]["threadId"] == 1
    assert lab_.request("debugInfo", {})["body"]["stoppedThreads"] == []
    # The rank is still debugged: the same breakpoint stops the next run of the cell.
    msg_id = lab_.execute(CELL)
    assert lab_.event("stopped")["body"]["threadId"] == 1
    lab_.step("continue")
    assert lab_.finish(msg_id)[0]["status"] == "ok"


def test_local_cells_are_debugged_in_the_hub(lab: tuple[Kernel, LabDebugger]) -> None:
    kernel, lab_ = lab
    lab_.start()
    local = "%%local\ndef g(a):\n    b = a + 1\n    return b\n\nprint(g(41))\n"
    _, msg_id, top = stop_at_breakpoint(lab_, local, 4)
    assert lab_.current_thread() == 5  # after the 4 ranks' threads
    threads = lab_.request("threads", {})["body"]["threads"]
    assert {"id": 5, "name": "hub (%%local cells)"} in threads
    assert lab_.variables(top)["Locals"]["b"]["value"] == "42"
    lab_.step("continue")
    reply, text = lab_.finish(msg_id)
    assert reply["status"] == "ok" and text == "42\n"
    # Interrupted while paused, the hub's cell ends and its debugger stays usable.
    _, msg_id, _ = stop_at_breakpoint(lab_, local, 4)
    kernel.km.interrupt_kernel()
    assert lab_.finish(msg_id)[0]["ename"] == "KeyboardInterrupt"
    assert lab_.event("continued")["body"]["threadId"] == 5
    _, msg_id, _ = stop_at_breakpoint(lab_, local, 4)
    lab_.step("continue")
    assert lab_.finish(msg_id)[0]["status"] == "ok"
    # With the debugger off, the hub's main thread (which sends the cells to the ranks)
    # runs untraced again.
    lab_.stop()
    msg_id = lab_.execute("%%local\nimport sys\nprint(sys.gettrace())")
    assert lab_.finish(msg_id)[1] == "None\n"


def test_a_debugged_rank_that_dies_ends_the_session_naming_it(
        lab: tuple[Kernel, LabDebugger]) -> None:
    _, lab_ = lab
    lab_.start()
    msg_id = lab_.execute("import os\nif rank == 0:\n    os._exit(3)")
    assert lab_.finish(msg_id)[0]["ename"] == "RankDied"
    said = lab_.event("output")["body"]
    assert said["category"] == "important"
    assert said["output"].startswith("rank 0 died (exited with code 3)")
    assert lab_.event("thread", reason="exited")["body"]["threadId"] == 1
    lab_.event("terminated")


def test_restarting_the_ranks_ends_the_session_and_breakpoints_stay(
        lab: tuple[Kernel, LabDebugger]) -> None:
    _, lab_ = lab
    lab_.start()
    lab_.set_breakpoints(CELL, [3])
    reply, text = lab_.finish(lab_.execute("%restart_ranks"))
    assert reply["status"] == "ok" and "fresh ranks ready" in text
    assert "rank 0 was restarted" in lab_.event("output")["body"]["output"]
    lab_.event("terminated")
    # The fresh rank 0 is debugged from the next cell on, with the session's breakpoints.
    msg_id = lab_.execute(CELL)
    assert lab_.event("stopped")["body"]["threadId"] == 1
    assert lab_.variables(lab_.frames()[0])["Locals"]["y"]["value"] == "0"
    lab_.step("continue")
    assert lab_.finish(msg_id)[0]["status"] == "ok"


def _listening(pid: int) -> set[tuple[str, str]]:
    """What other processes could connect to: listening TCP sockets, bound UDP sockets,
    Unix sockets with a name in the file system."""
    found = set()
    for conn in psutil.Process(pid).net_connections(kind="all"):
        if conn.family == socket.AF_UNIX:
            if conn.laddr:
                found.add(("unix", str(conn.laddr)))
        elif conn.status == psutil.CONN_LISTEN or conn.type == socket.SOCK_DGRAM:
            found.add((str(conn.type), f"{conn.laddr}"))
    return found


def test_the_debugger_opens_no_port_or_socket_others_could_reach(
        lab: tuple[Kernel, LabDebugger]) -> None:
    """debugpy's pydevd gets an unnamed socket pair (debug/pydevd_link.py): no port, no
    path; the debugged rank (and the hub, for %%local cells) listen on nothing new."""
    kernel, lab_ = lab
    rank0 = kernel.rank_pids()[0]
    before = {pid: _listening(pid) for pid in (rank0, kernel.hub_pid)}
    assert before[kernel.hub_pid], "the probe sees the kernel's own listening ports"
    lab_.start()
    _, msg_id, _ = stop_at_breakpoint(lab_, CELL, 3)
    lab_.step("continue")
    lab_.finish(msg_id)
    lab_.finish(lab_.execute("%%local\nx = 1"))  # the hub's own debugger starts too
    # The debugger runs in the debugged rank only: the others never even import it.
    loaded = lab_.finish(lab_.execute("import sys\nprint('pydevd' in sys.modules)"))[1]
    assert loaded == "[stdout:0] True\n[stdout:1-3] False\n"
    after = {pid: _listening(pid) for pid in (rank0, kernel.hub_pid)}
    assert after == before


def test_several_debugged_ranks_are_shown_one_after_the_other(
        lab: tuple[Kernel, LabDebugger]) -> None:
    _, lab_ = lab
    lab_.finish(lab_.execute("%pxconfig --debug 1,3"))
    lab_.start()
    lab_.set_breakpoints(CELL, [3])
    msg_id = lab_.execute(CELL)
    first = lab_.event("stopped")["body"]["threadId"]
    second = lab_.event("stopped")["body"]["threadId"]
    assert {first, second} == {2, 4}
    seen = []
    for _ in range(2):
        # JupyterLab shows the last stopped thread; continued, the other one comes back.
        thread = lab_.current_thread()
        seen.append(lab_.variables(lab_.frames()[0])["Locals"]["y"]["value"])
        lab_.step("continue")
        lab_.event("continued", threadId=thread)
        if len(seen) == 1:
            assert lab_.event("stopped")["body"]["threadId"] == ({2, 4} - {thread}).pop()
    assert sorted(seen) == ["10", "30"]
    assert lab_.finish(msg_id)[0]["status"] == "ok"
