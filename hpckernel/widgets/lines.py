"""The live plot's data: what ranks publish, as labelled lines of (x, y) points.

Numbers only. A number is the next point of the rank's line, x its number in what the rank
published; a dict gives one line per numeric key (``"3:loss"``); an array replaces the
rank's line by its contents against the index. `Lines.take` folds in new values and returns
just the change, which is what the widget sends to the browser.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from numbers import Real
from typing import Any

#: {label: {"x": [...], "y": [...]}}: the shape of the widget's state and of its messages.
Points = dict[str, dict[str, list[float]]]


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (text, NaN, a bool, an object)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        try:  # numpy scalars and 0-d arrays
            value = float(value)
        except (TypeError, ValueError):
            return None
    result = float(value)
    return result if math.isfinite(result) else None


def _is_array(value: object) -> bool:
    return number(value) is None and hasattr(value, "__len__") and not isinstance(
        value, (str, bytes, Mapping))


class Lines:
    """The last ``keep`` points of each line; thread-safe (the plane thread adds, the shell
    thread reads for a new view)."""

    def __init__(self, keep: int = 200) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._lines: dict[str, tuple[deque[float], deque[float]]] = {}

    def take(self, new: Mapping[int, tuple[int, list[Any]]]) -> dict[str, Points]:
        """Fold in ``{rank: (number of the first value, [values])}`` (`LiveStore.since`);
        the change as ``{"append": points, "replace": points}`` (empty parts left out)."""
        append: Points = {}
        replace: Points = {}
        with self._lock:
            for rank, (first, values) in sorted(new.items()):
                for x, value in enumerate(values, start=first):
                    if isinstance(value, Mapping):
                        for key, item in value.items():
                            self._append(append, f"{rank}:{key}", x, number(item))
                    elif _is_array(value):
                        ys = [y for y in map(number, list(value)[:self.keep]) if y is not None]
                        xs: list[float] = list(range(len(ys)))
                        self._lines[str(rank)] = (deque(xs, self.keep), deque(ys, self.keep))
                        replace[str(rank)] = {"x": xs, "y": ys}
                        append.pop(str(rank), None)
                    else:
                        self._append(append, str(rank), x, number(value))
        return {part: points for part, points in (("append", append), ("replace", replace))
                if points}

    def _append(self, change: Points, label: str, x: int, y: float | None) -> None:
        if y is None:
            return
        xs, ys = self._lines.setdefault(label, (deque(maxlen=self.keep),
                                                deque(maxlen=self.keep)))
        xs.append(x)
        ys.append(y)
        points = change.setdefault(label, {"x": [], "y": []})
        points["x"].append(x)
        points["y"].append(y)
        del points["x"][:-self.keep], points["y"][:-self.keep]

    def snapshot(self) -> Points:
        """Every line as it stands (a new view's state, the static picture)."""
        with self._lock:
            return {label: {"x": list(xs), "y": list(ys)}
                    for label, (xs, ys) in self._lines.items()}
