"""Requests in flight from the hub to a set of ranks, and how their results read."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import zmq

from ..plane.groups import group_equal
from ..plane.headers import PlaneHeader
from ..targets import format_ranks
from .errors import HubError
from .merge import OutputMerger
from .messages import ErrorContent, IOPubMessage, Parent
from .outputs import RankOutputs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from typing_extensions import Buffer


class RemoteError(HubError, RuntimeError):
    """Raised in the hub by the ``ranks`` API when code failed on some ranks.

    ``errors`` maps each failed rank to its ``ename``/``evalue``/``traceback``.
    """

    def __init__(self, message: str, errors: dict[int, PlaneHeader],
                 traceback: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors
        self.traceback = traceback or []

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of the hub-side stack, which says nothing useful.
        return [*self.traceback, f"RemoteError: {self}"]


@dataclass
class Request:
    """One request sent to ``targets``; its future resolves to itself when every target has
    replied, died, or been given up on after an interrupt."""

    kind: str
    targets: list[int]
    parent: Parent | None = None
    label: str = ""
    execution_count: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    merger: OutputMerger | None = None
    #: every rank's whole output, kept by the hub; also how many error groups to show
    outputs: RankOutputs | None = None
    #: IOPub messages kept for later display instead of being published (``--noblock``)
    captured: list[IOPubMessage] | None = None
    replies: dict[int, PlaneHeader] = field(default_factory=dict)
    #: each rank's reply value, unpickled: whatever the request's kind answers (a pull's
    #: list of values, an apply's result); readers of every kind index into it
    values: dict[int, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    interrupted_at: float | None = None
    reinterrupted: bool = False  # interrupted again, being late to stop (inflight.py)
    #: what was sent, per node agent, while the request is open (a node whose agent comes
    #: back gets it again: fanin/agents.py)
    sent: Sequence[tuple[str, Sequence[Buffer | zmq.Frame]]] = field(default_factory=list)
    #: until when its end waits for the output budget to show its last lines (inflight.py)
    last_output_by: float | None = None
    #: why the request's output could not all be shown (it still ended)
    output_error: str | None = None
    future: Future[Request] = field(default_factory=Future)

    @cached_property
    def target_set(self) -> frozenset[int]:
        """``targets`` as a set, for the per-reply membership tests."""
        return frozenset(self.targets)

    @property
    def done(self) -> bool:
        """Whether every target has an answer (a reply, or an error in its place)."""
        return len(self.replies) >= len(self.targets)

    @property
    def errors(self) -> dict[int, PlaneHeader]:
        """The reply headers of the ranks that failed, by rank."""
        # Filter, then sort: at thousands of ranks nearly all replies are "ok".
        return dict(sorted((r, h) for r, h in self.replies.items() if h.get("status") != "ok"))

    def error_content(self) -> ErrorContent | None:
        """One error for the notebook naming the failed ranks, identical tracebacks
        collapsed, the first ``HubKernel.output_groups`` kinds of error in full and a line
        on the others; None when every rank succeeded."""
        errors = self.errors
        if not errors:
            if self.output_error is None:
                return None
            return {"ename": "OutputError", "evalue": self.output_error,
                    "traceback": [f"[hpckernel] {self.output_error}"]}
        groups = group_equal(errors, lambda e: (e.get("ename"), e.get("evalue"),
                                                tuple(e.get("traceback") or ())))
        names = {e.get("ename") for e, _ in groups}
        ename = names.pop() if len(names) == 1 else "RemoteError"
        limit = self.outputs.group_limit if self.outputs is not None else 0
        shown, hidden = (groups[:limit], groups[limit:]) if limit else (groups, [])
        more = ""
        if hidden:
            ranks = sorted(r for _, rs in hidden for r in rs)
            how = self.outputs.how_to_see(ranks) if self.outputs is not None else ""
            more = (f"{len(hidden)} more kinds of error on {len(ranks)} ranks "
                    f"({format_ranks(ranks, 80)}) not shown" + (f"; to see them: {how}" if how
                                                            else ""))
        summary = "; ".join([f"rank{'s' if len(r) > 1 else ''} {format_ranks(r)}: "
                             f"{e.get('ename')}: {e.get('evalue')}" for e, r in shown]
                            + ([more] if more else []))
        traceback: list[str] = []
        for err, ranks in shown:
            traceback.append(f"[error:{format_ranks(ranks)}] {err.get('ename')}: "
                             f"{err.get('evalue')}")
            traceback.extend(err.get("traceback") or [])
        ok = [r for r in self.targets if r not in errors]
        if more:
            traceback.append(f"[hpckernel] {more}")
        if ok:
            traceback.append(f"(ranks {format_ranks(ok, 80)} succeeded)")
        if self.output_error is not None:
            traceback.append(f"[hpckernel] {self.output_error}")
        return {"ename": str(ename), "evalue": summary, "traceback": traceback}

    def raise_for_errors(self) -> None:
        """Raise ``RemoteError`` (``error_content``'s text) if some rank failed."""
        content = self.error_content()
        if content is not None:
            raise RemoteError(content["evalue"], self.errors, content["traceback"])

    def value_list(self) -> list[object]:
        """Each target's reply value, in target order (None for a rank without one)."""
        return [self.values.get(r) for r in self.targets]
