"""What a live job's rank publishes (``hpckernel.publish``), kept on the rank in a bounded
history until an attached notebook asks for it: publishing costs a copy and an append,
never a message, and a notebook that attaches later still sees the recent past.

Each value gets the rank's next sequence number; a notebook asks for what came after the
last number it has from the rank (``since``), so each value travels once per notebook.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import deque

#: Values kept per name on each rank.
DEFAULT_DEPTH = 1000


def _snapshot(value: object) -> object:
    """A copy the program may not change afterwards (numbers and strings are kept as they
    are; arrays and containers are copied)."""
    if isinstance(value, (int, float, complex, str, bytes, bool)) or value is None:
        return value
    copier = getattr(value, "copy", None)
    return copier() if callable(copier) else copy.deepcopy(value)


class History:
    """Per name, the last ``depth`` values as (seq, time, value). Written by the program's
    threads, read by the I/O thread (``list(deque)`` copies it atomically under the GIL)."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self.depth = depth
        self.values: dict[str, deque[tuple[int, float, object]]] = {}
        self._seq = itertools.count(1)

    def add(self, name: str, value: object) -> None:
        """Keep a snapshot of ``value`` as ``name``'s newest (``hpckernel.publish`` on a live
        rank, from any of the program's threads)."""
        kept = self.values.get(name)
        if kept is None:
            kept = self.values.setdefault(name, deque(maxlen=self.depth))
        kept.append((next(self._seq), time.time(), _snapshot(value)))

    def since(self, seq: int, names: list[str] | None = None
              ) -> dict[str, list[tuple[int, float, object]]]:
        """Each name's values after ``seq`` (of ``names``, or all)."""
        out = {}
        for name in list(self.values) if names is None else names:
            kept = self.values.get(name)
            if kept is None:
                continue
            entries = list(kept)
            new = [e for e in entries if e[0] > seq] if entries and entries[-1][0] > seq else []
            if new:
                out[name] = new
        return out
