"""Widgets of the job magics: ``%squeue``'s table and ``%%sbatch``'s follower.

Every Slurm call runs on the private loop of `hpckernel.slurm.sync` and reports back into a
widget when done: a button's callback never waits on Slurm, so a slow or absent Slurm
cannot freeze the kernel. Failures show as a red line in the widget.
"""

from __future__ import annotations

import asyncio
import getpass
import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ipywidgets as w
import traitlets

from ..slurm import JobInfo, Slurm, SlurmError, format_duration, sync
from ..slurm.jobcontrol import Job, tail
from .fallback import TextFallback

log = logging.getLogger(__name__)
T = TypeVar("T")


def error_html(error: BaseException) -> str:
    return f"<pre style='color:#c00'>{html.escape(str(error))}</pre>"


def run_then(coro: Awaitable[T], done: Callable[[T], None],
             failed: Callable[[BaseException], None]) -> None:
    """Run ``coro`` on the sync loop; then ``done(result)`` or ``failed(error)`` there."""
    async def wrapper() -> None:
        try:
            result = await coro
        except Exception as e:
            failed(e)
            return
        done(result)
    asyncio.run_coroutine_threadsafe(wrapper(), sync.loop())


def show_async(target: w.HTML, coro: Awaitable[str]) -> None:
    """Show the text ``coro`` returns (or its error) in ``target`` once it is done."""
    target.value = "<i>asking Slurm…</i>"
    run_then(coro, lambda text: setattr(target, "value", f"<pre>{html.escape(text)}</pre>"),
             lambda e: setattr(target, "value", error_html(e)))


class SqueueWidget(TextFallback, w.VBox):
    """The user's jobs with a Cancel button each; ``jobs`` lists the ids shown."""

    summary = "Slurm jobs (%squeue)"
    jobs: traitlets.List[str] = traitlets.List(help="ids of the jobs shown").tag(sync=True)

    def __init__(self, slurm: Slurm | None = None, user: str | None = None,
                 **kwargs: Any) -> None:
        self.slurm = slurm or Slurm()
        self.user = user or getpass.getuser()
        self.rows = w.VBox()
        self.message = w.HTML()
        refresh = w.Button(description="Refresh")
        refresh.on_click(lambda _b: self.load())
        super().__init__([self.rows, w.HBox([refresh]), self.message], **kwargs)

    def load(self) -> None:
        self.message.value = "<i>asking Slurm…</i>"
        run_then(self.slurm.jobs(self.user), self.show, self._failed)

    def _failed(self, error: BaseException) -> None:
        self.message.value = error_html(error)

    def show(self, infos: list[JobInfo]) -> None:
        header = w.HTML("<b><tt>" + html.escape(f"{'id':>8} {'name':<16} {'state':<10} "
                                                 f"{'reason':<14} {'nodes':<10} time")
                        + "</tt></b>")
        rows: list[w.Widget] = [header]
        for info in infos:
            used = ("" if info.start_time is None or not info.running
                    else str(info.time_left() or ""))
            text = (f"{info.job_id:>8} {info.name[:16]:<16} {info.state:<10} "
                    f"{(info.reason or '')[:14]:<14} {info.nodelist[:10]:<10} "
                    f"{used or (format_duration(info.time_limit) if info.time_limit else '')}")
            cancel = w.Button(description="Cancel", layout=w.Layout(width="80px"))
            cancel.on_click(lambda _b, job_id=info.job_id: self.cancel(job_id))
            rows.append(w.HBox([w.HTML(f"<tt>{html.escape(text)}</tt>"), cancel]))
        self.rows.children = rows
        self.jobs = [i.job_id for i in infos]
        self.message.value = "" if infos else f"<i>no jobs of {html.escape(self.user)}</i>"

    def cancel(self, job_id: str) -> None:
        self.message.value = f"cancelling {html.escape(job_id)}…"
        run_then(self.slurm.cancel(job_id), lambda _r: self.load(), self._failed)


class SbatchWidget(TextFallback, w.VBox):
    """Follows a submitted job to its end, then shows its output's tail; Resubmit."""

    summary = "Slurm job follower (%%sbatch)"
    state = traitlets.Unicode(help="the job's last state").tag(sync=True)
    job_id = traitlets.Unicode(help="the job followed").tag(sync=True)

    def __init__(self, job: Job | None, error: BaseException | None = None,
                 **kwargs: Any) -> None:
        self.status = w.HTML()
        self.output = w.HTML()
        self.resubmit_button = w.Button(description="Resubmit",
                                        layout=w.Layout(display="none"))
        self.resubmit_button.on_click(lambda _b: self.resubmit())
        super().__init__([self.status, self.output, self.resubmit_button], **kwargs)
        self.job = job
        if error is not None:
            self.state = "ERROR"
            self.status.value = error_html(error)
        elif job is not None:
            self.follow(job)

    def follow(self, job: Job) -> None:
        self.job, self.job_id, self.state = job, job.id, "SUBMITTED"
        self.output.value = ""
        self.resubmit_button.layout.display = "none"
        self.status.value = f"job {html.escape(job.id)} submitted"
        asyncio.run_coroutine_threadsafe(self._follow(job), sync.loop())

    async def _follow(self, job: Job) -> None:
        try:
            while True:
                info = await job.slurm.job(job.id)
                if info is None:
                    raise SlurmError(f"job {job.id} vanished from Slurm while followed")
                self.state = info.state
                reason = info.reason_text or info.reason or ""
                self.status.value = html.escape(
                    f"job {job.id}: {info.state}" + (f" ({reason})" if reason else ""))
                if info.ended:
                    break
                await asyncio.sleep(job.slurm.poll_interval)
            text = tail(info)
            self.output.value = f"<pre>{html.escape(text)}</pre>"
        except Exception as e:
            log.info("following job %s failed: %s", job.id, e)
            self.status.value += error_html(e)
        if job.script is not None:
            self.resubmit_button.layout.display = ""

    def resubmit(self) -> None:
        job = self.job
        assert job is not None and job.script is not None
        run_then(job.slurm.submit(job.script, list(job.options)),
                 lambda job_id: self.follow(Job(job_id, job.script, job.options, job.slurm)),
                 lambda e: setattr(self.status, "value", error_html(e)))
