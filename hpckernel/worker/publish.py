"""``hpckernel.publish(name, value)``: rank code sends a value to the hub mid-cell.

The rank's main thread queues the message on its I/O thread (``HubChannel.send``), so a
publish costs a pickle and a queue put, never a wait on the hub. The hub keeps the values
(``hpckernel.hub.live``) for ``%liveplot`` and ``ranks.live``.

In a live batch job (``python -m hpckernel.live``) the rank keeps them instead, in a bounded
history that attached notebooks read (``hpckernel.live.history``); in a program started
neither way, ``publish`` does nothing, so that one script runs either way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ..plane import kinds, pack
from ..plane.wire import OutFrame

#: Installed by the rank's ``main()``: sends packed frames to the hub (what it returns is
#: not used).
_send: Callable[[list[OutFrame]], object] | None = None
_rank: int = -1
#: Installed by the live runner: keeps (name, value) on the rank.
_keep: Callable[[str, object], None] | None = None


def install(send: Callable[[list[OutFrame]], object], rank: int) -> None:
    """Called once by the rank's ``main()`` with its channel's ``send``."""
    global _send, _rank
    _send, _rank = send, rank


def install_keeper(keep: Callable[[str, object], None]) -> None:
    """Called once by the live runner (``hpckernel.live.rank``) with its history's ``add``."""
    global _keep
    _keep = keep


def publish(name: str, value: object) -> None:
    """Send ``value`` (a number, a small array, a dict of numbers) to the hub as the latest
    value of ``name`` from this rank; ``%liveplot name`` plots them as they arrive."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"publish needs a name (a non-empty str), got {name!r}")
    if _keep is not None:  # a live job's rank (also a live kernel rank: then sent too)
        _keep(name, value)
    if _send is None:
        if _keep is None and "hpckernel.hub.kernel" in sys.modules:
            # the hub: nobody would see the value
            raise RuntimeError("hpckernel.publish works in code that runs on the ranks "
                               "(a %%px cell), not in the hub")
        return  # a program not run as a rank or a live job: nothing (more) to do
    # In band: the caller may change the array right after publishing it.
    _send(pack(kinds.LIVE, {"name": name, "rank": _rank, "time": time.time()}, value,
               has_value=True, inband=True))
