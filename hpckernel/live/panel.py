"""``%dashboard --job JOBID``: an attached live job's state and each rank's CPU and memory,
as the node agents last reported them (refreshed every second from a thread of its own)
and the job's end with Slurm's state the moment the handle learns it."""

from __future__ import annotations

import html
import json
import threading
from typing import Any

import ipywidgets as w

from ..targets import parse_ranks
from ..widgets.fallback import TextFallback
from .client import JobEnded, LiveJob


def _table(summary: dict[str, Any]) -> str:
    rows = []
    nodes = {str(r): n for r, n in summary.get("nodes", {}).items()}
    for ranks, load in summary.get("loads", {}).values():
        for rank, (cpu, rss) in zip(parse_ranks(ranks), json.loads(load), strict=False):
            rows.append((rank, nodes.get(str(rank), ""), cpu, rss))
    body = "".join(f"<tr><td>{r}</td><td>{html.escape(n)}</td><td>{c:.0f} %</td>"
                   f"<td>{s / 2**20:.0f} MiB</td></tr>" for r, n, c, s in sorted(rows))
    return ("<table><tr><th>rank</th><th>node</th><th>CPU</th><th>RSS</th></tr>"
            f"{body}</table>")


class JobPanel(TextFallback, w.VBox):
    """The dashboard of one attached live job."""

    def __init__(self, job: LiveJob, **kwargs: Any) -> None:
        self.job = job
        self.summary = f"dashboard of live job {job.job}"
        self.head = w.HTML()
        self.ranks = w.HTML()
        super().__init__([self.head, self.ranks], **kwargs)
        self._stop = threading.Event()
        job.on_end(lambda _job: self._refresh())
        threading.Thread(target=self._loop, daemon=True).start()

    def _refresh(self) -> None:
        job = self.job
        state = html.escape(job.state + (f" ({job.end_detail})" if job.end_detail else ""))
        self.head.value = (f"<b>live job {html.escape(job.job)}</b>: {job.ranks} ranks on "
                           f"{job.info.nodes} nodes — {state}")
        if not job.ended.is_set():
            try:
                self.ranks.value = _table(job.summary())
            except (JobEnded, TimeoutError):
                pass

    def _loop(self) -> None:
        while not self._stop.wait(1.0) and not self.job.ended.is_set():
            self._refresh()
        self._refresh()

    def close(self) -> None:
        self._stop.set()
        super().close()
