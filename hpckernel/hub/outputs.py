"""Every rank's full output of recent cells, kept by the hub.

The notebook shows the first ``HubKernel.output_groups`` groups of a cell's output and one
line about the rest (``merge.py``); this store is where the rest stays readable
(``%pxoutput``, ``_px.output(rank)``). Outputs live in memory up to a cap shared by all
cells (``HubKernel.output_memory``); beyond it a cell's further output goes to a file in
the job directory, written by a thread of its own, so that the plane thread, which adds
output as it arrives, never waits on a disk. What that thread has not written yet is bounded
too (``OutputStore.backlog``): output beyond it, or that the disk refuses, is counted and
named where the rank's output is read, so that a flood into a stalled file system cannot
fill the hub's memory. The last ``HubKernel.output_history`` cells are kept.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from ..sizes import format_size
from ..targets import format_targets
from .errors import HubError

log = logging.getLogger(__name__)

#: one output as nbformat writes it: {"output_type": "stream", "name": ..., "text": ...}, ...
Output = dict[str, Any]


#: what keeping one output costs beside its text (a dict and a list slot)
_OVERHEAD = 200


class OutputGone(HubError, LookupError):
    """The output asked for is no longer kept."""


def output_size(output: Output) -> int:
    """Roughly the bytes an output holds (its text, or its data's values)."""
    if "text" in output:
        return len(output["text"])
    return sum(len(str(v)) for v in output.get("data", {}).values())


class OutputStore:
    """The kept outputs of the last ``cells`` requests, ``memory`` bytes of them in memory."""

    def __init__(self, directory: Path, memory: int = 256 * 10**6, cells: int = 100,
                 group_limit: int = 32) -> None:
        self.directory = directory
        self.memory = memory
        self.cells = cells
        self.group_limit = group_limit  # groups the notebook is shown of one cell's output
        self.in_memory = 0
        #: bytes handed to the writer thread and not written yet, and their bound
        self.pending = 0
        self.backlog = 64 * 10**6
        self.lock = threading.Lock()
        self._kept: OrderedDict[str, RankOutputs] = OrderedDict()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hpckernel-outputs")
        self._file: tuple[Path, IO[str]] | None = None  # the writer thread's open file

    def open(self, key: str, hint: str = "") -> RankOutputs:
        """Keep the outputs of a new request; ``hint`` is how a user reads them, with
        ``{ranks}`` for a target spec (``%pxoutput {ranks} --cell 4``)."""
        outputs = RankOutputs(self, key, hint)
        with self.lock:
            self._kept[key] = outputs
            while len(self._kept) > max(self.cells, 1):
                self._kept.popitem(last=False)[1].drop()
        return outputs

    def close(self) -> None:
        self._writer.submit(self._close_file)
        self._writer.shutdown(wait=True)

    # -- the writer thread -----------------------------------------------------------

    def write(self, path: Path, line: str, size: int, lost: Callable[[], None]) -> None:
        """Append ``line`` (``size`` counted in ``pending`` by the caller) to ``path``;
        ``lost`` is called if the disk refuses it."""
        self._writer.submit(self._append, path, line, size, lost)

    def remove(self, path: Path) -> None:
        self._writer.submit(self._remove, path)

    def sync(self) -> None:
        """Wait until everything handed to the writer is in its file."""
        self._writer.submit(self._flush).result()

    def _append(self, path: Path, line: str, size: int, lost: Callable[[], None]) -> None:
        try:
            if self._file is None or self._file[0] != path:
                self._close_file()
                path.parent.mkdir(mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                             0o600)
                self._file = (path, os.fdopen(fd, "a"))
            self._file[1].write(line)
        except OSError as e:  # a full disk: the reader of the rank's output is told
            log.warning("cannot keep output in %s: %s", path, e)
            lost()
        finally:
            with self.lock:
                self.pending -= size

    def _flush(self) -> None:
        if self._file is not None:
            self._file[1].flush()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file[1].close()
            self._file = None

    def _remove(self, path: Path) -> None:
        if self._file is not None and self._file[0] == path:
            self._close_file()
        path.unlink(missing_ok=True)


class RankOutputs:
    """One request's outputs by rank, in the order each rank sent them."""

    def __init__(self, store: OutputStore, key: str, hint: str) -> None:
        self.store = store
        self.hint = hint
        self.path = store.directory / "outputs" / f"{key}.jsonl"
        self._memory: dict[int, list[Output]] = {}
        self._bytes = 0
        self._spilled: set[int] = set()  # ranks whose later outputs go to the file
        self._lost: dict[int, int] = {}  # rank -> bytes of output not kept
        self.dropped = False

    @property
    def group_limit(self) -> int:
        return self.store.group_limit

    def how_to_see(self, ranks: Iterable[int]) -> str:
        """The hint for ``ranks``; for scattered ranks whose spec would be long, for the
        span from the first to the last."""
        if not self.hint:
            return ""
        ordered = sorted(ranks)
        spec = format_targets(ordered)
        if len(spec) > 60:
            spec = format_targets(range(ordered[0], ordered[-1] + 1))
        return self.hint.format(ranks=spec)

    def add(self, rank: int, output: Output) -> None:
        """Keep one output of ``rank`` (called on the plane thread as it arrives)."""
        store = self.store
        size = output_size(output) + _OVERHEAD
        with store.lock:
            if self.dropped:
                return
            if rank not in self._spilled and store.in_memory + size <= store.memory:
                self._memory.setdefault(rank, []).append(output)  # joined when read
                self._bytes += size
                store.in_memory += size
                return
            self._spilled.add(rank)  # later outputs follow this one, in the file
            if store.pending + size > store.backlog:
                self._lost[rank] = self._lost.get(rank, 0) + size
                return
            store.pending += size
        store.write(self.path, json.dumps([rank, output]) + "\n", size,
                    lambda: self._lose(rank, size))

    def _lose(self, rank: int, size: int) -> None:
        with self.store.lock:
            self._lost[rank] = self._lost.get(rank, 0) + size

    def get(self, ranks: Iterable[int]) -> dict[int, list[Output]]:
        """The outputs of ``ranks`` (those that had any), consecutive stream text joined."""
        wanted = set(ranks)
        with self.store.lock:
            if self.dropped:
                raise OutputGone(f"the output of this cell is no longer kept (the hub keeps "
                                 f"the last {self.store.cells} cells: "
                                 "HubKernel.output_history)")
            found = {r: list(self._memory[r]) for r in sorted(wanted & set(self._memory))}
            spilled = wanted & self._spilled
            lost = {r: n for r, n in self._lost.items() if r in wanted}
        if spilled:
            self.store.sync()
            with open(self.path) as f:
                for line in f:
                    rank, output = json.loads(line)
                    if rank in spilled:
                        found.setdefault(rank, []).append(output)
        for rank, size in lost.items():
            found.setdefault(rank, []).append({
                "output_type": "stream", "name": "stderr",
                "text": f"\n[hpckernel] about {format_size(size)} more output of rank {rank} "
                        f"was not kept: the job directory ({self.store.directory}) could "
                        "not take it in time\n"})
        return {r: _join_streams(found[r]) for r in sorted(found)}

    def drop(self) -> None:
        """Forget these outputs (called with the store's lock held)."""
        self.dropped = True
        self.store.in_memory -= self._bytes
        self._memory.clear()
        if self._spilled:
            self.store.remove(self.path)


def _join_streams(outputs: list[Output]) -> list[Output]:
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
