"""Every rank's full output of recent cells, kept by the hub.

The notebook shows the first ``HubKernel.output_groups`` groups of a cell's output and one
line about the rest (``merge.py``); this store is where the rest stays readable
(``%pxoutput``, ``_px.output(rank)``, ``_px.lines(rank)``). Three caps, each with a notice:

- memory (``HubKernel.output_memory``), counted in the bytes the kept objects really take,
  shared by all cells; beyond it a rank's further output goes to the cell's spill file in the
  job directory (``spill.py``), written by a thread of its own so that the plane thread,
  which adds output as it arrives, never waits on a disk;
- disk (``HubKernel.output_disk``), shared by the spill files of all kept cells: the oldest
  cells' files are removed to make room for newer output, and output beyond it in the cell
  that fills it alone is not kept;
- what the writer thread has not written yet (``OutputStore.backlog``), so that a flood into
  a stalled file system cannot fill the hub's memory.

Output not kept (over a cap, or refused by a full disk: per rank, the others are not
affected) is counted by rank and reason, said in the cell while it runs and where the rank's
output is read. Reads go page by page or output by output (``read``, ``outputs_of``), never
a whole file at once. The last ``HubKernel.output_history`` cells are kept.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..sizes import format_size
from ..targets import format_ranks, format_targets
from .errors import HubError
from .output_pages import (
    REMOVED,
    Collector,
    Output,
    Page,
    Snapshot,
    checkpoint,
    closing_notes,
    join_streams,
    output_size,
)
from .spill import SpillReader, SpillWriter, encode

log = logging.getLogger(__name__)


#: a rank's checkpoints in a spill file: every this many bytes of its output, where it is
CHECKPOINT_EVERY = 1 << 20
#: the least time between two notices of one cell about output not kept
NOTICE_EVERY = 2.0
#: most bytes of spilled output handed to the writer thread and not written yet; beyond it
#: output is not kept (LATE) rather than held in memory
WRITE_BACKLOG = 64 * 10**6

LATE = "the job directory ({directory}) could not take it in time"
OVER_DISK = "over HubKernel.output_disk ({cap}), the disk the hub may use for kept output"


class OutputGone(HubError, LookupError):
    """The output asked for is no longer kept."""


def kept_size(output: Output) -> int:
    """The bytes keeping ``output`` costs the hub: every object in it and its list slot."""
    if output.get("output_type") == "stream":  # the common case; its keys are constants
        return (sys.getsizeof(output) + sys.getsizeof(output.get("text", ""))
                + sys.getsizeof(output.get("name", "")) + 8)
    total = 8
    stack: list[object] = [output]
    while stack:
        obj = stack.pop()
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
    return total


class OutputStore:
    """The kept outputs of the last ``cells`` requests, ``memory`` bytes of them in memory
    and ``disk`` bytes in spill files."""

    def __init__(self, directory: Path, memory: int = 256 * 10**6, cells: int = 100,
                 group_limit: int = 32, disk: int = 10**9) -> None:
        self.directory = directory
        self.memory = memory
        self.disk = disk
        self.cells = cells
        self.group_limit = group_limit  # groups the notebook is shown of one cell's output
        self.in_memory = 0
        self.on_disk = 0  # bytes of the kept cells' spill files, written or on their way
        #: bytes handed to the writer thread and not written yet, and their bound
        self.pending = 0
        self.backlog = WRITE_BACKLOG
        self.lock = threading.Lock()
        self.memory_told = False  # the notice that memory is full went out
        #: cells that lost output after their end, for the notices of the next cell
        self.late: dict[str, RankOutputs] = {}
        self._kept: OrderedDict[str, RankOutputs] = OrderedDict()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hpckernel-outputs")
        self._spill = SpillWriter(directory / "outputs")  # used by the writer thread only

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
        """Close the spill files and stop the writer (the kernel's shutdown)."""
        self._writer.submit(self._spill.shutdown)
        self._writer.shutdown(wait=True)

    def sync(self) -> None:
        """Wait until everything handed to the writer is in its file."""
        try:
            self._writer.submit(lambda: None).result()
        except RuntimeError:  # closed: the kernel is shutting down, nothing is pending
            pass

    def take_late_notices(self) -> list[str]:
        """Notices about output not kept that came after its cell had ended (the writer
        thread was behind): for the top of the next cell (``HubKernel._flush_notices``)."""
        with self.lock:
            cells, self.late = list(self.late.values()), {}
        return [note for cell in cells for note in cell.take_notices(final=True)]

    def make_room(self, need: int, keep: RankOutputs) -> bool:
        """Remove the spill files of the oldest cells (not ``keep``'s) until ``need`` more
        bytes fit under the disk cap; whether they do. Called with the lock held."""
        for outputs in self._kept.values():
            if self.on_disk + need <= self.disk:
                break
            if outputs is not keep and outputs.on_disk and not outputs.removed:
                outputs.removed = True
                self.on_disk -= outputs.on_disk
                outputs.on_disk = 0
                self._writer.submit(self._spill.remove, outputs.name)
        return self.on_disk + need <= self.disk

    def write(self, outputs: RankOutputs, rank: int, offset: int, line: bytes,
              size: int) -> None:
        """Append a record of ``rank`` (``line``, counted in ``pending`` and ``on_disk``)
        to the spill file of ``outputs``."""
        self._writer.submit(self._append, outputs, rank, offset, line, size)

    def remove(self, name: str) -> None:
        """Remove a cell's spill file (in the writer thread)."""
        self._writer.submit(self._spill.remove, name)

    def _append(self, outputs: RankOutputs, rank: int, offset: int, line: bytes,
                size: int) -> None:
        try:
            at = self._spill.append(outputs.name, line)
        except OSError as e:  # a full disk: this rank's record, said where it is read
            with self.lock:
                self.pending -= len(line)
                if not outputs.removed and not outputs.dropped:
                    self.on_disk -= len(line)
                    outputs.on_disk -= len(line)
                first = outputs.lose(rank, size, f"the job directory refused it "
                                                  f"({e.strerror or e})")
            if first:  # one line per cell and reason, not one per record
                log.warning("cannot keep output in %s: %s", outputs.path, e)
            return
        with self.lock:
            self.pending -= len(line)
            marks = outputs.checkpoints.setdefault(rank, [])
            if not marks or offset - marks[-1][0] >= CHECKPOINT_EVERY:
                marks.append((offset, at))


class RankOutputs:
    """One request's outputs by rank, in the order each rank sent them."""

    def __init__(self, store: OutputStore, key: str, hint: str) -> None:
        self.store = store
        self.hint = hint
        self.name = f"{key}.jsonl"
        self.path = store.directory / "outputs" / self.name
        self._memory: dict[int, list[Output]] = {}
        self._bytes = 0  # what the outputs in memory take
        self._sizes: dict[int, int] = {}  # rank -> output_size of all it sent
        self._spilled: set[int] = set()  # ranks whose later outputs go to the file
        self.on_disk = 0
        #: rank -> [(offset in its output, offset in the file)], filled by the writer thread
        self.checkpoints: dict[int, list[tuple[int, int]]] = {}
        self._lost: dict[str, dict[int, int]] = {}  # reason -> rank -> bytes not kept
        self._untold: dict[str, dict[int, int]] = {}  # the same, not in a notice yet
        self._told_at = 0.0
        self._ended = False  # its cell had its last notices: later ones go to the next
        self._notes: list[str] = []  # notices for the cell, not sent yet
        self.removed = False  # its spill file was removed to make room for newer output
        self.dropped = False

    @property
    def group_limit(self) -> int:
        """How many groups the notebook shows (``HubKernel.output_groups``)."""
        return self.store.group_limit

    def how_to_see(self, ranks: Iterable[int], start: int = 0) -> str:
        """The hint for ``ranks`` (from ``start`` in their output); for scattered ranks
        whose spec would be long, for the span from the first to the last."""
        if not self.hint:
            return ""
        ordered = sorted(ranks)
        spec = format_targets(ordered)
        if len(spec) > 60:
            spec = format_targets(range(ordered[0], ordered[-1] + 1))
        hint = self.hint.format(ranks=spec)
        if not start:
            return hint
        return hint[:-1] + f", start={start})" if hint.endswith(")") else (
            f"{hint} --from {start}")

    # -- adding (the plane thread) -----------------------------------------------------

    def add(self, rank: int, output: Output) -> None:
        """Keep one output of ``rank`` (called on the plane thread as it arrives)."""
        store = self.store
        size = output_size(output)
        cost = kept_size(output) if rank not in self._spilled else 0
        with store.lock:
            if self.dropped:
                return
            offset = self._sizes.get(rank, 0)
            self._sizes[rank] = offset + size
            if rank not in self._spilled:
                if store.in_memory + cost <= store.memory:
                    self._memory.setdefault(rank, []).append(output)  # joined when read
                    self._bytes += cost
                    store.in_memory += cost
                    return
                self._spilled.add(rank)  # later outputs follow this one, in the file
                if not store.memory_told:
                    store.memory_told = True
                    self._notes.append(
                        f"the hub's memory for kept output is full (HubKernel.output_memory"
                        f" = {format_size(store.memory)}): further output is kept in the "
                        "job directory")
            if self.removed:
                self.lose(rank, size, OVER_DISK.format(cap=format_size(store.disk)))
                return
        line = encode(rank, offset, output)
        with store.lock:
            if store.pending + len(line) > store.backlog:
                self.lose(rank, size, LATE.format(directory=store.directory))
                return
            if (store.on_disk + len(line) > store.disk
                    and not store.make_room(len(line), self)):
                self.lose(rank, size, OVER_DISK.format(cap=format_size(store.disk)))
                return
            store.pending += len(line)
            store.on_disk += len(line)
            self.on_disk += len(line)
        store.write(self, rank, offset, line, size)

    def lose(self, rank: int, size: int, reason: str) -> bool:
        """Count ``size`` bytes of ``rank``'s output as not kept; True the first time for
        ``reason``. Called with the store's lock held."""
        first = reason not in self._lost
        for counts in (self._lost.setdefault(reason, {}), self._untold.setdefault(reason, {})):
            counts[rank] = counts.get(rank, 0) + size
        if self._ended:
            self.store.late[self.name] = self
        return first

    def take_notices(self, final: bool = False) -> list[str]:
        """What the cell should be told now about its kept output: a full memory, output
        not kept (by reason, with ranks and sizes; at most every ``NOTICE_EVERY`` s, and at
        the end). Called by the cell's merger as it flushes; what comes after its end goes
        to the next cell (``OutputStore.take_late_notices``)."""
        with self.store.lock:
            notes, self._notes = self._notes, []
            self._ended = self._ended or final
            now = time.monotonic()
            if self._untold and (final or now - self._told_at >= NOTICE_EVERY):
                self._told_at = now
                for reason, counts in self._untold.items():
                    how = self.how_to_see(counts)
                    notes.append(f"{format_size(sum(counts.values()))} of output from ranks "
                                 f"{format_ranks(counts, 80)} not kept: {reason}"
                                 + (f"; what was kept: {how}" if how else ""))
                self._untold.clear()
        return notes

    def drop(self) -> None:
        """Forget these outputs (called with the store's lock held)."""
        store = self.store
        self.dropped = True
        store.in_memory -= self._bytes
        if store.in_memory < store.memory // 2:
            store.memory_told = False  # room again: tell when it is full again
        self._memory.clear()
        if not self.removed:
            store.on_disk -= self.on_disk
        if self._spilled and not self.removed:
            store.remove(self.name)

    # -- reading (any thread) ----------------------------------------------------------

    def totals(self, ranks: Iterable[int]) -> dict[int, int]:
        """The size of each rank's whole output (what a whole read would bring in)."""
        with self.store.lock:
            return {r: self._sizes.get(r, 0) for r in ranks}

    def read(self, ranks: Iterable[int], start: int = 0, limit: int | None = None,
             most: int | None = None) -> Page:
        """Each rank's outputs from ``start`` in its output, at most about ``limit``
        bytes and ``most`` outputs other than text of them per rank (None: all), streams
        joined, reading the spill file once and only as far as needed; a rank whose page
        reaches its end gets a note on its output that was not kept or could not be read."""
        wanted = sorted(set(ranks))
        snap = self._snapshot(wanted)
        pages = {r: Collector(start, limit, most) for r in wanted}
        for rank in wanted:
            at = 0
            for output in snap.memory[rank]:
                if not pages[rank].add(at, output):
                    break
                at += output_size(output)
        active = {r for r in snap.spilled if not pages[r].full}
        problems = self._read_file(snap, active, pages, start)
        page = Page(start)
        for rank in wanted:
            collected = pages[rank]
            outputs = collected.outputs
            if not collected.full:
                outputs += closing_notes(rank, snap.lost, problems.get(rank, []))
            else:
                page.more.add(rank)
            if outputs:
                page.outputs[rank] = join_streams(outputs)
            page.ends[rank] = collected.end
            page.totals[rank] = snap.totals[rank]
        return page

    def outputs_of(self, rank: int) -> Iterator[Output]:
        """``rank``'s outputs one at a time, from memory then from the spill file as the
        iterator advances (for ``_px.lines``), then its notes."""
        snap = self._snapshot([rank])
        yield from snap.memory[rank]
        problems: list[str] = []
        if rank in snap.spilled:
            if snap.removed:
                problems.append(REMOVED)
            else:
                reader = SpillReader(self.path)
                self.store.sync()
                try:
                    for _, _, output in reader.records({rank}):
                        yield output
                except OSError as e:
                    problems.append(f"it could not be read: {e}")
                if reader.damaged:
                    problems.append(f"{reader.damaged} damaged records were skipped")
        yield from closing_notes(rank, snap.lost, problems)

    def _snapshot(self, wanted: list[int]) -> Snapshot:
        chosen = set(wanted)
        with self.store.lock:
            if self.dropped:
                raise OutputGone(f"the output of this cell is no longer kept (the hub keeps "
                                 f"the last {self.store.cells} cells: "
                                 "HubKernel.output_history)")
            return Snapshot(
                memory={r: list(self._memory.get(r, ())) for r in wanted},
                totals={r: self._sizes.get(r, 0) for r in wanted},
                spilled={r for r in wanted if r in self._spilled},
                checkpoints={r: list(self.checkpoints.get(r, ())) for r in wanted},
                lost={reason: {r: n for r, n in counts.items() if r in chosen}
                      for reason, counts in self._lost.items()},
                removed=self.removed)

    def _read_file(self, snap: Snapshot, active: set[int], pages: dict[int, Collector],
                   start: int) -> dict[int, list[str]]:
        """Feed the spill file's records of ``active`` ranks to their pages, from the
        latest checkpoint before ``start``; problems by rank."""
        if not active:
            return {}
        if snap.removed:
            return {r: [REMOVED] for r in active}
        self.store.sync()
        seek = min(checkpoint(snap.checkpoints.get(r, []), start) for r in active)
        reader = SpillReader(self.path)
        ranks = set(active)
        problems: dict[int, list[str]] = {}
        try:
            for rank, offset, output in reader.records(ranks, seek):
                if not pages[rank].add(offset, output):
                    ranks.discard(rank)  # the reader skips its records from now on
                    if not ranks:
                        break
        except OSError as e:
            for rank in active:
                problems.setdefault(rank, []).append(f"it could not be read: {e}")
        if reader.damaged:
            for rank in active:
                problems.setdefault(rank, []).append(
                    f"{reader.damaged} damaged records of the file were skipped")
        return problems


