"""``PR_SET_PDEATHSIG`` for the processes the kernel starts under a launcher (ranks, node
agents): Linux kills them when their parent (``rank.sh``) dies, so none is orphaned."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op where unsupported)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
