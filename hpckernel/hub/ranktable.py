"""What the hub knows of each rank: state, pid, host, load, and why it is dead or stuck.

Only the plane thread changes the table; other threads read copies (``RankPool.snapshot``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..plane.headers import PlaneHeader, RankState
from ..sizes import format_memory
from ..targets import format_ranks
from .rank_launchers import describe_exit, exit_codes, log_tail


@dataclass
class RankInfo:
    """What the hub knows of one rank (shown by ``%ranks``)."""

    rank: int
    state: RankState = "starting"
    pid: int | None = None
    host: str = ""
    cpu: float = 0.0
    rss: int = 0
    reason: str = ""  # why it is dead or stuck
    cell: str = ""  # label of the request it runs now ("[7]", "%px"), for the dashboard
    queue: deque[str] = field(default_factory=deque)  # request ids, oldest running

    def usage(self) -> tuple[str, str]:
        """CPU % and memory as shown; ``-`` before the rank's first heartbeat."""
        if not self.rss:
            return "-", "-"
        return f"{self.cpu:.1f}", format_memory(self.rss)


class RankTable:
    """Every rank's ``RankInfo``. State changes go through ``set_state``, which keeps count of
    the ranks still starting, so that "all registered" is O(1) per registration, not O(N),
    and of the ranks that cannot take requests, so that "all can" is O(1) per request."""

    def __init__(self, size: int, job_dir: Path) -> None:
        self.infos = [RankInfo(r) for r in range(size)]
        self.job_dir = job_dir
        self.starting = size
        self.unhealthy = size  # starting, stuck or dead

    def __getitem__(self, rank: int) -> RankInfo:
        return self.infos[rank]

    def __iter__(self) -> Iterator[RankInfo]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    def set_state(self, info: RankInfo, state: RankState, reason: str | None = None) -> None:
        """Move ``info`` to ``state`` (and ``reason``, when given)."""
        self.starting += (state == "starting") - (info.state == "starting")
        self.unhealthy += (state in _UNHEALTHY) - (info.state in _UNHEALTHY)
        info.state = state
        if reason is not None:
            info.reason = reason

    def reset(self) -> None:
        """Every rank starting afresh (a launch or relaunch)."""
        for info in self.infos:
            self.set_state(info, "starting", "")
            info.pid, info.cell = None, ""
            info.queue.clear()

    def unavailable(self, targets: list[int], control: bool) -> list[RankInfo]:
        """Targets that cannot take a request now; a stuck rank's I/O thread still answers
        control requests (``%peek``, ``%where``)."""
        if not self.unhealthy:
            return []
        return [self.infos[r] for r in targets
                if self.infos[r].state in ("dead", "starting")
                or (self.infos[r].state == "stuck" and not control)]

    def mark_dead(self, rank: int, reason: str, tail: bool = True) -> PlaneHeader:
        """Record the death; returns the error that the rank's open requests get (with the
        rank's last log lines if ``tail``)."""
        info = self.infos[rank]
        self.set_state(info, "dead", reason)
        info.queue.clear()
        info.cell = ""
        tail_text = log_tail(self.job_dir, rank) if tail else ""
        # No rank number in the text, so that ranks that died alike collapse into one.
        return {"status": "error", "ename": "RankDied", "evalue": reason,
                "traceback": [*([f"last output of the rank:\n{tail_text}"] if tail_text else []),
                              "Run %restart_ranks to start fresh ranks."]}

    def new_exits(self, launch: int) -> list[tuple[int, str]]:
        """Ranks of ``launch`` not yet known dead whose exit ``launcher/rank.sh`` has
        recorded, and how."""
        return [(rank, describe_exit(code))
                for rank, code in exit_codes(self.job_dir, launch).items()
                if 0 <= rank < len(self.infos) and self.infos[rank].state != "dead"]


_UNHEALTHY = frozenset({"starting", "stuck", "dead"})


def describe_unavailable(infos: list[RankInfo]) -> str:
    """``rank 2 is dead (exited with code 3); ranks 0-1,3 are dead (killed by SIGTERM …)``
    and what to do about it."""
    groups: dict[tuple[str, str], list[int]] = {}
    for info in infos:
        groups.setdefault((info.state, info.reason), []).append(info.rank)
    parts = [f"rank{'s' if len(ranks) > 1 else ''} {format_ranks(ranks)} "
             f"{'are' if len(ranks) > 1 else 'is'} {state}" + (f" ({reason})" if reason else "")
             for (state, reason), ranks in groups.items()]
    hint = ("wait for them to start" if {s for s, _ in groups} == {"starting"}
            else "run %restart_ranks to start fresh ranks")
    return "; ".join(parts) + f": {hint}"
