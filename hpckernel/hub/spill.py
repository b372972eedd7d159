"""Spill files: the ranks' output of one cell that the hub keeps on disk (``outputs.py``).

One line per output, ``RANK<TAB>OFFSET<TAB>JSON\\n``: the rank, where the output starts in
that rank's output (its text or data counted as ``output_pages.output_size`` counts them), and
the output as JSON (ASCII: no tab or newline inside). A reader skips other ranks' lines
without decoding them, and starts near an offset from a checkpoint rather than at the top.

A line is a record only when it is whole: an append that fails part way (a full disk) is cut
off again, and a reader skips any line that does not end in a newline or does not decode,
counting it, so that space coming back never makes a half-written line a record.

Files are opened relative to the job directory's ``outputs`` directory, itself opened
without following a link, and never through a link (``O_NOFOLLOW``); a reader also refuses
anything that is not a regular file of this user (a FIFO would block it).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .output_pages import Output

#: one record as read back: (rank, offset in the rank's output, the output)
Record = tuple[int, int, Output]

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class SpillError(OSError):
    """A spill file that cannot be read as this user's own regular file."""


def encode(rank: int, offset: int, output: Output) -> bytes:
    """One record's line."""
    return f"{rank}\t{offset}\t{json.dumps(output, default=repr)}\n".encode("ascii")


def open_directory(path: Path, create: bool) -> int:
    """A descriptor of the ``outputs`` directory ``path`` (created 0700 if ``create``),
    opened without following a link; SpillError if it is not this user's."""
    if create:
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        os.close(fd)
        raise SpillError(errno.EPERM, f"{path} is not this user's private directory")
    return fd


@dataclass
class SpillWriter:
    """Appends records to spill files; used by the output store's writer thread only."""

    directory: Path
    _dir: int | None = None
    _file: tuple[str, int, int] | None = None  # (name, descriptor, size)

    def append(self, name: str, line: bytes) -> int:
        """Append ``line`` to file ``name``; the offset it starts at. On an OSError the
        file is cut back to what it was, and the error raised."""
        name, fd, size = self._open(name)
        done = 0
        try:
            while done < len(line):
                done += os.write(fd, line[done:])
        except OSError:
            try:
                os.ftruncate(fd, size)  # a half-written line never stays
            except OSError:
                self.close()  # and the next append finds the true size
            raise
        self._file = (name, fd, size + done)
        return size

    def _open(self, name: str) -> tuple[str, int, int]:
        if self._file is not None and self._file[0] == name:
            return self._file
        self.close()
        if self._dir is None:
            self._dir = open_directory(self.directory, create=True)
        fd = os.open(name, _APPEND, 0o600, dir_fd=self._dir)
        self._file = (name, fd, os.fstat(fd).st_size)
        return self._file

    def remove(self, name: str) -> None:
        """Remove the spill file ``name`` (closed first if it is the open one)."""
        if self._file is not None and self._file[0] == name:
            self.close()
        if self._dir is None:
            return
        try:
            os.unlink(name, dir_fd=self._dir)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Close the open spill file, if any."""
        if self._file is not None:
            os.close(self._file[1])
            self._file = None

    def shutdown(self) -> None:
        """Close the file and the directory (the store's close)."""
        self.close()
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None


@dataclass
class SpillReader:
    """Reads the records of some ranks from one spill file, in file order, from byte
    ``start`` on; ``damaged`` counts the lines that were not whole records."""

    path: Path
    damaged: int = 0

    def records(self, ranks: set[int], start: int = 0) -> Iterator[Record]:
        """The records of ``ranks`` (a set the caller may shrink while it iterates, to skip
        the ranks it has enough of); the file stays open while the iterator runs."""
        directory = open_directory(self.path.parent, create=False)
        try:
            fd = os.open(self.path.name, _READ, dir_fd=directory)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise SpillError(e.errno, f"{self.path} is a link: not followed") from None
            raise
        finally:
            os.close(directory)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            os.close(fd)
            raise SpillError(errno.EPERM, f"{self.path} is not this user's regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            f.seek(start)
            for line in f:
                rank_text, _, rest = line.partition(b"\t")
                rank = int(rank_text) if rank_text.isdigit() and len(rank_text) < 12 else None
                if rank is not None and rank not in ranks and line.endswith(b"\n"):
                    continue  # another rank's record, not decoded
                record = _decode(rank, rest, line)
                if record is None:
                    self.damaged += 1
                    continue
                yield record


def _decode(rank: int | None, rest: bytes, line: bytes) -> Record | None:
    if rank is None or not line.endswith(b"\n"):
        return None
    offset_text, _, data = rest.partition(b"\t")
    try:
        output = json.loads(data)
        offset = int(offset_text)
    except ValueError:
        return None
    if not isinstance(output, dict) or not isinstance(output.get("output_type"), str):
        return None
    return rank, offset, output
