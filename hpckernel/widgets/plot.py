"""``%liveplot NAME``: a widget plotting what the ranks publish, one line per rank.

It listens to the hub's `LiveStore`, whose listeners the plane thread calls at most a few
times a second. The browser draws (``plot.js``, an anywidget module): the widget's state
holds every point for a view that opens, and each update sends only the points that are
new since the last one, so an update costs the same at step 10 as at step 10,000. Front
ends without widgets get a static SVG of the points at display time and one line of text.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from ..hub.live import LiveStore
from . import svg
from .fallback import TextFallback
from .lines import Lines, Points


def _current_points(_value: object, plot: LivePlot) -> Points:
    """The state's ``lines`` as they stand now (the trait itself is never assigned: new
    points travel as messages, and a new view asks for the whole state)."""
    return plot.points.snapshot()


class LivePlot(TextFallback, anywidget.AnyWidget):
    """The live plot of one published name."""

    _esm = Path(__file__).with_name("plot.js")
    published = traitlets.Unicode(help="the published name plotted").tag(sync=True)
    keep = traitlets.Int(200, help="points kept per line").tag(sync=True)
    lines = traitlets.Dict(help="{label: {x: [...], y: [...]}}: every point drawn").tag(
        sync=True, to_json=_current_points)

    def __init__(self, store: LiveStore, name: str, keep: int = 200, **kwargs: object
                 ) -> None:
        self.store = store
        self.summary = f"live plot of {name!r}"
        self.points = Lines(keep)
        self._seen: dict[int, int] = {}
        self._take(name)  # what is there already goes out with the widget's state
        super().__init__(published=name, keep=keep, **kwargs)
        self._stop = store.listen(name, self.update)

    def _take(self, name: str) -> dict[str, Points]:
        new = self.store.since(name, self._seen)
        for rank, (first, values) in new.items():
            self._seen[rank] = first + len(values)
        return self.points.take(new)

    def update(self, name: str, _series: dict[int, list[object]]) -> None:
        """Send the new points; called from the plane thread."""
        change = self._take(name)
        if change:
            self.send(change)

    def fallbacks(self) -> dict[str, object]:
        """The text fallbacks and an SVG of the current points."""
        return {**super().fallbacks(),
                "image/svg+xml": svg.render(self.points.snapshot(), self.published)}

    def close(self) -> None:
        """Stop taking values, and close the widget."""
        self._stop()
        super().close()
