"""The git commit of a directory and whether tracked files changed, read from ``.git`` as
data: git itself is never run.

A notebook's directory may come from anyone (an unpacked archive, a shared project): its
``.git/config`` can name commands (``core.fsmonitor``, filters, hooks) that ``git status``
would run as the user. Here only files are read — ``HEAD``, refs, ``packed-refs``,
``commondir`` and ``gitdir`` links, the index — each opened without blocking and only if it
is a regular file, read up to a size limit.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
from pathlib import Path
from typing import TypedDict

OBJECT_ID = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
#: A ref name git could have written: no ``..``, no absolute path.
REF_NAME = re.compile(r"refs/(?:[A-Za-z0-9._\-+@]+/)*[A-Za-z0-9._\-+@]+\Z")
SMALL = 1 << 16  # HEAD, a loose ref, a gitdir or commondir link
LARGE = 1 << 28  # packed-refs, the index


def _read(path: Path, limit: int = SMALL) -> bytes | None:
    """The bytes of a regular file (at most ``limit``), else None: a FIFO or device planted
    as ``.git/HEAD`` must not block or feed the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _text(path: Path) -> str | None:
    data = _read(path)
    return None if data is None else data.decode(errors="replace").strip()


def find_repository(start: Path) -> tuple[Path, Path] | None:
    """The work tree containing ``start`` and its git directory (``.git``, or where a
    ``.git`` file — a worktree, a submodule — points), else None."""
    for top in (start, *start.parents):
        dot = top / ".git"
        if dot.is_dir():
            return top, dot
        link = _text(dot)
        if link is not None:
            if not link.startswith("gitdir:"):
                return None
            gitdir = Path(link[len("gitdir:"):].strip())
            return top, gitdir if gitdir.is_absolute() else top / gitdir
    return None


def _common_dir(gitdir: Path) -> Path:
    """Where a linked worktree's shared refs and objects are (``commondir``)."""
    link = _text(gitdir / "commondir")
    if not link:
        return gitdir
    common = Path(link)
    return common if common.is_absolute() else gitdir / common


def _packed_ref(common: Path, name: str) -> str | None:
    data = _read(common / "packed-refs", LARGE)
    for line in (data or b"").decode(errors="replace").splitlines():
        oid, _, ref = line.partition(" ")
        if ref == name and OBJECT_ID.match(oid):
            return oid
    return None


def resolve_head(gitdir: Path) -> str | None:
    """The commit ``HEAD`` names (following symbolic refs), or None (no commit yet)."""
    common = _common_dir(gitdir)
    text = _text(gitdir / "HEAD")
    for _ in range(5):  # a symbolic ref may point to another one
        if text is None:
            return None
        if OBJECT_ID.match(text):
            return text
        if not text.startswith("ref:"):
            return None
        name = text[len("ref:"):].strip()
        if not REF_NAME.match(name) or ".." in name:
            return None
        # Per-worktree refs live in its own directory, the others in the common one.
        loose = _text(gitdir / name)
        text = loose if loose is not None else _text(common / name)
        if text is None:
            return _packed_ref(common, name)
    return None


def _object_format(common: Path) -> str:
    """``sha1``, or ``sha256`` for a repository made with ``--object-format=sha256``."""
    config = (_read(common / "config") or b"").decode(errors="replace")
    return "sha256" if re.search(r"(?im)^\s*objectformat\s*=\s*sha256\s*$", config) else "sha1"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Git's offset varint (index version 4): its value and the position after it."""
    byte = data[pos]
    value = byte & 0x7F
    while byte & 0x80:
        pos += 1
        byte = data[pos]
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos + 1


def _index_entries(data: bytes, oid_size: int
                   ) -> list[tuple[str, int, int, int, bytes, int]] | None:
    """``(path, mode, mtime_ns, size, object id, flags)`` of each index entry, or None for
    an index this reader does not know (another version, a split index)."""
    if len(data) < 12 or data[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3, 4):
        return None
    entries = []
    pos, previous = 12, b""
    try:
        for _ in range(count):
            start = pos
            (_, _, mtime_s, mtime_ns, _, _, mode, _, _, size) = struct.unpack(
                ">10I", data[pos:pos + 40])
            oid = data[pos + 40:pos + 40 + oid_size]
            (flags,) = struct.unpack(">H", data[pos + 40 + oid_size:pos + 42 + oid_size])
            pos += 42 + oid_size
            if flags & 0x4000:  # extended flags (version 3 and later)
                (extended,) = struct.unpack(">H", data[pos:pos + 2])
                flags |= extended << 16
                pos += 2
            if version == 4:  # the path shares a prefix with the previous one
                strip, pos = _varint(data, pos)
                end = data.index(b"\0", pos)
                name = previous[:len(previous) - strip] + data[pos:end]
                pos = end + 1
            else:
                end = data.index(b"\0", pos)
                name = data[pos:end]
                pos = start + ((end - start + 8) // 8) * 8  # NUL-padded to 8 bytes
            previous = name
            entries.append((name.decode(errors="surrogateescape"), mode,
                            mtime_s * 10**9 + mtime_ns, size, oid, flags))
    except (struct.error, ValueError, IndexError):
        return None
    if data.find(b"link", pos, pos + 8) == pos:  # split index: entries are elsewhere
        return None
    return entries


def tracked_changes(top: Path, gitdir: Path) -> bool | None:
    """Whether a tracked file differs from the index (as ``git status`` sees unstaged
    changes, without clean filters), or is unmerged; None if the index cannot be read."""
    index = gitdir / "index"
    data = _read(index, LARGE)
    if data is None:
        return None
    algorithm = _object_format(_common_dir(gitdir))
    entries = _index_entries(data, 32 if algorithm == "sha256" else 20)
    if entries is None:
        return None
    index_mtime = os.stat(index).st_mtime_ns
    for path, mode, mtime_ns, size, oid, flags in entries:
        if flags & 0x3000:  # a merge in progress: stages 1-3
            return True
        if flags & (0x8000 | 0x40000000) or mode >> 12 == 0o16:  # assumed/skip, submodule
            continue
        if flags & 0x20000000:  # intent to add
            return True
        try:
            st = os.lstat(top / path)
        except OSError:
            return True  # deleted
        if st.st_size == size and st.st_mtime_ns == mtime_ns and mtime_ns < index_mtime:
            continue  # unchanged since the index saw it (and not racily so)
        if st.st_size != size or _blob_id(top / path, st, algorithm) != oid:
            return True
    return False


def _blob_id(path: Path, st: os.stat_result, algorithm: str) -> bytes | None:
    """The object id git would give the file's content (read in pieces: it may be large),
    or None for something that is neither a file nor a symlink."""
    digest = hashlib.new(algorithm, b"blob %d\0" % st.st_size)
    if stat.S_ISLNK(st.st_mode):
        digest.update(os.fsencode(os.readlink(path)))
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    else:
        return None
    return digest.digest()


class GitState(TypedDict):
    """The commit a directory's repository is at, and whether tracked files differ from
    it (None: could not tell)."""

    commit: str
    dirty: bool | None


def git_state(cwd: Path) -> GitState | None:
    """``{"commit": id, "dirty": bool or None}`` of the repository containing ``cwd``."""
    found = find_repository(cwd)
    if found is None:
        return None
    top, gitdir = found
    commit = resolve_head(gitdir)
    if commit is None:
        return None
    try:
        dirty = tracked_changes(top, gitdir)
    except OSError:  # a file that went away or cannot be read while we looked
        dirty = None
    return {"commit": commit, "dirty": dirty}
