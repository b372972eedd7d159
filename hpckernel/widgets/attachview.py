"""The Attach button's outcome in ``%squeue`` and the workflow widget: attach to the live
job (in a thread: it asks Slurm and connects), then show its dashboard (``%dashboard
--job``) and how to reach the handle from code."""

from __future__ import annotations

import html
import threading

import ipywidgets as w


class AttachArea(w.VBox):
    """Where an attached job's dashboard shows (empty until an Attach button is pressed)."""

    def __init__(self, **kwargs: object) -> None:
        self.line = w.HTML()
        self.shown: list[w.Widget] = []
        super().__init__([self.line], **kwargs)

    def attach(self, job_id: str) -> None:
        """Attach to ``job_id`` and show its dashboard; errors as a red line."""
        self.line.value = f"<i>attaching to job {html.escape(job_id)}…</i>"
        threading.Thread(target=self._attach, args=(job_id,), daemon=True,
                         name=f"hpckernel-attach-{job_id}").start()

    def _attach(self, job_id: str) -> None:
        from ..live.client import attach
        from .panel import Dashboard

        try:
            job = attach(job_id)
        except Exception as e:  # shown in the widget: a button has no traceback to show
            self.line.value = f"<span style='color:#c62828'>{html.escape(str(e))}</span>"
            return
        for child in self.shown:
            child.close()
        self.line.value = (f"attached to live job <b>{html.escape(job_id)}</b>: "
                           f"<code>job = hpckernel.attach({job_id!r})</code>, or "
                           f"<code>%%px --job {html.escape(job_id)}</code>")
        self.shown = [Dashboard(job.px)]
        self.children = [self.line, *self.shown]
