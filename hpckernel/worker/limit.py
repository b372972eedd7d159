"""The hub's cap on what one reply may carry (``hub/limits.py`` sets it per request)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from ..plane.headers import PlaneHeader
from ..plane.wire import OutFrame
from ..sizes import format_size


class ReplyTooLarge(ValueError):
    """A reply over the rank's share of ``HubKernel.max_reply_size``."""


def over_limit(frames: Sequence[OutFrame], request: PlaneHeader) -> str | None:
    """Why a reply may not go to the hub (hub/limits.py), or None if it fits its share."""
    limit = request.get("max_bytes")
    if not limit:
        return None
    size = sum(f.raw().nbytes if isinstance(f, pickle.PickleBuffer) else len(f)
               for f in frames[2:])
    if size <= limit:
        return None
    return (f"the reply is {format_size(size)}, more than the {format_size(limit)} this rank "
            f"may send to the hub ({request.get('max_bytes_note', 'HubKernel.max_reply_size')})"
            "; make it smaller on the ranks first (e.g. a slice or a reduction), or raise the "
            "limit with %config HubKernel.max_reply_size = '...'")
