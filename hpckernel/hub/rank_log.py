"""``ranks.log``: what the rank launcher and the ranks write outside the plane (a rank's
writes to fd 1 and 2 below Python, MPI's own messages, crash reports), capped.

The launcher's stdout and stderr are a pipe that a thread of the hub copies into
``ranks.log`` in the job directory. When the file reaches ``RankLauncher.log_limit`` it
becomes ``ranks.log.1`` (replacing the older one) and a fresh ``ranks.log`` starts with a
notice, so the job directory holds at most twice the limit whatever the ranks write, and the
hub never more than one read's worth. ``log_tail`` reads only the end of the files.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import BinaryIO

from ..sizes import format_size

LOG_NAME = "ranks.log"
_CHUNK = 1 << 20  # one read from the pipe
_TAIL = 1 << 16  # log_tail reads the files' ends in steps of this much


class RankLog:
    """Copies the launcher's output (the read end of a pipe) into ``ranks.log``, rotating
    it at ``limit`` bytes. Started by ``RankLauncher.start``; ends at the pipe's EOF, which
    comes when the launcher and every process that shares its output have exited."""

    def __init__(self, job_dir: Path, read_fd: int, limit: int) -> None:
        self.path = job_dir / LOG_NAME
        self.limit = limit
        self._fd = read_fd
        self._thread = threading.Thread(target=self._copy, name="hpckernel-ranks-log",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait (a blocking call: run it in a thread from async code) until all output is in
        the file; whether it is."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _copy(self) -> None:
        out: BinaryIO = open(self.path, "ab")
        size = out.tell()
        try:
            while chunk := os.read(self._fd, _CHUNK):
                if size + len(chunk) > self.limit:
                    out = self._rotate(out)
                    size = out.tell()
                    chunk = chunk[-self.limit // 2:]  # one flood's read: its end
                out.write(chunk)
                out.flush()  # log_tail reads the file, not this buffer
                size += len(chunk)
        except OSError:
            pass  # a full disk: what the ranks write is dropped, they are not stopped
        finally:
            out.close()
            os.close(self._fd)

    def _rotate(self, out: BinaryIO) -> BinaryIO:
        out.close()
        os.replace(self.path, self.path.with_name(LOG_NAME + ".1"))
        fresh = open(self.path, "ab")
        fresh.write(f"[hpckernel] {LOG_NAME} reached {format_size(self.limit)} "
                    f"(RankLauncher.log_limit); the lines before are in {LOG_NAME}.1, older "
                    f"ones are gone\n".encode())
        return fresh


def log_tail(job_dir: Path, rank: int | None = None, lines: int = 15) -> str:
    """The last ``lines`` lines of the launcher log, only those of ``rank`` if given (read
    from the files' ends: a rank's lines a flood has pushed out of both files are gone)."""
    rows: list[str] = []
    for path in (job_dir / LOG_NAME, job_dir / (LOG_NAME + ".1")):
        rows = _tail_rows(path, rank, lines - len(rows)) + rows
        if len(rows) >= lines:
            break
    return "\n".join(rows[-lines:])


def _tail_rows(path: Path, rank: int | None, lines: int, most: int = 16 * _TAIL) -> list[str]:
    """Up to ``lines`` matching lines from the last ``most`` bytes of ``path``."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            start = end
            rows: list[str] = []
            while start > 0 and end - start < most:
                start = max(0, end - min(most, (end - start) * 2 or _TAIL))
                f.seek(start)
                text = f.read(end - start).decode(errors="replace")
                rows = text.splitlines()[1 if start else 0:]  # the first may be cut
                if rank is not None:
                    rows = [r for r in rows if _rank_prefix(rank).match(r)]
                if len(rows) >= lines:
                    break
            return rows[-lines:] if lines > 0 else []
    except FileNotFoundError:
        return []


def _rank_prefix(rank: int) -> re.Pattern[str]:
    # MPICH's mpiexec -prepend-rank: "[3] ..."; srun --label: "3: ..."; Open MPI's
    # --tag-output: "[1,3]<stdout>: ..." (the job's number, then the rank)
    return re.compile(rf"\s*(\[{rank}\]|{rank}:|\[\d+,{rank}\]<\w+>:)\s")
