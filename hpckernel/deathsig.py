"""``PR_SET_PDEATHSIG`` for the processes the kernel starts under a launcher (ranks, node
agents): Linux kills them when their parent (``rank.sh``) dies, so none is orphaned."""

from __future__ import annotations

import ctypes
import os
import signal

#: The pid of the process that started this one, which ``launcher/rank.sh`` gives the rank
#: and the node agent it starts: Linux kills a process when its parent dies only if the
#: parent was alive when it asked, and Python takes a while to get there.
PARENT_ENV = "HPCKERNEL_PARENT_PID"


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op where unsupported);
    exit at once if the parent ``PARENT_ENV`` names is gone already (a job cancelled while
    its ranks start), since nobody else would end this process then."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = os.environ.pop(PARENT_ENV, "")  # for this process only, not its children
    if parent.isdigit():
        try:
            os.kill(int(parent), 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # alive, as someone else (never the case for rank.sh)
