"""The workflow widget follows the steps (its traitlets, no browser needed) and its buttons
call the same methods as code; without ipywidgets the workflow shows as an HTML table."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hpckernel.workflow import Workflow
from hpckernel.workflow.states import COLOURS

from .conftest import eventually

MakeWorkflow = Callable[..., Workflow]


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
def test_widget_follows_the_steps_and_its_buttons_act(make_workflow: MakeWorkflow) -> None:
    wf = make_workflow("view")
    wf.batch("prep", command="echo prep")
    wf.gate("ok", after=["prep"], note="check prep")
    wf.batch("run", command="echo run", after=["ok"])
    wf.batch("flaky", after=["prep"],
             command="test -e flag || { touch flag; echo failing on purpose; exit 3; }")
    view = wf.widget()
    assert wf.widget() is view
    assert view.states == dict.fromkeys(["prep", "ok", "run", "flaky"], "not submitted")
    # Rows by dependency depth: prep; ok and flaky; run.
    rows = [[v.step for v in row.children] for row in view.rows.children]
    assert rows == [["prep"], ["ok", "flaky"], ["run"]]
    bundle = wf._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "<table>" in bundle[
        "text/html"]

    wf.submit()  # the widget listens: the engine refreshes it in the background
    gate, flaky = view.views["ok"], view.views["flaky"]
    eventually(lambda: view.states.get("ok") == "held" and view.states.get("flaky") == "failed",
               90, "gate held and flaky failed in the widget", show=lambda: (view.states,
                                                                           wf.status()))
    assert gate.action.description == "Continue" and gate.action.layout.display == ""
    assert gate.button.style.button_color == COLOURS["held"]
    assert gate.button.description == "ok · held" and "check prep" in gate.button.tooltip
    assert flaky.action.description == "Resubmit" and flaky.action.layout.display == ""
    assert flaky.button.style.button_color == COLOURS["failed"]
    assert view.views["run"].action.layout.display == "none"

    flaky.button.click()  # a click on a step shows the tail of its output
    assert view.selected == "flaky" and "failing on purpose" in view.tail.value

    gate.action.click()  # Continue == wf.approve("ok")
    assert wf.engine.doc.current("ok").approved  # type: ignore[union-attr]
    assert gate.action.layout.display == "none" and view.states["ok"] != "held"
    # A stale Continue (another kernel approved meanwhile) is refused, shown in the widget.
    gate.action.description = "Continue"
    gate.action.click()
    assert "approved already" in view.message.value
    flaky.action.click()  # Resubmit == wf.resubmit("flaky")
    eventually(lambda: set(view.states.values()) == {"completed"}, 90,
               "every step completed in the widget", show=lambda: view.states)
    assert view.views["run"].button.style.button_color == COLOURS["completed"]
    assert flaky.action.layout.display == "none"
    assert len(wf.engine.doc.runs["flaky"]) == 2
    # Nothing is active any more: the engine stops following the jobs by itself.
    eventually(lambda: wf.engine._watch is None, 10, "the engine's watch closed")


def test_without_ipywidgets_the_workflow_shows_as_an_html_table(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['ipywidgets'] = None  # import ipywidgets now raises ImportError\n"
        "from hpckernel.workflow import Workflow\n"
        f"wf = Workflow('plain', {str(tmp_path / 'plain.workflow.yaml')!r})\n"
        "wf.batch('a', command='true')\n"
        "wf.gate('b', after=['a'])\n"
        "bundle = wf._repr_mimebundle_()\n"
        "print(sorted(bundle))\n"
        "print(bundle['text/html'])\n"
        "print(bundle['text/plain'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=os.environ)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['text/html', 'text/plain']"
    assert "<table>" in lines[1] and ">not submitted</td>" in lines[1]
    assert any(line.split()[:4] == ["b", "gate", "a", "not"] for line in lines[2:])
