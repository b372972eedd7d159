"""Running code on the ranks from the hub: the engine behind ``%%px`` and ``ranks``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..targets import format_ranks, parse_targets
from . import transfer
from .allocation import Allocation
from .limits import ReplyLimit
from .pool import RankPool, describe_unavailable
from .requests import RemoteError, Request

#: Requests whose replies carry no value, so no share of HubKernel.max_reply_size is worked
#: out for them (reading the available memory costs ≈50 µs, and every cell is one).
_NO_VALUE_KINDS = frozenset({"execute", "push"})

#: the IOPub parent of the cell that is running now (from the kernel)
ParentGetter = Callable[[], "dict[str, Any] | None"]


class PxHandle:
    """A cell sent to the ranks; what ``%%px --noblock`` returns and ``%pxresult`` shows."""

    def __init__(self, request: Request, replay: Callable[[Request], None]) -> None:
        self.request = request
        self._replay = replay

    @property
    def targets(self) -> list[int]:
        return self.request.targets

    def ready(self) -> bool:
        return self.request.future.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True if the ranks are done."""
        try:
            self.request.future.result(timeout)
        except FutureTimeout:
            return False
        return True

    @property
    def outputs(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """The merged IOPub messages (msg_type, content, metadata) kept so far."""
        return list(self.request.captured or [])

    def result(self, timeout: float | None = None) -> list[Any]:
        """Wait, raise RemoteError if some rank failed, else each rank's reply value."""
        self.request.future.result(timeout)
        self.request.raise_for_errors()
        return self.request.value_list()

    def display_outputs(self) -> None:
        """Publish the kept output into the current cell (what ``%pxresult`` does)."""
        self.request.future.result()
        self._replay(self.request)

    def __await__(self) -> Generator[Any, None, list[Any]]:
        yield from asyncio.wrap_future(self.request.future).__await__()
        self.request.raise_for_errors()
        return self.request.value_list()

    def __repr__(self) -> str:
        state = "done" if self.ready() else "running"
        if self.ready() and self.request.errors:
            state = f"failed on ranks {format_ranks(self.request.errors)}"
        return f"<PxHandle {self.request.label} on ranks {format_ranks(self.targets)}: {state}>"


class PxController:
    """Default targets, the last non-blocking cell, and the calls both faces share."""

    def __init__(self, pool: RankPool, parent: ParentGetter,
                 publish: Callable[[str, dict[str, Any], dict[str, Any],
                                    dict[str, Any] | None], None]) -> None:
        self.pool = pool
        self.parent = parent
        self.publish = publish
        self.targets = "all"
        self.block = True
        self.last: PxHandle | None = None
        self.allocation: Allocation | None = None  # the Slurm job the hub runs in, if any
        #: the bytes one request may bring into the hub (HubKernel.max_reply_size)
        self.reply_limit = ReplyLimit.parse("50%")

    @property
    def size(self) -> int:
        return self.pool.size

    def resolve(self, spec: Any) -> list[int]:
        return parse_targets(self.targets if spec is None else spec, self.size)

    def submit(self, kind: str, targets: list[int], header: dict[str, Any] | None = None,
               value: Any = None, *, block: bool = True, label: str = "",
               execution_count: int | None = None, output: str | None = None,
               per_rank: dict[int, Any] | None = None) -> PxHandle:
        header = header or {}
        if kind not in _NO_VALUE_KINDS and "max_bytes" not in header:
            header = {**header, **self.reply_limit.header(len(targets))}
        request = self.pool.submit(kind, targets, header, value, parent=self.parent(),
                                   output=output or ("live" if block else "capture"),
                                   label=label, per_rank=per_rank)
        request.execution_count = execution_count
        handle = PxHandle(request, self._replay)
        if not block:
            self.last = handle
        return handle

    def _replay(self, request: Request) -> None:
        parent = self.parent()
        for msg_type, content, metadata in request.captured or []:
            self.publish(msg_type, content, metadata, parent)

    def wait_ready(self, timeout: float | None = None) -> None:
        self.pool.ready.result(timeout)

    def run(self, kind: str, targets: list[int], header: dict[str, Any] | None = None,
            value: Any = None) -> list[Any]:
        """Synchronous round trip for the ``ranks`` API; raises RemoteError on failure."""
        self.wait_ready()
        handle = self.submit(kind, targets, header, value)
        return handle.result()

    # -- data in and out (transfer.py says how) ----------------------------------------

    def push(self, targets: list[int], values: dict[str, Any], scatter: bool = False
             ) -> PxHandle:
        """Assign ``values`` on ``targets``: the same everywhere, or split with ``scatter``."""
        pieces = transfer.per_rank(values, targets, scatter)
        return self.submit("push", targets, value=None if pieces else values,
                           per_rank=pieces, output="none", label="push")

    def pull(self, targets: list[int], names: list[str], concat: bool = False) -> PxHandle:
        """Read ``names`` on ``targets``; ``transfer.collect`` turns the reply into lists.
        With ``concat`` the hub briefly holds the parts and their concatenation: each rank
        may send half as much."""
        limit = self.reply_limit.header(len(targets), copies=2 if concat else 1)
        return self.submit("pull", targets, {"names": names, **limit}, output="none",
                           label="pull")

    def gather(self, targets: list[int], names: list[str], concat: bool = False
               ) -> dict[str, Any]:
        """Synchronous pull: each name's values (a list, or one array with ``concat``)."""
        self.wait_ready()
        handle = self.pull(targets, names, concat)
        handle.wait()
        return finish_gather(handle.request, names, concat)

    # -- looking into running ranks ------------------------------------------------------

    def live(self, targets: list[int]) -> tuple[list[int], str]:
        """The targets that can answer (not dead or starting), and a note on the others."""
        infos = self.pool.snapshot()
        gone = [infos[r] for r in targets if infos[r].state in ("dead", "starting")]
        live = [r for r in targets if infos[r].state not in ("dead", "starting")]
        return live, describe_unavailable(gone) if gone else ""

    def ask(self, kind: str, targets: list[int], header: dict[str, Any],
            timeout: float = 10.0) -> Request:
        """A request the ranks' I/O threads answer while the ranks run (``peek``,
        ``where``); a rank silent for ``timeout`` s counts as failed."""
        self.wait_ready()
        handle = self.submit(kind, targets, header, output="none", label=kind)
        if not handle.wait(timeout):
            self.pool.expire(handle.request, f"did not answer within {timeout:g} s (is its "
                             "main thread in C code that holds the GIL?)")
            handle.wait()
        return handle.request


def finish_gather(request: Request, names: list[str], concat: bool) -> dict[str, Any]:
    """The gathered values of a finished pull: lists, or arrays with ``concat``."""
    values = transfer.collect(request, names)
    return {n: transfer.concat(n, v) if concat else v for n, v in values.items()}


__all__ = ["PxController", "PxHandle", "RemoteError"]
