"""Shared-memory segments for the large buffers of a rank's reply to a hub on its node.

A rank on the hub's node writes each out-of-band buffer of at least :data:`MIN_SIZE` bytes
into a file in ``/dev/shm`` — created ``O_EXCL``, mode 0600, with an unguessable name under
the kernel's prefix (:func:`prefix_for`) — and sends the name instead of the bytes: one copy
instead of two kernel copies through a socket and libzmq's I/O thread. The hub opens the
file, unlinks it at once and maps it; numpy arrays view the mapping, which lives as long as
they do. ``wire.py`` decides which buffers go this way and names them in the header.

A segment exists on its own only between the rank's :func:`create` and the hub's
:func:`attach` (milliseconds); one whose message never reached the hub is removed by
:func:`remove_leftovers` when the hub shuts down.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import re
import secrets
import stat

from .credentials import PlaneInfo

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
#: Smaller buffers go through the socket: a segment costs a few system calls on each side.
MIN_SIZE = 1 << 20
#: A segment is made only if this share of ``/dev/shm`` stays free after it: others on the
#: node (MPI's shared-memory transport among them) need it more than we do.
KEEP_FREE = 0.25
#: ``hpckernel-<kernel: 16 hex>``: one prefix per kernel (its plane), see :func:`prefix_for`.
PREFIX = re.compile(r"hpckernel-[0-9a-f]{16}\Z")
#: ``<prefix>-<128 random bits>``: plain basenames only, never a path.
NAME = re.compile(r"(hpckernel-[0-9a-f]{16})-[0-9a-f]{32}\Z")


def prefix_for(info: PlaneInfo) -> str:
    """The segment-name prefix of the kernel whose plane ``info`` describes (the same on the
    hub and on its ranks)."""
    digest = hashlib.sha256(f"{info.ipc_url}\0{info.server_public}".encode()).hexdigest()
    return f"hpckernel-{digest[:16]}"


def create(prefix: str, data: memoryview) -> str | None:
    """A new segment holding the bytes of ``data`` (a flat, contiguous view); its name, or
    None (logged at debug) when ``/dev/shm`` is missing, (nearly) full or refuses — the
    caller then sends the bytes through the socket."""
    name = f"{prefix}-{secrets.token_hex(16)}"
    path = os.path.join(SHM_DIR, name)
    try:
        fs = os.statvfs(SHM_DIR)
        if fs.f_bavail * fs.f_frsize - data.nbytes < KEEP_FREE * fs.f_blocks * fs.f_frsize:
            raise OSError(errno.ENOSPC, f"less than {KEEP_FREE:.0%} of {SHM_DIR} would be free")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as e:
        log.debug("no shared-memory segment for %d bytes: %s", data.nbytes, e)
        return None
    try:
        # write(2), not a store through a mapping: one copy all the same, and a full
        # /dev/shm is ENOSPC here rather than SIGBUS later.
        written = 0
        while written < data.nbytes:
            count = os.write(fd, data[written:])
            if count <= 0:
                raise OSError(errno.ENOSPC, "short write")
            written += count
    except BaseException as e:
        discard(name)
        if not isinstance(e, OSError):
            raise
        log.debug("no shared-memory segment for %d bytes: %s", data.nbytes, e)
        return None
    finally:
        os.close(fd)
    return name


def attach(name: str, size: int) -> memoryview:
    """Map the segment ``name`` of ``size`` bytes and remove its name, so that it lives only
    as long as the mapping (the returned view and what is made of it). ``ValueError`` if the
    segment is missing or is not one a rank of this user made."""
    if not NAME.match(name):
        raise ValueError(f"bad shared-memory segment name {name[:80]!r}")
    path = os.path.join(SHM_DIR, name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise ValueError(f"shared-memory segment {name}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise ValueError(f"shared-memory segment {name} is not a file of this user")
        os.unlink(path)
        if st.st_size != size or size <= 0:
            raise ValueError(f"shared-memory segment {name} has {st.st_size} bytes, "
                             f"expected {size}")
        return memoryview(mmap.mmap(fd, size, mmap.MAP_SHARED,
                                    mmap.PROT_READ | mmap.PROT_WRITE))
    except OSError as e:
        raise ValueError(f"shared-memory segment {name}: {e}") from None
    finally:
        os.close(fd)


def discard(name: str) -> bool:
    """Remove a segment of this user by name (a well-formed one only); whether it was."""
    if not NAME.match(name):
        return False
    path = os.path.join(SHM_DIR, name)
    try:
        if os.lstat(path).st_uid != os.geteuid():
            return False
        os.unlink(path)
    except OSError:
        return False
    return True


def remove_leftovers(prefix: str) -> int:
    """Remove the kernel's segments that no hub mapped (ranks killed mid-reply, messages
    dropped); the number removed. For the hub's shutdown and restart, when no rank sends."""
    if not PREFIX.match(prefix):
        raise ValueError(f"bad shared-memory prefix {prefix!r}")
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    return sum(discard(name) for name in names
               if (match := NAME.match(name)) and match[1] == prefix)
