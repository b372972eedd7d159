"""Directories and files that hold a kernel's secrets (the HMAC key, CurveZMQ keys).

A secret file is created ``O_EXCL|O_NOFOLLOW`` at 0600 under a fresh name and renamed into
place, so that neither a planted file (which would keep its mode) nor a planted symlink
(which would be followed) ever receives a key. It goes only into a directory that is this
user's own and 0700, below parents that no other user can change: a directory another user
owns, or one that group or others may write without the sticky bit, would let them swap
the job directory for one of theirs and collect the keys.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class UnsafeDirectoryError(PermissionError):
    """A directory another user could change; the message names it and the fix."""


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def check_parents(path: str | os.PathLike[str]) -> None:
    """Raise ``UnsafeDirectoryError`` if another user could replace ``path`` or anything
    above it, as written and with symlinks resolved; parts not made yet are skipped."""
    given = Path(os.path.abspath(path))
    seen: set[Path] = set()
    for directory in [given, *given.parents,
                      *(real := Path(os.path.realpath(given))).parents, real]:
        if directory in seen:
            continue
        seen.add(directory)
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            continue
        if st.st_uid not in (0, os.geteuid()):
            raise UnsafeDirectoryError(
                f"{directory} belongs to {_owner(st.st_uid)}, who could replace what is in "
                f"it and read the kernel's keys: put the job directories in a directory of "
                f"your own (SlurmProvisioner.job_root, default ~/.hpckernel/jobs)")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            who = "others" if st.st_mode & 0o002 else "its group"
            raise UnsafeDirectoryError(
                f"{directory} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}) "
                f"without the sticky bit: they could swap the job directory and read the "
                f"kernel's keys; run `chmod go-w {directory}` (or `chmod +t`), or choose "
                f"another SlurmProvisioner.job_root")


def check_private_dir(path: Path) -> None:
    """Raise ``UnsafeDirectoryError`` unless ``path`` is a directory of this user that
    nobody else may enter (not a symlink)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectoryError(f"{path} is not a directory (a symlink or a file put "
                                   "there): remove it, or choose another job directory")
    if st.st_uid != os.geteuid():
        raise UnsafeDirectoryError(f"{path} belongs to {_owner(st.st_uid)}, not you: remove "
                                   "it, or choose another job directory")
    if st.st_mode & 0o077:
        raise UnsafeDirectoryError(f"{path} is open to other users (mode "
                                   f"{stat.S_IMODE(st.st_mode):o}): run `chmod 700 {path}`")


def make_private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) 0700, or take an existing one of this user's
    (made 0700); refuse one that another user could get at."""
    check_parents(path.parent)
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
        os.chmod(path, 0o700)
    check_private_dir(path)
    check_parents(path)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in a private directory: a new 0600 file, created before
    any byte of it is written, that replaces whatever was at ``path``."""
    check_private_dir(path.parent)
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(fresh, path)  # a link or file planted at ``path`` is replaced, not used
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
