"""``hpckernel.publish(name, value)``: rank code sends a value to the hub mid-cell.

The rank's main thread queues the message on its I/O thread (``HubChannel.send``), so a
publish costs a pickle and a queue put, never a wait on the hub. The hub keeps the values
(``hpckernel.hub.live``) for ``%liveplot`` and ``ranks.live``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..plane import kinds, pack

#: Installed by the rank's ``main()``: sends packed frames to the hub.
_send: Callable[[list[Any]], Any] | None = None
_rank: int = -1


def install(send: Callable[[list[Any]], Any], rank: int) -> None:
    """Called once by the rank's ``main()`` with its channel's ``send``."""
    global _send, _rank
    _send, _rank = send, rank


def publish(name: str, value: Any) -> None:
    """Send ``value`` (a number, a small array, a dict of numbers) to the hub as the latest
    value of ``name`` from this rank; ``%liveplot name`` plots them as they arrive."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"publish needs a name (a non-empty str), got {name!r}")
    if _send is None:
        raise RuntimeError("hpckernel.publish works in code that runs on the ranks "
                           "(a %%px cell), not in the hub or a plain Python process")
    # In band: the caller may change the array right after publishing it.
    _send(pack(kinds.LIVE, {"name": name, "rank": _rank, "time": time.time()}, value,
               has_value=True, inband=True))
