"""Merging the output of many ranks into few, labelled IOPub messages.

Rules (README, "Output rules"): every output names its ranks; identical output from several ranks is
shown once with a range label (``[stdout:0-3]``), differing output per rank in rank order;
all ranks' text is coalesced into one message per stream per flush, and what exceeds the
output budget is dropped with a visible notice, never silently. Beyond a number of groups
(``HubKernel.output_groups``) the notebook gets the first ones in rank order and, at the end,
one line on the rest, which stays readable from the hub's store (``outputs.py``). Text is
held for the other ranks' copy only up to the budget's burst: in a flood, more could never be
shown at once, and holding it was what grew the hub.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..plane.groups import group_equal
from ..sizes import format_size
from ..targets import format_ranks
from .messages import Content, mime_data
from .outputs import RankOutputs

T = TypeVar("T")

#: emit(msg_type, content, metadata) publishes one IOPub message for the cell.
Emit = Callable[[str, Content, Content], None]

#: A group's text up to this long waits for the next flush when the budget has no room for
#: it now, rather than being cut: what a quiet rank prints beside a flood is kept whole.
HOLD_BACK = 2048


@dataclass
class OutputBudget:
    """Token bucket shared by all cells of a kernel, kept below jupyter_server's IOPub
    limits (1 MB/s and 1000 msg/s averaged over 3 s) so the server never drops output.

    A small part of it (``reserve_msgs``, ``reserve_bytes``) is kept for cells that have
    shown little so far: a flood or a ``clear_output`` storm cannot use it up, so the next
    cell's few lines are not dropped because the one before it took everything."""

    bytes_per_s: float = 500_000
    msgs_per_s: float = 100
    burst_s: float = 2.0
    reserve_msgs: float = 10
    reserve_bytes: float = 20_000
    _bytes: float = field(default=0, init=False)
    _msgs: float = field(default=0, init=False)
    _last: float = field(default_factory=time.monotonic, init=False)

    def __post_init__(self) -> None:
        self._bytes = self.bytes_per_s * self.burst_s
        self._msgs = self.msgs_per_s * self.burst_s

    @property
    def burst_bytes(self) -> float:
        """The most bytes one message can be granted."""
        return self.bytes_per_s * self.burst_s

    def _refill(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        self._bytes = min(self._bytes + dt * self.bytes_per_s, self.bytes_per_s * self.burst_s)
        self._msgs = min(self._msgs + dt * self.msgs_per_s, self.msgs_per_s * self.burst_s)

    def take(self, nbytes: int, reserved: bool = False) -> int | None:
        """Grant up to ``nbytes`` for one message; None means the message must be dropped.
        ``reserved``: the message may use the reserve (its cell has shown little)."""
        self._refill()
        msgs = self._msgs - (0 if reserved else self.reserve_msgs)
        available = self._bytes - (0 if reserved else self.reserve_bytes)
        if msgs < 1 or (nbytes and available < 1):
            return None
        self._msgs -= 1
        granted = int(min(nbytes, available))
        self._bytes -= granted
        return granted

    def short_of(self, msgs: int, nbytes: int) -> bool:
        """Whether ``msgs`` messages of ``nbytes`` in all would not fit now, reserve
        included (at most the reserve is asked for: more waits for no one)."""
        self._refill()
        return (self._msgs < min(msgs, self.reserve_msgs)
                or self._bytes < min(nbytes, self.reserve_bytes))


@dataclass
class _Pending:
    """A rank's text of one stream not shown yet: pieces, joined once when flushed (adding
    each piece to a string copied all of it again for every piece: quadratic in a flood)."""

    parts: list[str] = field(default_factory=list)
    since: float = 0.0
    size: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def keep(self, rest: str) -> None:
        self.parts[:] = [rest] if rest else []
        self.size = len(rest)


class OutputMerger:
    """Collects one cell's output from its target ranks and emits merged messages.

    Called from the hub's plane thread only: ``add_*`` as messages arrive, ``flush`` on a
    timer while the cell runs and with ``final=True`` once every rank has replied.
    ``keep``: where every rank's output is also kept whole, and how many groups to show.
    """

    def __init__(self, targets: list[int], emit: Emit, budget: OutputBudget,
                 hold: float = 1.0, keep: RankOutputs | None = None) -> None:
        self.targets = targets
        self.emit = emit
        self.budget = budget
        self.hold = hold  # how long to wait for the other ranks' copy of a line
        self.done: set[int] = set()
        self.streams: dict[str, dict[int, _Pending]] = {}
        self._held: dict[str, int] = {}  # bytes of each stream's text not shown yet
        self.results: dict[int, Content] = {}
        self.displays: dict[int, list[tuple[str, Content]]] = {}
        self._display_since = 0.0
        self._shown_msgs = self._shown_bytes = 0  # what this cell has shown so far
        #: what the rate limit cut since the last notice: bytes per rank, and messages
        self.dropped: dict[int, int] = {}
        self.dropped_msgs = 0
        self._notice_at = 0.0
        self.keep = keep
        self.group_limit = keep.group_limit if keep is not None else 0
        self.hidden_groups = 0
        self.hidden_ranks: set[int] = set()
        self._slots = self.group_limit  # how many more groups of new ranks may be shown
        self._shown_ranks: set[int] = set()

    # -- input ------------------------------------------------------------------------

    def add_stream(self, rank: int, name: str, text: str) -> None:
        """Text a rank printed (kept whole, merged at the next flush)."""
        if self.keep is not None:
            self.keep.add(rank, {"output_type": "stream", "name": name, "text": text})
        if not text:
            return
        pending = self.streams.setdefault(name, {}).setdefault(rank, _Pending())
        if not pending.parts:
            pending.since = time.monotonic()
        pending.add(text)
        held = self._held[name] = self._held.get(name, 0) + len(text)
        if held > self.budget.burst_bytes:
            # More than the budget lets through at once is not held for the other ranks'
            # copy, nor until the next flush: held, it grew with the ranks' speed and with
            # what the hub took in between two flushes.
            self.flush(force=True)

    def add_display(self, rank: int, msg_type: str, content: Content) -> None:
        """A rank's display or result (kept whole, merged at the next flush)."""
        if self.keep is not None:
            self.keep.add(rank, {"output_type": msg_type, **content})
        if msg_type == "execute_result":
            self.results[rank] = content
            return
        for name in sorted(self.streams):  # text printed before display() shows before it
            self._flush_stream(name, True, wait=False)  # (none waits for a later flush)
        if not any(self.displays.values()):
            self._display_since = time.monotonic()
        self.displays.setdefault(rank, []).append((msg_type, content))

    def waits_for_budget(self) -> bool:
        """Whether this cell, which has shown little, has last output the budget cannot
        take now: a flood just before it may have used the reserve kept for such cells
        (refilled within a tenth of a second), so its end is put off a little
        (``InFlight.finish``) rather than its few lines cut."""
        if not self._little_shown():
            return False
        # One message per stream that has text waiting, one for the results, and a display
        # row per display of the rank that has most.
        waiting = [[p for p in texts.values() if p.parts] for texts in self.streams.values()]
        msgs = sum(1 for pending in waiting if pending) + bool(self.results) + max(
            (len(items) for items in self.displays.values()), default=0)
        nbytes = sum(p.size for pending in waiting for p in pending)
        return bool(msgs) and self.budget.short_of(msgs, nbytes)

    def rank_done(self, rank: int) -> None:
        """``rank`` has replied: its text waits for no more."""
        self.done.add(rank)

    def notice(self, text: str) -> None:
        """A line from hpckernel itself about this cell's ranks (a node's agent lost or
        back), shown at once."""
        self.emit("stream", {"name": "stderr", "text": f"[hpckernel] {text}\n"},
                  {"hpckernel": {"notice": True}})

    # -- output -----------------------------------------------------------------------

    def flush(self, force: bool = False, final: bool = False) -> None:
        """Emit what is due (``force``: all there is); ``final``: the request ended, so also
        the results and the lines on what was not shown."""
        held = self._flush_displays(force or final)
        if not held:  # text printed after a display() waits until that display is shown
            for name in sorted(self.streams):
                self._flush_stream(name, force or final, wait=not final, last=final)
            if final:
                self._flush_results()
                self._notice(final=True)
                self._hidden_notice()
        if self.keep is not None:  # the store's caps: output not kept, and why
            for text in self.keep.take_notices(final and not held):
                self.emit("stream", {"name": "stderr", "text": f"[hpckernel] {text}\n"},
                          {"hpckernel": {"notice": True}})

    def _flush_stream(self, name: str, force: bool, wait: bool = True,
                      last: bool = False) -> None:
        pending = {r: p for r, p in self.streams[name].items() if p.parts}
        if not pending:
            return
        waiting = [r for r in self.targets if r not in self.done]
        expired = time.monotonic() - min(p.since for p in pending.values()) >= self.hold
        everyone = all(r in pending for r in waiting)
        if not (force or expired or everyone):
            return  # wait for the other ranks' copy, so identical lines collapse
        chunks: dict[int, str] = {}
        if force or expired:
            for rank, p in pending.items():
                chunks[rank] = p.text
                p.keep("")
        else:
            # Every busy rank has output: take the same number of whole lines from each.
            counts = [p.text.count("\n") for p in pending.values()]
            lines = min(counts)
            if lines == 0:
                return
            for rank, p in pending.items():
                text = p.text
                cut = _nth_newline(text, lines) + 1
                chunks[rank] = text[:cut]
                p.keep(text[cut:])
        for p in pending.values():
            if p.parts:
                p.since = time.monotonic()
        self._held[name] = sum(p.size for p in pending.values())
        groups = self._shown(group_equal(chunks))
        if not groups:
            return  # all of it beyond output_groups: kept, and summed up at the end
        self._send_stream(name, groups, wait, last)

    def _flush_displays(self, force: bool) -> bool:
        """Emit displays, identical ones across ranks collapsed (aligned by their order on
        each rank); True while some are still held for the other ranks' copy."""
        pending = {r: items for r, items in self.displays.items() if items}
        if not pending:
            return False
        waiting = [r for r in self.targets if r not in self.done]
        expired = time.monotonic() - self._display_since >= self.hold
        if force or expired:
            count = max(len(items) for items in pending.values())
        elif all(r in pending for r in waiting):
            count = min(len(items) for items in pending.values())
        else:
            return True
        for i in range(count):
            row = {r: items[i] for r, items in pending.items() if i < len(items)}
            for (msg_type, content), ranks in self._shown(group_equal(row, _json_key)):
                if msg_type == "clear_output":
                    self._send("clear_output", content, ranks)
                else:
                    self._send_rich(msg_type, content, ranks, "display")
        for items in pending.values():
            del items[:count]
        self._display_since = time.monotonic()
        return any(self.displays.values())

    def _flush_results(self) -> None:
        for content, ranks in self._shown(
                group_equal(self.results, lambda c: _json_key(c.get("data")))):
            self._send_rich("execute_result", content, ranks, "out")
        self.results.clear()

    def _shown(self, groups: list[tuple[T, list[int]]]) -> list[tuple[T, list[int]]]:
        """At most ``group_limit`` groups, in rank order; the rest are counted for the
        closing line. A group whose ranks all had no output shown yet takes one of the
        cell's ``group_limit`` slots: so the same ranks stay shown from flush to flush,
        also when some ranks' output arrives a flush later than the others'."""
        if not self.group_limit:
            return groups
        shown: list[tuple[T, list[int]]] = []
        for group in groups:
            known = not self._shown_ranks.isdisjoint(group[1])
            if len(shown) < self.group_limit and (known or self._slots > 0):
                shown.append(group)
                self._slots -= not known
            else:
                self.hidden_groups += 1
                self.hidden_ranks.update(group[1])
        for _, ranks in shown:
            self._shown_ranks.update(ranks)
        return shown

    def _hidden_notice(self) -> None:
        """One line on the groups not shown, and how to read them."""
        if not self.hidden_groups:
            return
        hidden = sorted(self.hidden_ranks)
        how = self.keep.how_to_see(hidden) if self.keep is not None else ""
        text = (f"[hpckernel] {self.hidden_groups} more output group"
                f"{'s' if self.hidden_groups > 1 else ''} from {len(hidden)} rank"
                f"{'s' if len(hidden) > 1 else ''} ({format_ranks(hidden, 80)}) not shown"
                f" (over HubKernel.output_groups = {self.group_limit})"
                + (f"; to see them: {how}" if how else "") + "\n")
        self.emit("stream", {"name": "stderr", "text": text},
                  {"hpckernel": {"ranks": hidden, "hidden": True}})
        self.hidden_groups = 0
        self.hidden_ranks.clear()

    def _send_rich(self, msg_type: str, content: Content, ranks: list[int],
                   label: str) -> None:
        data = dict(mime_data(content))
        tag = f"[{label}:{format_ranks(ranks)}]"
        if set(data) <= {"text/plain"}:
            data["text/plain"] = f"{tag} {data.get('text/plain', '')}"
        else:
            self._send("stream", {"name": "stdout", "text": tag + "\n"}, ranks)
        self._send(msg_type, {**content, "data": data}, ranks)

    def _send(self, msg_type: str, content: Content, ranks: list[int]) -> None:
        """One message, whole or dropped (a display is not cut)."""
        text = content.get("text", "")
        size = (len(text) if isinstance(text, str) else 0) or sum(
            len(str(v)) for v in mime_data(content).values())
        granted = self.budget.take(size, self._little_shown())
        if granted is None or granted < size:
            self.dropped_msgs += 1
            self._drop(ranks, size)
            self._notice()
            return
        self._count_shown(size)
        self.emit(msg_type, content, {"hpckernel": {"ranks": ranks}})

    def _count_shown(self, size: int) -> None:
        self._shown_msgs += 1
        self._shown_bytes += size

    def _little_shown(self) -> bool:
        """Whether this cell has shown little so far (it may use the budget's reserve)."""
        return (self._shown_msgs < self.budget.reserve_msgs
                and self._shown_bytes < self.budget.reserve_bytes)

    def _send_stream(self, name: str, groups: list[tuple[str, list[int]]],
                     wait: bool = True, last: bool = False) -> None:
        """One stream message with each group's labelled text. Over the budget, the cut is
        fair: the bytes granted are shared so that a group with less text than its share
        keeps all of it and the rest is split evenly (a rank that printed a line beside a
        rank that floods keeps its line); a short text that still does not fit waits for
        the next flush (``wait``: not when a display must follow it) rather than being cut,
        or at the cell's ``last`` flush may use the budget's reserve."""
        labels = [f"[{name}:{format_ranks(ranks)}] " for _, ranks in groups]
        texts = [chunk if chunk.endswith("\n") else chunk + "\n" for chunk, _ in groups]
        sizes = [len(label) + len(text) for label, text in zip(labels, texts, strict=True)]
        granted = self.budget.take(sum(sizes), self._little_shown())
        shares = fair_shares(sizes, granted) if granted is not None else [0] * len(groups)
        short = [i for i, (chunk, _) in enumerate(groups)
                 if shares[i] < sizes[i] and len(chunk) <= HOLD_BACK]
        if short and last:  # no next flush: the reserve may complete short texts
            missing = [sizes[i] - shares[i] for i in short]
            extra = self.budget.take(sum(missing), reserved=True)
            for i, more in zip(short, fair_shares(missing, extra or 0), strict=True):
                shares[i] += more
        pieces: list[str] = []
        shown: list[int] = []
        for i, (label, text, share, (chunk, ranks)) in enumerate(
                zip(labels, texts, shares, groups, strict=True)):
            room = share - len(label)
            if i in short and wait:
                self._hold_back(name, chunk, ranks)
                continue
            if room < len(text):
                self._drop(ranks, len(text) - max(room, 0))
            if room > 0:
                pieces.append(label + (text if room >= len(text) else text[:room] + "…\n"))
                shown.extend(ranks)
        if pieces:
            text = "".join(pieces)
            self._count_shown(len(text))
            self.emit("stream", {"name": name, "text": text},
                      {"hpckernel": {"ranks": sorted(shown)}})
        elif granted is None and self.dropped:
            self.dropped_msgs += 1
        if self.dropped:
            self._notice()

    def _hold_back(self, name: str, chunk: str, ranks: list[int]) -> None:
        """Put ``chunk`` back in front of these ranks' text of stream ``name``, to be sent
        at the next flush (already due)."""
        due = time.monotonic() - self.hold
        for rank in ranks:
            pending = self.streams[name].setdefault(rank, _Pending())
            pending.parts.insert(0, chunk)
            pending.size += len(chunk)
            pending.since = due
        self._held[name] = self._held.get(name, 0) + len(chunk) * len(ranks)

    def _drop(self, ranks: list[int], size: int) -> None:
        for rank in ranks:
            self.dropped[rank] = self.dropped.get(rank, 0) + size

    def _notice(self, final: bool = False) -> None:
        """Say what was cut, from which ranks: at most once a second, and once more at the
        end."""
        if not self.dropped and not self.dropped_msgs:
            return
        now = time.monotonic()
        if not final and now - self._notice_at < 1.0:
            return
        self._notice_at = now
        text = (f"\n[hpckernel] output truncated (over the output rate limit; write large "
                f"output to files): not shown {describe_cuts(self.dropped)}\n")
        self.emit("stream", {"name": "stderr", "text": text},
                  {"hpckernel": {"ranks": sorted(self.dropped), "truncated": True}})
        self.dropped.clear()
        self.dropped_msgs = 0


def fair_shares(sizes: list[int], budget: int) -> list[int]:
    """Max-min fair shares of ``budget`` for demands ``sizes``: demands below an even share
    are met whole, the others get equal shares of what is left."""
    shares = [0] * len(sizes)
    left = budget
    order = sorted(range(len(sizes)), key=sizes.__getitem__)
    for done, i in enumerate(order):
        shares[i] = min(sizes[i], left // (len(order) - done))
        left -= shares[i]
    return shares


def describe_cuts(cut: dict[int, int], most: int = 4) -> str:
    """``{0: 5_000_000, 1: 10, 2: 10}`` → ``"5.0 MB from rank 0, 10 B each from ranks
    1-2"``: ranks that lost as much together, the largest first, at most ``most`` of them."""
    by_size: dict[int, list[int]] = {}
    for rank, size in cut.items():
        by_size.setdefault(size, []).append(rank)
    groups = sorted(by_size.items(), reverse=True)
    parts = [f"{format_size(size)} from rank {ranks[0]}" if len(ranks) == 1 else
             f"{format_size(size)} each from ranks {format_ranks(ranks, 60)}"
             for size, ranks in groups[:most]]
    rest = sum(len(ranks) for _, ranks in groups[most:])
    if rest:
        parts.append(f"less from {rest} more rank{'s' if rest > 1 else ''}")
    return ", ".join(parts)


def _nth_newline(text: str, n: int) -> int:
    pos = -1
    for _ in range(n):
        pos = text.index("\n", pos + 1)
    return pos


def _json_key(item: object) -> str:
    return json.dumps(item, sort_keys=True, default=_value_key)


def _value_key(value: object) -> str:
    """What makes two values that JSON cannot carry equal: their pickles (as a node agent
    compares displays), not their repr, which names an address per process."""
    try:
        return hashlib.sha1(pickle.dumps(value, protocol=5)).hexdigest()
    except Exception:
        return repr(value)

