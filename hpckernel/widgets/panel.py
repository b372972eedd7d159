"""``%dashboard``: the kernel at a glance, refreshed about once a second.

Job id, partition, nodes (from the hub's `Allocation`, "local" outside Slurm), a walltime
bar, and one row per rank (state, the cell it runs, CPU %, RSS) read from ``pool.snapshot()``
by a hub thread of the panel's own, never from the ranks' shells, so it keeps moving while
cells run: none of that asks Slurm. The job's state comes from the process's Slurm poller,
which follows the job with every other widget's jobs (rounds 2 s -> 60 s apart while nothing
changes). Its buttons call what the interrupt request, ``%restart_ranks`` and ``%sacct``
call.
"""

from __future__ import annotations

import html
import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

import ipywidgets as w
import traitlets

from ..slurm import Poller, Snapshot, Watch
from .fallback import TextFallback
from .sacct import sacct_text
from .slurm_answers import show_async, trouble_html

if TYPE_CHECKING:
    from ..hub.px_controller import PxController
    from ..hub.rank_pool import RankInfo

log = logging.getLogger(__name__)
COLOURS = {"idle": "#2ca02c", "busy": "#1f77b4", "starting": "#999", "stuck": "#ff7f0e",
           "dead": "#d62728"}



def rank_table(infos: list[RankInfo]) -> str:
    """The ranks as an HTML table: state, cell, CPU, memory, host."""
    rows = "".join(
        f"<tr><td>{i.rank}</td><td style='color:{COLOURS.get(i.state, '#000')}'>"
        f"<b class='hpc-state'>{i.state}</b></td><td>{html.escape(i.cell) or '-'}</td>"
        f"<td>{i.usage()[0]}</td><td>{i.usage()[1]}</td><td>{html.escape(i.host)}</td>"
        f"<td>{html.escape(i.reason)}</td></tr>" for i in infos)
    return ("<table class='hpc-ranks'><tr><th>rank</th><th>state</th><th>cell</th>"
            "<th>CPU %</th><th>RSS</th><th>host</th><th>note</th></tr>" + rows + "</table>")


class Dashboard(TextFallback, w.VBox):
    """The panel; ``close()`` (or the kernel's end) stops its refresh thread."""

    summary = "hpckernel dashboard"
    states: traitlets.List[str] = traitlets.List(
        help="each rank's state as last shown").tag(sync=True)

    def __init__(self, px: PxController, interval: float = 1.0, **kwargs: object) -> None:
        self.px = px
        self.pool = px.pool
        self.interval = interval
        self.job = w.HTML()
        self.walltime = w.FloatProgress(min=0.0, max=1.0, value=0.0,
                                        description="walltime", bar_style="info",
                                        layout=w.Layout(display="none"))
        self.table = w.HTML()
        self.message = w.HTML()
        buttons = []
        actions = [("Interrupt", self._interrupt), ("Restart ranks", self._restart),
                   ("sacct details", self._sacct)]
        for label, action in actions if self.pool.restartable else actions[::2]:
            button = w.Button(description=label)
            button.on_click(lambda _b, act=action: act())
            buttons.append(button)
        self.details = w.HTML()
        super().__init__([self.job, self.walltime, self.table, w.HBox(buttons), self.message,
                          self.details], **kwargs)
        self._job_state = "RUNNING"  # the hub runs in it; the poller says more
        self._trouble = ""
        self._watch: Watch | None = None
        if px.allocation is not None:
            self._watch = Poller.of(px.allocation.slurm).watch([px.allocation.job_id],
                                            callback=self._slurm_says)
        self.refresh()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpckernel-dashboard",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.wait(self.interval):  # the period, not a synchronisation
            try:
                self.refresh()
            except Exception:  # the panel must outlive a bad refresh
                log.exception("dashboard refresh failed")

    def refresh(self) -> None:
        """Redraw from the hub's rank table and the job's last known state."""
        alloc = self.px.allocation
        mpi = html.escape(self.pool.describe())
        if alloc is None:
            self.job.value = f"<b>local</b> · {self.pool.size} ranks · {mpi}"
        else:
            self.job.value = (f"<b>Slurm job {html.escape(alloc.job_id)}</b> · partition "
                              f"{html.escape(alloc.partition or '?')} · nodes "
                              f"{html.escape(alloc.nodelist or '?')} · "
                              f"{html.escape(self._job_state)} · {mpi}"
                              + (f" · {trouble_html(self._trouble)}"
                                 if self._trouble else ""))
            left, limit = alloc.time_left(), alloc.limit
            if left is not None:
                self.walltime.layout.display = ""
                self.walltime.max = limit or max(left, 1.0)
                self.walltime.value = left
                self.walltime.description = f"{int(left) // 60} min left"
        infos = self.pool.snapshot()
        self.table.value = rank_table(infos)
        self.states = [i.state for i in infos]  # last: a client seeing it sees the table

    def _slurm_says(self, snapshot: Snapshot) -> None:
        """The poller's round (on its thread): the job's state, or why Slurm is silent."""
        alloc = self.px.allocation
        info = snapshot.jobs.get(alloc.job_id) if alloc is not None else None
        if info is not None:
            self._job_state = info.state
        self._trouble = snapshot.trouble

    def _interrupt(self) -> None:
        self.pool.interrupt()
        self.message.value = "interrupt sent to the busy ranks"

    def _restart(self) -> None:
        self.message.value = "restarting the ranks…"
        done = self.pool.restart()

        def finished(f: Future[None]) -> None:
            error = f.exception()
            self.message.value = html.escape(f"restart failed: {error}" if error else
                                             f"{self.pool.size} fresh ranks ready")
        done.add_done_callback(finished)

    def _sacct(self) -> None:
        alloc = self.px.allocation
        if alloc is None:
            self.details.value = "<i>not in a Slurm job: no accounting</i>"
            return
        show_async(self.details, sacct_text(alloc.job_id))

    def close(self) -> None:
        """Stop the refreshing and following, and close the widget."""
        self._closed.set()
        if self._watch is not None:
            self._watch.close()
        super().close()
