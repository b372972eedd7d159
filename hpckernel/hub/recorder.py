"""The hub's provenance recorder: one record per executed cell (``hpckernel.provenance``
describes the record and reads it back).

A record goes into the cell's ``execute_reply`` metadata and is appended to the JSON-lines
log by a writer thread of its own: a notebook directory on a network file system must not
stall the kernel's event loop. A ``--noblock`` cell is recorded as ``running`` and logged
again once its ranks finish.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, cast

from .. import provenance
from ..targets import format_sorted
from ..timestamps import now
from .requests import Request

log = logging.getLogger(__name__)

#: Fields that describe where a cell ran, filled in when it ends (see HubKernel._context).
Context = Callable[[], "dict[str, object]"]
#: a provenance record: the fields ``provenance`` describes, and ``_t0`` (not logged)
Record = dict[str, object]


class Recorder:
    """Keeps and logs the provenance records of the cells (``HubKernel.recorder``;
    ``%provenance`` shows them)."""

    def __init__(self, log_file: Path, context: Context, notebook: Path | None) -> None:
        self.log_file = log_file
        self.context = context
        self.notebook = notebook
        self.records: list[Record] = []
        self._replies: dict[str, Record] = {}  # parent msg_id -> record
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hpckernel-provenance")
        self._file: IO[str] | None = None  # the log, open in the writer thread
        #: records waiting for the writer, and whether it has been asked to write them
        self._unwritten: list[Record] = []
        self._write_due = False
        self._warned = False

    def begin(self, code: str, cell_id: str | None) -> Record:
        """A new record for a cell that starts now; ``kind`` and ``targets`` are set by the
        kernel once it knows where the cell runs."""
        record: Record = {"id": uuid.uuid4().hex, "cell_id": cell_id, "execution_count": None,
                  "kind": "px", "code": code, "targets": None, "start": now(),
                  "end": None, "seconds": None, "status": "running", "error": None,
                  "ranks": {}, "notebook": str(self.notebook) if self.notebook else None,
                  "_t0": time.monotonic(), **self.context()}
        with self._lock:
            self.records.append(record)  # %provenance shows it running
        return record

    def end(self, record: Record, reply: Mapping[str, object], msg_id: str,
            request: Request | None = None) -> None:
        """The cell's reply is ready: finish the record (unless its ranks still run),
        keep it for the reply's metadata, log it."""
        record["execution_count"] = reply.get("execution_count")
        record.update(self.context())
        if reply.get("status") != "ok":
            record["error"] = _error_text(reply)
        if request is not None and not request.future.done():
            record["ranks"] = {"running": format_sorted(request.targets)}
            request.future.add_done_callback(lambda _: self.ranks_done(record, request))
        else:
            if request is not None:
                record["ranks"] = _states(request)
            self._close(record, str(reply.get("status")))
        with self._lock:
            self._replies[msg_id] = record
        self._log(record)

    def ranks_done(self, record: Record, request: Request) -> None:
        """A ``--noblock`` cell's ranks finished (called on the plane thread)."""
        record["ranks"] = _states(request)
        failed = request.error_content()
        if failed is not None:
            record["error"] = _error_text(failed)
        self._close(record, "error" if failed else "ok")
        self._log(record)

    def reply_metadata(self, msg_id: str) -> Record | None:
        """The record for the ``execute_reply`` of ``msg_id`` (asked once)."""
        with self._lock:
            record = self._replies.pop(msg_id, None)
        return None if record is None else _public(record)

    def show(self, last: int | None = None, as_json: bool = False) -> str:
        """The last ``last`` records (all: None) as a table, or as JSON lines (``%provenance``)."""
        records = [_public(r) for r in self.records[-last if last else None:]]
        if as_json:
            return "\n".join(json.dumps(r) for r in records)
        return f"{provenance.format_table(records)}\nlog: {self.log_file}"

    def close(self) -> None:
        """Write what waits and close the log (the kernel's shutdown)."""
        self._writer.submit(self._close_file)
        self._writer.shutdown(wait=True)

    # -- internals ---------------------------------------------------------------------------

    def _close(self, record: Record, status: str) -> None:
        t0 = record["_t0"]
        assert isinstance(t0, float)  # set by begin
        record["status"] = status
        record["end"] = now()
        record["seconds"] = round(time.monotonic() - t0, 3)

    def _log(self, record: Record) -> None:
        # A copy now (the record may change later), encoded by the writer thread: off the
        # cell's way to its reply. The writer is woken once for what waits, not per record.
        with self._lock:
            self._unwritten.append(_public(record))
            if self._write_due:
                return
            self._write_due = True
        self._writer.submit(self._append).add_done_callback(self._check)

    def _append(self) -> None:
        with self._lock:
            records, self._unwritten = self._unwritten, []
            self._write_due = False
        # Kept open: an open and a close per cell were a tenth of the hub's CPU per no-op
        # cell. Records are flushed whole, so readers of the log see whole lines.
        if self._file is None:
            self._file = open(self.log_file, "a")
        self._file.write("".join(json.dumps(r) + "\n" for r in records))
        self._file.flush()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _check(self, done: Future[None]) -> None:
        error = done.exception()
        if error is not None and not self._warned:
            self._warned = True  # once: the kernel's log, not every cell
            log.warning("cannot write the provenance log %s: %s (set "
                        "HubKernel.provenance_log to a writable file)", self.log_file, error)


def _error_text(content: Mapping[str, object]) -> str:
    """``ZeroDivisionError: division by zero``; a px error's value names its ranks and
    error already (``rank 1: ZeroDivisionError: ...``)."""
    ename, evalue = str(content.get("ename")), str(content.get("evalue"))
    return evalue if f"{ename}: " in evalue else f"{ename}: {evalue}"


def _states(request: Request) -> dict[str, str]:
    # The reply headers as provenance reads them (its signature predates PlaneHeader).
    return provenance.rank_states(request.targets,
                                  cast("Mapping[int, dict[str, object]]", request.replies))


def _public(record: Record) -> Record:
    return {k: v for k, v in record.items() if not k.startswith("_")}
