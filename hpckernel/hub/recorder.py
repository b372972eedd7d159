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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from .. import provenance
from ..targets import format_sorted
from ..timestamps import now
from .requests import Request

log = logging.getLogger(__name__)

#: Fields that describe where a cell ran, filled in when it ends (see HubKernel._context).
Context = Callable[[], "dict[str, Any]"]


class Recorder:
    def __init__(self, log_file: Path, context: Context, notebook: Path | None) -> None:
        self.log_file = log_file
        self.context = context
        self.notebook = notebook
        self.records: list[dict[str, Any]] = []
        self._replies: dict[str, dict[str, Any]] = {}  # parent msg_id -> record
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hpckernel-provenance")
        self._file: IO[str] | None = None  # the log, open in the writer thread
        #: records waiting for the writer, and whether it has been asked to write them
        self._unwritten: list[dict[str, Any]] = []
        self._write_due = False
        self._warned = False

    def begin(self, code: str, cell_id: str | None) -> dict[str, Any]:
        """A new record for a cell that starts now; ``kind`` and ``targets`` are set by the
        kernel once it knows where the cell runs."""
        record = {"id": uuid.uuid4().hex, "cell_id": cell_id, "execution_count": None,
                  "kind": "px", "code": code, "targets": None, "start": now(),
                  "end": None, "seconds": None, "status": "running", "error": None,
                  "ranks": {}, "notebook": str(self.notebook) if self.notebook else None,
                  "_t0": time.monotonic(), **self.context()}
        with self._lock:
            self.records.append(record)  # %provenance shows it running
        return record

    def end(self, record: dict[str, Any], reply: dict[str, Any], msg_id: str,
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

    def ranks_done(self, record: dict[str, Any], request: Request) -> None:
        """A ``--noblock`` cell's ranks finished (called on the plane thread)."""
        record["ranks"] = _states(request)
        failed = request.error_content()
        if failed is not None:
            record["error"] = _error_text(failed)
        self._close(record, "error" if failed else "ok")
        self._log(record)

    def reply_metadata(self, msg_id: str) -> dict[str, Any] | None:
        """The record for the ``execute_reply`` of ``msg_id`` (asked once)."""
        with self._lock:
            record = self._replies.pop(msg_id, None)
        return None if record is None else _public(record)

    def show(self, last: int | None = None, as_json: bool = False) -> str:
        records = [_public(r) for r in self.records[-last if last else None:]]
        if as_json:
            return "\n".join(json.dumps(r) for r in records)
        return f"{provenance.format_table(records)}\nlog: {self.log_file}"

    def close(self) -> None:
        self._writer.submit(self._close_file)
        self._writer.shutdown(wait=True)

    # -- internals ---------------------------------------------------------------------------

    def _close(self, record: dict[str, Any], status: str) -> None:
        record["status"] = status
        record["end"] = now()
        record["seconds"] = round(time.monotonic() - record["_t0"], 3)

    def _log(self, record: dict[str, Any]) -> None:
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


def _error_text(content: dict[str, Any]) -> str:
    """``ZeroDivisionError: division by zero``; a px error's value names its ranks and
    error already (``rank 1: ZeroDivisionError: ...``)."""
    ename, evalue = str(content.get("ename")), str(content.get("evalue"))
    return evalue if f"{ename}: " in evalue else f"{ename}: {evalue}"


def _states(request: Request) -> dict[str, str]:
    return provenance.rank_states(request.targets, request.replies)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}
