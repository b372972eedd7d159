"""The rank's answer to the hub's heartbeat: its CPU and memory use (kernel ranks and the
ranks of a live job alike)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ..plane import Message
from ..plane.headers import PlaneHeader

if TYPE_CHECKING:
    import psutil


class Heartbeat:
    """Answers the hub's heartbeat with this rank's CPU and memory use.

    What psutil's ``cpu_percent``/``memory_info().rss`` give, read from ``os.times()`` and
    ``/proc/self/statm``: importing psutil would be ≈20 ms of every rank's start. Without
    ``/proc`` (not Linux), psutil is imported at the first heartbeat."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.proc: psutil.Process | None = None  # where /proc is missing
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._last = self._cpu()  # the first heartbeat reports the CPU use since now

    @staticmethod
    def _cpu() -> tuple[float, float]:
        t = os.times()  # this process, all its threads
        return time.monotonic(), t.user + t.system

    def _stats(self) -> PlaneHeader:
        if self.proc is None:
            try:
                with open("/proc/self/statm", "rb") as f:
                    rss = int(f.read().split()[1]) * self._page
            except (OSError, IndexError, ValueError):
                import psutil

                self.proc = psutil.Process()
                self.proc.cpu_percent(None)
            else:
                (then, before), self._last = self._last, self._cpu()
                wall = self._last[0] - then
                cpu = round((self._last[1] - before) / wall * 100, 1) if wall > 0 else 0.0
                return {"cpu": cpu, "rss": rss}
        with self.proc.oneshot():
            return {"cpu": self.proc.cpu_percent(None), "rss": self.proc.memory_info().rss}

    def __call__(self, msg: Message) -> tuple[str, PlaneHeader, None]:
        """The ``hb`` answer (the I/O thread's control handler)."""
        return "hb", {"rank": self.rank, **self._stats()}, None
