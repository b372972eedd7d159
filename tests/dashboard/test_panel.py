"""%dashboard on a real kernel: its rank table follows running cells; its buttons act."""

from __future__ import annotations

from tests.kernel.harness import Kernel

from .widgets import Comms


def _panel(comms: Comms) -> tuple[str, str]:
    """(the Dashboard's comm id, its rank table's)."""
    panel = next(c for c, s in comms.state.items() if "states" in s)
    table = next(c for c, s in comms.state.items()
                 if "hpc-ranks" in str(s.get("value", "")))
    return panel, table


def test_dashboard_follows_a_running_cell(kernel: Kernel) -> None:
    comms = Comms(kernel)
    comms.run("%dashboard")
    panel, table = _panel(comms)
    assert comms.state[panel]["states"] == ["idle"] * 4
    assert "<b>local</b> · 4 ranks · MPI: " in str(comms.state)
    assert "(ranks started by mpiexec)" in str(comms.state)  # and the library's name
    comms.run("%%px --noblock --targets 1:3\nimport time\ntime.sleep(4)")
    comms.wait(lambda: comms.state[panel]["states"] == ["idle", "busy", "busy", "idle"],
               what="ranks 1-2 busy")
    label = comms.state[table]["value"]
    assert "<td>[" in label  # the running cell's label, e.g. [2]
    comms.wait(lambda: comms.state[panel]["states"] == ["idle"] * 4, what="all idle again")


def test_dashboard_buttons_interrupt_and_restart(kernel: Kernel) -> None:
    comms = Comms(kernel)
    comms.run("%%local\nimport hpckernel\nhpckernel.dashboard()")
    panel, _ = _panel(comms)
    pids = kernel.rank_pids()
    comms.run("%%px --noblock\nimport time\ntime.sleep(120)")
    comms.wait(lambda: comms.state[panel]["states"] == ["busy"] * 4, what="busy ranks")
    comms.click(comms.find(description="Interrupt"))
    comms.wait(lambda: comms.state[panel]["states"] == ["idle"] * 4,
               what="idle after the Interrupt button")
    result = kernel.run("%pxresult")
    assert result.status == "error" and "KeyboardInterrupt" in str(result.content)
    comms.click(comms.find(description="Restart ranks"))
    comms.wait(lambda: any(s.get("value") == "4 fresh ranks ready"
                           for s in comms.state.values()), what="the restart's end")
    assert set(kernel.rank_pids()).isdisjoint(pids)
    comms.click(comms.find(description="sacct details"))
    comms.wait(lambda: "not in a Slurm job" in str(comms.state), what="the sacct answer")
