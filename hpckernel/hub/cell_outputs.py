"""What a user reads of a request sent to the ranks: its handle (``_px``, what ``%%px
--noblock`` returns) and each rank's whole output (``%pxoutput``, ``_px.output(rank)``,
``_px.stdout``, ``_px.lines(rank)``), read from the hub's store (``outputs.py``).

Reads are bounded: ``%pxoutput`` shows a page (``HubKernel.output_page``) and says how to see
the next; a whole rank's output (``_px.output(rank)``, an item of ``_px.stdout``) is read only
if it fits the hub's reply limit (``HubKernel.max_reply_size``), else the error says how to
read it in pieces; ``_px.lines(rank)`` reads one output at a time, from disk as it goes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import overload

from ..plane.groups import group_equal
from ..sizes import format_size
from ..targets import TargetError, format_ranks, parse_targets
from .limits import ReplyLimit
from .messages import Content, IOPubMessage
from .outputs import Output, RankOutputs
from .requests import Request

#: publish(outputs, notice): show ranks' outputs in the current cell, then a notice line
Show = Callable[[dict[int, list[Output]], str], None]

#: the least a rank gets of a page shared by many ranks
MIN_SHARE = 4096
#: the most outputs other than text one page shows (a message each: at the output budget's
#: 100 messages a second, a page of 25,000 small displays took minutes)
PAGE_OUTPUTS = 200


class OutputTooLarge(ValueError):
    """Output too large for the hub to read at once; the message says how to read it."""


@dataclass
class ReadLimits:
    """How much kept output one read brings into the hub; one object shared by the
    controller and every cell's outputs, so that ``%config`` changes reach them all."""

    page: int = 10**6  # what one %pxoutput shows (HubKernel.output_page)
    reply: ReplyLimit = field(default_factory=lambda: ReplyLimit.parse("50%"))


class CellOutputs:
    """Each rank's whole output and error of one request, once it has ended: what
    ``%pxoutput`` and ``_px.output(rank)`` read, also what the notebook was not shown.

    Holds no ``Request``: a request sits in reference cycles (its futures, its merger), and
    one kept for the last ``output_history`` cells would outlive the young GC generations,
    so that finished requests piled up until a full collection."""

    def __init__(self, request: Request, size: int, show: Show, limits: ReadLimits) -> None:
        self.label = request.label
        self.targets = request.targets
        self.size = size  # of the kernel, to read target specs
        self.kept = request.outputs
        self.replies = request.replies
        self._show = show
        self.limits = limits
        self.finished = threading.Event()
        request.future.add_done_callback(lambda _: self.finished.set())

    def _store(self) -> RankOutputs:
        self.finished.wait()
        if self.kept is None:
            raise ValueError(f"{self.label}: this request keeps no output")
        return self.kept

    def _error(self, rank: int) -> list[Output]:
        error = self.replies.get(rank)
        if error is None or error.get("status") == "ok":
            return []
        return [{"output_type": "error", "ename": str(error.get("ename")),
                 "evalue": str(error.get("evalue")),
                 "traceback": list(error.get("traceback") or [])}]

    def _check_fits(self, ranks: list[int], what: str) -> None:
        """OutputTooLarge unless ``ranks``' whole output fits the reply limit (twice: the
        parts and what is made of them are in memory together)."""
        totals = self._store().totals(ranks)
        total = sum(totals.values())
        limit = self.limits.reply.total() // 2
        if total <= limit:
            return
        biggest = max(totals, key=totals.__getitem__)
        raise OutputTooLarge(
            f"{what} of rank{'s' if len(ranks) > 1 else ''} {format_ranks(ranks, 40)} is "
            f"{format_size(total)}, more than the hub may read at once ({format_size(limit)}: "
            f"half of HubKernel.max_reply_size = {self.limits.reply.text!r}); read it line by "
            f"line with _px.lines({biggest}) or page by page with "
            f"{self.kept.how_to_see([biggest], 1) if self.kept else '%pxoutput'}")

    def get(self, ranks: list[int]) -> dict[int, list[Output]]:
        """The whole outputs of ``ranks`` (waits for the request to end), a failed rank's
        error last; OutputTooLarge if they do not fit the reply limit."""
        self._check_fits(ranks, "the output")
        found = self._store().read(ranks).outputs
        for rank in ranks:
            found.setdefault(rank, []).extend(self._error(rank))
        return {r: o for r, o in found.items() if o}

    def text(self, rank: int, name: str) -> str:
        """``rank``'s whole text of stream ``name``, read output by output."""
        self._check_fits([rank], f"the {name}")
        return "".join(o["text"] for o in self._store().outputs_of(rank)
                       if o["output_type"] == "stream" and o["name"] == name)

    def lines(self, rank: int, name: str) -> Iterator[str]:
        """``rank``'s lines of stream ``name`` (with their newlines), read as they are
        asked for: the hub holds one output and one line at a time."""
        rest = ""
        for output in self._store().outputs_of(rank):
            if output["output_type"] != "stream" or output["name"] != name:
                continue
            text = rest + output["text"]
            start = 0
            while (end := text.find("\n", start)) >= 0:
                yield text[start:end + 1]
                start = end + 1
            rest = text[start:]
        if rest:
            yield rest

    def display(self, spec: str | int | Sequence[int] | None = "all", start: int = 0) -> None:
        """Publish a page of the output of the ranks ``spec`` names into the current cell,
        from ``start`` in each rank's output: identical outputs collapsed, with no limit
        on groups, and a line on how to see the next page."""
        chosen = parse_targets(spec, self.size)
        outside = sorted(set(chosen) - set(self.targets))
        if outside:
            raise TargetError(f"{self.label} ran on ranks {format_ranks(self.targets)}, "
                              f"not on {format_ranks(outside)}")
        if start < 0:
            raise ValueError(f"--from {start}: an offset in the ranks' output is 0 or more")
        share = max(self.limits.page // len(chosen), MIN_SHARE)
        page = self._store().read(chosen, start, share, max(PAGE_OUTPUTS // len(chosen), 1))
        outputs = page.outputs
        for rank in chosen:
            if rank not in page.more:
                outputs.setdefault(rank, []).extend(self._error(rank))
        notice = ""
        if page.more:
            more = sorted(page.more)
            end = min(page.ends[r] for r in more)
            total = max(page.totals[r] for r in more)
            notice = (f"[hpckernel] shown {format_size(start)} to {format_size(end)} of the "
                      f"{format_size(total)} of output of rank{'s' if len(more) > 1 else ''} "
                      f"{format_ranks(more, 60)} (HubKernel.output_page); the next page: "
                      f"{self.kept.how_to_see(more, end) if self.kept else ''}")
        self._show({r: o for r, o in outputs.items() if o}, notice)

    def streams(self, name: str) -> RankTexts:
        """Each target's whole text of stream ``name``, in target order, read on access."""
        return RankTexts(self, name)


class RankTexts(Sequence[str]):
    """``_px.stdout``/``_px.stderr``: each target's whole text of one stream, in target
    order; an item is read from the hub's store when it is asked for, not before."""

    def __init__(self, cell: CellOutputs, name: str) -> None:
        self.cell, self.name = cell, name

    def __len__(self) -> int:
        return len(self.cell.targets)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        return self.cell.text(self.cell.targets[index], self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # compared by contents, as a list is

    def __repr__(self) -> str:
        return repr(list(self))


class PxHandle:
    """A cell sent to the ranks (``_px`` in the hub is the last one): what ``%%px
    --noblock`` returns, ``%pxresult`` shows, and where each rank's whole output is read
    (``output(rank)``, ``stdout``, ``stderr``, ``lines(rank)``, ``display_outputs(ranks)``)."""

    def __init__(self, request: Request, replay: Callable[[Request], None],
                 cell: CellOutputs) -> None:
        self.request = request
        self._replay = replay
        self.cell = cell

    @property
    def targets(self) -> list[int]:
        """The ranks the cell was sent to."""
        return self.request.targets

    def ready(self) -> bool:
        """Whether every target has answered (or failed)."""
        return self.request.future.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True if the ranks are done."""
        try:
            self.request.future.result(timeout)
        except FutureTimeout:
            return False
        return True

    @property
    def outputs(self) -> list[IOPubMessage]:
        """The merged IOPub messages (msg_type, content, metadata) kept so far."""
        return list(self.request.captured or [])

    def result(self, timeout: float | None = None) -> list[object]:
        """Wait, raise RemoteError if some rank failed, else each rank's reply value."""
        self.request.future.result(timeout)
        self.request.raise_for_errors()
        return self.request.value_list()

    def output(self, rank: int) -> list[Output]:
        """Everything ``rank`` sent for this cell, as nbformat outputs (``stream``,
        ``display_data``, ``execute_result``, and its ``error``), whatever the notebook
        was shown. Waits for the cell to end; OutputTooLarge beyond the reply limit."""
        return self.cell.get([rank]).get(rank, [])

    @property
    def stdout(self) -> RankTexts:
        """Each target's whole stdout, in target order (waits for the cell to end; each
        rank's read when it is asked for)."""
        return self.cell.streams("stdout")

    @property
    def stderr(self) -> RankTexts:
        """Each target's whole stderr, in target order (waits for the cell to end; each
        rank's read when it is asked for)."""
        return self.cell.streams("stderr")

    def lines(self, rank: int, name: str = "stdout") -> Iterator[str]:
        """``rank``'s lines of stream ``name``, read from the hub's store as they are asked
        for (any size of output; waits for the cell to end)."""
        return self.cell.lines(rank, name)

    def display_outputs(self, ranks: str | int | Sequence[int] | None = None,
                        start: int = 0) -> None:
        """Publish the output into the current cell: as the cell showed it (what
        ``%pxresult`` does), or with ``ranks`` (a target spec, ``'3:8'``) a page of those
        ranks' whole output from ``start``, identical outputs collapsed, with no limit on
        groups."""
        self.request.future.result()
        if ranks is None:
            self._replay(self.request)
        else:
            self.cell.display(ranks, start)

    def __await__(self) -> Generator[object, None, list[object]]:
        yield from asyncio.wrap_future(self.request.future).__await__()
        self.request.raise_for_errors()
        return self.request.value_list()

    def __repr__(self) -> str:
        state = "done" if self.ready() else "running"
        if self.ready() and self.request.errors:
            state = f"failed on ranks {format_ranks(self.request.errors)}"
        return f"<PxHandle {self.request.label} on ranks {format_ranks(self.targets)}: {state}>"


def render_outputs(outputs: dict[int, list[Output]]) -> list[IOPubMessage]:
    """IOPub messages (msg_type, content, metadata) showing each rank's whole output,
    ranks with identical output together, labelled as the merged output is; consecutive
    text of one stream in one message (10,000 ranks' lines are one message, not 10,000)."""
    messages: list[IOPubMessage] = []
    last_ranks: list[int] = []  # the ranks in the metadata of messages[-1]
    for kept, ranks in group_equal(outputs, _output_key):
        label = format_ranks(ranks)
        meta: Content = {"hpckernel": {"ranks": ranks}}
        for output in kept:
            kind = output["output_type"]
            if kind == "clear_output":
                continue  # it cleared the rank's own cell; here it would clear this one
            content = {k: v for k, v in output.items()
                       if k not in ("output_type", "transient")}
            if kind == "stream":
                text = output["text"]
                content["text"] = f"[{output['name']}:{label}] {text}" + (
                    "" if text.endswith("\n") else "\n")
            elif kind == "error":
                content["traceback"] = [f"[error:{label}] {output['ename']}: "
                                        f"{output['evalue']}", *output["traceback"]]
            elif kind in ("display_data", "update_display_data", "execute_result"):
                tag = f"[{'out' if kind == 'execute_result' else 'display'}:{label}]"
                data = dict(content.get("data", {}))
                if set(data) <= {"text/plain"}:  # labelled as merge.py labels them
                    data["text/plain"] = f"{tag} {data.get('text/plain', '')}"
                else:
                    messages.append(("stream", {"name": "stdout", "text": tag + "\n"}, meta))
                    last_ranks = ranks
                content = {**content, "data": data}
                content.pop("execution_count", None)
                kind = "display_data"  # not a result of the cell showing it
            last = messages[-1] if messages else None
            if (kind == "stream" and last is not None and last[0] == "stream"
                    and last[1]["name"] == content["name"]):
                last_ranks = last_ranks + ranks
                text = f"{last[1]['text']}{content['text']}"
                messages[-1] = ("stream", {**last[1], "text": text},
                                {"hpckernel": {"ranks": last_ranks}})
            else:
                messages.append((kind, content, meta))
                last_ranks = ranks
    return messages


def _output_key(outputs: list[Output]) -> str:
    return json.dumps(outputs, sort_keys=True, default=str)
