"""The hub's store of values the ranks publish mid-cell (``hpckernel.publish``).

Per name and rank, the last ``maxlen`` values in arrival order. The plane thread adds values
as they arrive and, from its tick, calls each name's listeners (the live plots) with the
new series at most every ``interval`` seconds, so a rank publishing in a tight loop does
not flood the notebook with widget updates. ``ranks.live`` reads it from ``%%local`` code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from itertools import islice

log = logging.getLogger(__name__)

#: listener(name, {rank: [values...]}), called from the plane thread.
Listener = Callable[[str, "dict[int, list[object]]"], None]


class LiveStore(Mapping[str, "dict[int, list[object]]"]):
    """``store[name]`` → ``{rank: [values, oldest first]}``; thread-safe."""

    def __init__(self, maxlen: int = 1000, interval: float = 0.25) -> None:
        self.maxlen = maxlen
        self.interval = interval
        self._lock = threading.Lock()
        self._series: dict[str, dict[int, deque[object]]] = {}
        # Values each rank ever published per name (never reset, so a reader that counted
        # what it took learns what is new even after the deque dropped old values).
        self._published: dict[str, dict[int, int]] = {}
        self._dirty: set[str] = set()
        self._listeners: dict[str, list[Listener]] = {}
        self._last_push = 0.0

    def add(self, name: str, rank: int, value: object) -> None:
        """Keep ``value``, just published by ``rank`` as ``name`` (the plane thread)."""
        with self._lock:
            per_rank = self._series.setdefault(name, {})
            per_rank.setdefault(rank, deque(maxlen=self.maxlen)).append(value)
            counts = self._published.setdefault(name, {})
            counts[rank] = counts.get(rank, 0) + 1
            self._dirty.add(name)

    def __getitem__(self, name: str) -> dict[int, list[object]]:
        with self._lock:
            if name not in self._series:
                known = ", ".join(sorted(self._series)) or "none yet"
                raise KeyError(f"no rank has published {name!r} (published: {known})")
            return {r: list(v) for r, v in sorted(self._series[name].items())}

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(sorted(self._series))

    def __len__(self) -> int:
        return len(self._series)

    def since(self, name: str, seen: Mapping[int, int]) -> dict[int, tuple[int, list[object]]]:
        """What each rank published as ``name`` after its first ``seen[rank]`` values:
        ``{rank: (number of the first new value, [new values])}``, less any the store
        already dropped (the live plot sends only these)."""
        new: dict[int, tuple[int, list[object]]] = {}
        with self._lock:
            for rank, values in self._series.get(name, {}).items():
                total = self._published[name][rank]
                first = max(seen.get(rank, 0), total - len(values))
                if first < total:
                    new[rank] = (first, list(islice(values, len(values) - (total - first),
                                                    None)))
        return new

    def latest(self, name: str) -> dict[int, object]:
        """The last value of ``name`` from each rank that published it."""
        return {r: v[-1] for r, v in self[name].items() if v}

    def clear(self, name: str | None = None) -> None:
        """Forget the values of ``name`` (of every name: None)."""
        with self._lock:
            if name is None:
                self._series.clear()
            else:
                self._series.pop(name, None)

    def listen(self, name: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` when ``name`` has new values; returns the unsubscribe."""
        with self._lock:
            self._listeners.setdefault(name, []).append(listener)

        def stop() -> None:
            with self._lock:
                if listener in self._listeners.get(name, []):
                    self._listeners[name].remove(listener)
        return stop

    def watched(self) -> list[str]:
        """The names something listens to (a live plot of an attached job's values, which
        are pulled from its ranks only while shown)."""
        with self._lock:
            return sorted(name for name, listeners in self._listeners.items() if listeners)

    def flush(self, now: float | None = None) -> None:
        """Push new values to the listeners (the plane thread's tick calls this)."""
        now = time.monotonic() if now is None else now
        if not self._dirty or now - self._last_push < self.interval:
            return
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            self._last_push = now
            calls = [(name, list(self._listeners.get(name, []))) for name in dirty]
        for name, listeners in calls:
            if not listeners:
                continue
            series = self[name]
            for listener in listeners:
                try:
                    listener(name, series)
                except Exception:  # a broken plot must not stop the plane thread
                    log.exception("live listener of %r failed", name)
