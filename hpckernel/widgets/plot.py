"""``%liveplot NAME``: a widget plotting what the ranks publish, one line per rank.

It listens to the hub's `LiveStore`, whose listeners the plane thread calls at most a few
times a second; each call redraws the SVG and sets ``values`` (the plotted numbers, synced
to the frontend, so a client can read them from the comm messages too).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets

from ..hub.live import LiveStore
from . import svg
from .fallback import TextFallback


class LivePlot(TextFallback, w.VBox):
    """The live plot of one published name."""

    published = traitlets.Unicode(help="the published name plotted").tag(sync=True)
    values = traitlets.Dict(help="{line label: [y...]} as last drawn").tag(sync=True)

    def __init__(self, store: LiveStore, name: str, **kwargs: Any) -> None:
        self.store = store
        self.summary = f"live plot of {name!r}"
        self.chart = w.HTML()
        super().__init__([self.chart], published=name, **kwargs)
        self.update(name, store[name] if name in store else {})
        self._stop = store.listen(name, self.update)

    def update(self, name: str, series: dict[int, list[Any]]) -> None:
        """Redraw with ``series`` ({rank: [values]}); called from the plane thread."""
        lines = svg.lines_of(series)
        self.values = lines
        self.chart.value = svg.render(lines, name)

    def close(self) -> None:
        self._stop()
        super().close()
