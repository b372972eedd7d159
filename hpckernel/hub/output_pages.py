"""Pages of a rank's kept output: what a read of ``outputs.RankOutputs`` collects, from
memory and then from the cell's spill file, and the lines that end a rank's output when
some of it was not kept or could not be read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..sizes import format_size

#: one output as nbformat writes it: {"output_type": "stream", "name": ..., "text": ...}, ...
Output = dict[str, Any]


def output_size(output: Output) -> int:
    """The size of an output as shown: its text, or its data's values (what pages and the
    output budget count)."""
    if "text" in output:
        return len(output["text"])
    return sum(len(str(v)) for v in output.get("data", {}).values())


@dataclass
class Page:
    """Part of some ranks' outputs: each rank's outputs from ``start`` up to ``ends[rank]``
    (consecutive stream text joined), its size in all (``totals``), and the ranks with
    more after this page (``more``)."""

    start: int
    outputs: dict[int, list[Output]] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    totals: dict[int, int] = field(default_factory=dict)
    more: set[int] = field(default_factory=set)


REMOVED = ("the rest was removed to make room for newer output (HubKernel.output_disk)")


@dataclass
class Snapshot:
    """What a read needs of a ``RankOutputs``, taken under the lock."""

    memory: dict[int, list[Output]]
    totals: dict[int, int]
    spilled: set[int]
    checkpoints: dict[int, list[tuple[int, int]]]
    lost: dict[str, dict[int, int]]
    removed: bool


class Collector:
    """One rank's page: outputs from ``start`` until about ``limit`` bytes (or ``most``
    outputs other than text) are in it. Stream text is cut to fit; a display is whole, on
    the page where it starts."""

    def __init__(self, start: int, limit: int | None, most: int | None = None) -> None:
        self.start, self.limit, self.most = start, limit, most
        self.size = 0
        self.count = 0  # outputs other than text: a message each when shown
        self.end = start
        self.full = False
        self.outputs: list[Output] = []

    def add(self, at: int, output: Output) -> bool:
        """Take the output that starts at ``at`` in the rank's output; False once full."""
        size = output_size(output)
        if at < self.start and (at + size <= self.start or output.get("output_type")
                                != "stream"):
            return True  # before this page (a display that started before: on the last)
        room = None if self.limit is None else self.limit - self.size
        if room is not None and room <= 0:
            return self._stop(at)
        if output.get("output_type") == "stream":
            text = output["text"]
            lo = max(self.start - at, 0)
            hi = len(text) if room is None else min(len(text), lo + room)
            self.outputs.append(output if (lo, hi) == (0, len(text))
                                else {**output, "text": text[lo:hi]})
            self.size += hi - lo
            self.end = at + hi
            return hi == len(text) or self._stop(self.end)
        if (room is not None and self.size and size > room) or (
                self.most is not None and self.count >= self.most):
            return self._stop(at)
        self.outputs.append(output)
        self.count += 1
        self.size += size
        self.end = at + size
        return True

    def _stop(self, at: int) -> bool:
        self.full = True
        self.end = at
        return False


def checkpoint(marks: list[tuple[int, int]], start: int) -> int:
    """The file offset of the last checkpoint at or before ``start``."""
    found = 0
    for offset, at in marks:
        if offset > start:
            break
        found = at
    return found


def closing_notes(rank: int, lost: dict[str, dict[int, int]], problems: list[str]) -> list[Output]:
    """The lines that end a rank's output: what was not kept, and why it is incomplete."""
    texts = [f"about {format_size(counts[rank])} more output of rank {rank} was not kept: "
             f"{reason}" for reason, counts in lost.items() if rank in counts]
    texts += [f"the output of rank {rank} is incomplete: {p}" for p in problems]
    return [{"output_type": "stream", "name": "stderr", "text": f"\n[hpckernel] {text}\n"}
            for text in texts]


def join_streams(outputs: list[Output]) -> list[Output]:
    """Consecutive stream outputs of one name as one (text joined once, not pairwise)."""
    joined: list[Output] = []
    run: list[str] = []
    for output in outputs:
        last = joined[-1] if joined else None
        if (last is not None and output["output_type"] == "stream"
                and last["output_type"] == "stream" and last["name"] == output["name"]):
            run.append(output["text"])
            continue
        if run:
            joined[-1] = {**joined[-1], "text": "".join(run)}
        joined.append(output)
        run = [output["text"]] if output["output_type"] == "stream" else []
    if run:
        joined[-1] = {**joined[-1], "text": "".join(run)}
    return joined
