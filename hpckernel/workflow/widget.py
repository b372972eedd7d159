"""The live view of a workflow: ipywidgets (imported only when a widget is asked for).

Steps are boxes in rows by dependency depth, coloured by state; a gate waiting for approval
has a Continue button, a failed or cancelled step a Resubmit button, and clicking a step
shows the tail of its output. The buttons run the same `Engine` coroutines as the
`Workflow` methods do.
The view registers as a listener of the engine, which then follows the active steps' jobs
through the process's Slurm poller (a look after 2 s, then 4, 8, ... up to 60 s while nothing
changes; at once after a button or a call) and stops when all have ended; every redraw sets
traitlets on the background loop (ipykernel's IOPub socket may be used from any thread).
When Slurm is busy, the header says so and when the next try comes.
"""

from __future__ import annotations

import html
import logging

import ipywidgets as w
import traitlets

from ..slurm import sync as background
from . import graph
from .engine import Engine
from .states import CANCELLED, COLOURS, FAILED, HELD, NOT_SUBMITTED, StepStatus

log = logging.getLogger(__name__)
TAIL_LINES = 20


class StepView(w.VBox):
    """One step: a coloured button named after it, a line of detail, an action button."""

    state = traitlets.Unicode(NOT_SUBMITTED, help="the step's state as last shown")

    def __init__(self, name: str, **kwargs: object) -> None:
        self.step = name
        self.button = w.Button(description=name, layout=w.Layout(width="190px"))
        self.info = w.HTML(layout=w.Layout(width="190px"))
        self.action = w.Button(layout=w.Layout(width="190px", display="none"))
        super().__init__([self.button, self.info, self.action],
                         layout=w.Layout(margin="4px", border="1px solid #bbb",
                                         padding="2px"), **kwargs)

    def show(self, status: StepStatus) -> None:
        """Draw ``status``: colour, detail line, and the action it allows."""
        self.state = status.state
        self.button.description = f"{self.step} · {status.state}"
        self.button.style.button_color = COLOURS.get(status.state, "#ffffff")
        self.button.tooltip = status.detail or status.state
        job = f"job {status.job_id}" if status.job_id else status.kind
        self.info.value = (f"<small>{html.escape(status.kind)} · {html.escape(job)}<br>"
                           f"{html.escape(status.detail)}</small>")
        action = ""
        if status.kind == "gate" and status.state == HELD:
            action = "Continue"
        elif status.state in (FAILED, CANCELLED):
            action = "Resubmit"
        self.action.description = action
        self.action.button_style = "warning" if action == "Continue" else ""
        self.action.layout.display = "" if action else "none"


class WorkflowWidget(w.VBox):
    """The live view of the workflow `engine` drives; `Workflow.widget()` makes one per
    workflow."""

    states = traitlets.Dict(help="{step: state} as last drawn").tag(sync=True)
    selected = traitlets.Unicode("", help="the step whose output tail is shown")

    def __init__(self, engine: Engine, **kwargs: object) -> None:
        self.engine = engine
        self.header = w.HTML()
        self.message = w.HTML()
        self.tail = w.HTML()
        self.views: dict[str, StepView] = {}
        self.rows = w.VBox()
        super().__init__([self.header, self.rows, self.message, self.tail], **kwargs)
        self._layout()
        engine.listeners.append(self.redraw)
        self.redraw()

    def _layout(self) -> None:
        steps = self.engine.doc.steps
        for name in steps:
            if name not in self.views:
                view = StepView(name)
                view.button.on_click(lambda _b, n=name: self.select(n))
                view.action.on_click(lambda _b, n=name: self.act(n))
                self.views[name] = view
        self.rows.children = [w.HBox([self.views[n] for n in row])
                               for row in graph.levels(steps)]

    def redraw(self) -> None:
        """Show the engine's current statuses (called after every refresh, on its loop)."""
        statuses = self.engine.statuses
        if set(statuses) != set(self.views):
            self._layout()
        for name, view in self.views.items():
            view.show(statuses[name])
        counts: dict[str, int] = {}
        for st in statuses.values():
            counts[st.state] = counts.get(st.state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in counts.items())
        error = self.engine.refresh_error
        trouble = (f"<br><span class='hpc-trouble' style='color:#c62828'>"
                   f"{html.escape(error)}</span>" if error else "")
        doc = self.engine.doc
        self.header.value = (f"<b>workflow {html.escape(doc.name)}</b> "
                             f"<small>{html.escape(summary)} — {html.escape(str(doc.path))}"
                             f"</small>{trouble}")
        self.states = {name: st.state for name, st in statuses.items()}
        if self.selected:
            self._show_tail()

    def select(self, name: str) -> None:
        """Show the output tail of step `name` (a click on its box)."""
        self.selected = name
        self._show_tail()

    def _show_tail(self) -> None:
        name = self.selected
        path = self.engine.log_path(name)
        text = self.engine.log_tail(name, TAIL_LINES)
        self.tail.value = (f"<b>{html.escape(name)}</b> <small>{html.escape(str(path or ''))}"
                           f"</small><pre style='max-height:20em;overflow:auto'>"
                           f"{html.escape(text)}</pre>")

    def act(self, name: str) -> None:
        """The action button of step `name`: Continue approves a gate, Resubmit re-runs."""
        action = self.views[name].action.description
        self.message.value = ""
        try:
            if action == "Continue":
                background.run(self.engine.approve(name))
            elif action == "Resubmit":
                background.run(self.engine.resubmit([name]))
        except Exception as err:  # shown in the widget: a button has no traceback to show
            log.warning("%s %s: %s", action, name, err)
            self.message.value = (f"<span style='color:#c62828'>{html.escape(action)} "
                                  f"{html.escape(name)}: {html.escape(str(err))}</span>")

    def mimebundle(self) -> dict[str, object]:
        """The widget's display data; showing it starts the background refresh."""
        background.call_soon(self.engine.watch)
        bundle = self._repr_mimebundle_()
        return dict(bundle) if bundle else {}

    def close(self) -> None:
        """Stop redrawing, and close the widget."""
        if self.redraw in self.engine.listeners:
            self.engine.listeners.remove(self.redraw)
        super().close()
