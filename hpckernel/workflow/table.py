"""Plain views of a workflow: a text table (repr) and an HTML table (the fallback shown where
ipywidgets is not installed or the front end cannot show widgets)."""

from __future__ import annotations

import html
from collections.abc import Mapping

from . import graph
from .spec import Step
from .states import COLOURS, StepStatus

_COLUMNS = ("step", "kind", "after", "state", "job", "detail")


def rows(steps: Mapping[str, Step], statuses: Mapping[str, StepStatus]) -> list[list[str]]:
    """One row per step, in dependency order."""
    out = []
    for name in graph.order(steps):
        step, st = steps[name], statuses[name]
        out.append([name, step.kind, ", ".join(step.after) or "-", st.state,
                    st.job_id or "-", st.detail])
    return out


def text(title: str, steps: Mapping[str, Step], statuses: Mapping[str, StepStatus]) -> str:
    """The workflow as a plain-text table (its repr)."""
    table = [list(_COLUMNS), *rows(steps, statuses)]
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1]
             for r in table]
    return "\n".join([title, *(line.rstrip() for line in lines)])


def to_html(title: str, steps: Mapping[str, Step], statuses: Mapping[str, StepStatus]) -> str:
    """The workflow as an HTML table (for front ends without widgets)."""
    head = "".join(f"<th style='text-align:left'>{c}</th>" for c in _COLUMNS)
    body = []
    for r in rows(steps, statuses):
        cells = [f"<td>{html.escape(c)}</td>" for c in r]
        colour = COLOURS.get(r[3], "#ffffff")
        cells[3] = f"<td style='background:{colour}'>{html.escape(r[3])}</td>"
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<div><b>{html.escape(title)}</b><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")
