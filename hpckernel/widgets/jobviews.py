"""Widgets of the job magics: ``%squeue``'s table and ``%%sbatch``'s follower.

Both follow their jobs through the process's `hpckernel.slurm.Poller` — one filtered squeue a
round for every widget and workflow of the kernel, 2 s, 4 s, ... up to 60 s apart while
nothing changes — and redraw from its callbacks on the private loop of
`hpckernel.slurm.sync`: a button's callback never waits on Slurm, so a slow or absent Slurm
cannot freeze the kernel. Their actions (Cancel, Refresh, Resubmit) make the poller look at
once. A live job's row (a directory of it in the job root: ``live/files.py``) has an
Attach button, which shows the job's dashboard below the table (``attachview.py``). A busy
Slurm shows as a line saying when the next try comes (the `trouble` trait); failures as a
red line.
"""

from __future__ import annotations

import asyncio
import html
import logging

import ipywidgets as w
import traitlets

from ..live.files import live_jobs
from ..slurm import JobInfo, Poller, Slurm, SlurmError, Snapshot, Watch, format_duration
from ..slurm.jobcontrol import Job, tail
from .attachview import AttachArea
from .fallback import TextFallback
from .slurm_answers import error_html, run_then, trouble_html

log = logging.getLogger(__name__)


class SqueueWidget(TextFallback, w.VBox):
    """This user's jobs (`squeue --me`), kept up to date, with a Cancel button each and an
    Attach button for live ones (``python -m hpckernel.live``); ``jobs`` lists the ids
    shown, ``live`` those that are live."""

    summary = "Slurm jobs (%squeue)"
    jobs: traitlets.List[str] = traitlets.List(help="ids of the jobs shown").tag(sync=True)
    live: traitlets.List[str] = traitlets.List(
        help="ids of the jobs shown that a notebook can attach to").tag(sync=True)
    trouble = traitlets.Unicode(help="why Slurm could not be asked, and when it is tried "
                                "again (empty while it answers)").tag(sync=True)

    def __init__(self, slurm: Slurm | None = None, **kwargs: object) -> None:
        self.slurm = slurm or Slurm()
        self.poller = Poller.of(self.slurm)
        self.header = w.HTML("<b><tt>" + html.escape(
            f"{'id':>8} {'name':<16} {'state':<10} {'reason':<14} {'nodes':<10} time")
            + "</tt></b>")
        self.rows = w.VBox([self.header])
        self._rows: dict[str, tuple[w.HBox, w.HTML]] = {}
        self.message = w.HTML()
        self.attached = AttachArea()
        self._watch: Watch | None = None
        refresh = w.Button(description="Refresh")
        refresh.on_click(lambda _b: self.load())
        super().__init__([self.rows, w.HBox([refresh]), self.message, self.attached],
                         **kwargs)

    def load(self) -> None:
        """Follow the jobs (the first time), and look at once."""
        if self._watch is None:
            self.message.value = "<i>asking Slurm…</i>"
            self._watch = self.poller.watch(mine=True, callback=self._update)
        else:
            self.poller.poke()

    def _update(self, snapshot: Snapshot) -> None:
        self.trouble = snapshot.trouble
        if snapshot.mine is not None:
            self.show(list(snapshot.mine))
        if snapshot.trouble:
            self.message.value = trouble_html(snapshot.trouble)

    def _failed(self, error: BaseException) -> None:
        self.message.value = error_html(error)

    def show(self, infos: list[JobInfo]) -> None:
        """Redraw the table: rows of jobs still listed are updated in place (no new
        widgets each round), rows of jobs gone are closed."""
        live = live_jobs() if any(i.running for i in infos) else set()
        for info in infos:
            text = f"<tt>{html.escape(_row(info))}</tt>"
            if info.job_id in self._rows:
                row, line = self._rows[info.job_id]
                line.value = text
                row.children[-1].layout.display = "" if info.job_id in live else "none"
                continue
            cancel = w.Button(description="Cancel", layout=w.Layout(width="80px"))
            cancel.on_click(lambda _b, job_id=info.job_id: self.cancel(job_id))
            attach = w.Button(description="Attach", tooltip="attach this notebook to the "
                              "live job", button_style="info", layout=w.Layout(
                                  width="80px",
                                  display="" if info.job_id in live else "none"))
            attach.on_click(lambda _b, job_id=info.job_id: self.attached.attach(job_id))
            line = w.HTML(text)
            self._rows[info.job_id] = (w.HBox([line, cancel, attach]), line)
        listed = [i.job_id for i in infos]
        self.live = [j for j in listed if j in live]
        for job_id in set(self._rows) - set(listed):
            box = self._rows.pop(job_id)[0]
            for child in box.children:
                child.close()
            box.close()
        self.rows.children = [self.header, *(self._rows[j][0] for j in listed)]
        self.jobs = listed
        self.message.value = "" if infos else "<i>no jobs of yours in the queue</i>"

    def cancel(self, job_id: str) -> None:
        """scancel ``job_id`` (its Cancel button); the message line says how it went."""
        self.message.value = f"cancelling {html.escape(job_id)}…"

        def done(_result: None) -> None:
            self.message.value = f"job {html.escape(job_id)} cancelled"
            self.poller.poke()

        run_then(self.slurm.cancel(job_id), done, self._failed)

    def close(self) -> None:
        """Stop following the jobs, and close the widget."""
        if self._watch is not None:
            self._watch.close()
        super().close()


def _row(info: JobInfo) -> str:
    remaining = info.time_left() if info.start_time is not None and info.running else None
    left = format_duration(remaining) if remaining is not None else ""
    limit = format_duration(info.time_limit) if info.time_limit else ""
    return (f"{info.job_id:>8} {info.name[:16]:<16} {info.state:<10} "
            f"{(info.reason or '')[:14]:<14} {info.nodelist[:10]:<10} {left or limit}")


class SbatchWidget(TextFallback, w.VBox):
    """Follows a submitted job to its end, then shows its output's tail; Resubmit."""

    summary = "Slurm job follower (%%sbatch)"
    state = traitlets.Unicode(help="the job's last state").tag(sync=True)
    job_id = traitlets.Unicode(help="the job followed").tag(sync=True)
    trouble = traitlets.Unicode(help="why Slurm could not be asked, and when it is tried "
                                "again (empty while it answers)").tag(sync=True)

    def __init__(self, job: Job | None, error: BaseException | None = None,
                 **kwargs: object) -> None:
        self.status = w.HTML()
        self.output = w.HTML()
        self.resubmit_button = w.Button(description="Resubmit",
                                        layout=w.Layout(display="none"))
        self.resubmit_button.on_click(lambda _b: self.resubmit())
        super().__init__([self.status, self.output, self.resubmit_button], **kwargs)
        self.job = job
        self._watch: Watch | None = None
        if error is not None:
            self.state = "ERROR"
            self.status.value = error_html(error)
        elif job is not None:
            self.follow(job)

    def follow(self, job: Job) -> None:
        """Show ``job`` from now on (a new submission, or a resubmitted one)."""
        self.job, self.job_id, self.state = job, job.id, "SUBMITTED"
        self.output.value = ""
        self.resubmit_button.layout.display = "none"
        self.status.value = f"job {html.escape(job.id)} submitted"
        if self._watch is not None:
            self._watch.close()
        self._watch = Poller.of(job.slurm).watch(
            [job.id], callback=lambda snapshot: self._update(job, snapshot))

    def _update(self, job: Job, snapshot: Snapshot) -> None:
        if job is not self.job:
            return  # a round for the job followed before a resubmit
        self.trouble = snapshot.trouble
        if job.id not in snapshot.jobs:  # not known yet: Slurm did not answer
            if snapshot.trouble:
                self.status.value = (f"job {html.escape(job.id)} submitted · "
                                     + trouble_html(snapshot.trouble))
            return
        info = snapshot.jobs[job.id]
        if info is None:
            self._stop(job)
            self.status.value += error_html(
                SlurmError(f"job {job.id} vanished from Slurm while followed"))
            return
        self.state = info.state
        reason = info.reason_text or info.reason or ""
        self.status.value = (html.escape(f"job {job.id}: {info.state}"
                                         + (f" ({reason})" if reason else ""))
                             + (" · " + trouble_html(snapshot.trouble)
                                if snapshot.trouble else ""))
        if info.ended:
            self._stop(job)
            # The output file may be large: read its tail off the poller's loop.
            asyncio.get_running_loop().run_in_executor(None, self._show_tail, job, info)

    def _stop(self, job: Job) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if job.script is not None:
            self.resubmit_button.layout.display = ""

    def _show_tail(self, job: Job, info: JobInfo) -> None:
        try:
            text = tail(info)
        except Exception as e:
            log.info("reading the output of job %s failed: %s", job.id, e)
            self.status.value += error_html(e)
            return
        if job is self.job:
            self.output.value = f"<pre>{html.escape(text)}</pre>"

    def resubmit(self) -> None:
        """Submit the same script and options again (its Resubmit button)."""
        job = self.job
        assert job is not None and job.script is not None
        run_then(job.slurm.submit(job.script, list(job.options)),
                 lambda job_id: self.follow(Job(job_id, job.script, job.options, job.slurm)),
                 lambda e: setattr(self.status, "value", error_html(e)))

    def close(self) -> None:
        """Stop following the job, and close the widget."""
        if self._watch is not None:
            self._watch.close()
        super().close()
