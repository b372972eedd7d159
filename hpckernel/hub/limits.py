"""How much one request may bring into the hub from the ranks.

``ranks.pull``, ``ranks.apply``, ``%%px --out``, ``%pull`` and ``%peek`` copy rank values
into the hub, the process that holds the notebook's state: a 1 GB array on each of 64 ranks
would end it. ``HubKernel.max_reply_size`` caps the bytes of one request, all targets
together. Each target gets an equal share, sent in the request, and a rank whose reply is
larger answers with a size error instead of the value (``worker.runner`` measures the
serialised reply, which costs no copy of numpy buffers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psutil

from ..plane.headers import PlaneHeader
from ..sizes import format_size, parse_size

_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class ReplyLimit:
    """A fixed number of bytes, or a share of the memory available when a request is sent."""

    text: str
    nbytes: int | None = None
    fraction: float | None = None

    @classmethod
    def parse(cls, text: str) -> ReplyLimit:
        """ValueError, saying what is accepted, unless ``text`` is a size or a share."""
        share = _SHARE.match(text)
        if share:
            fraction = float(share[1]) / 100
            if not 0 < fraction <= 1:
                raise ValueError(f"max_reply_size {text!r}: a share of the hub's memory must "
                                 "be over 0% and at most 100%")
            return cls(text.strip(), fraction=fraction)
        try:
            return cls(text.strip(), nbytes=parse_size(text))
        except ValueError as e:
            raise ValueError(f"max_reply_size {e}, or a share of the hub's available memory "
                             "('50%')") from None

    def total(self) -> int:
        """The bytes one request may bring into the hub now."""
        if self.nbytes is not None:
            return self.nbytes
        assert self.fraction is not None
        return int(psutil.virtual_memory().available * self.fraction)

    def header(self, targets: int, copies: int = 1) -> PlaneHeader:
        """What a request tells each of its ``targets`` ranks: its share, and a note for
        the error it gives when its reply would be larger. ``copies``: how many copies of
        the values the hub makes (2 when it concatenates them)."""
        total = self.total()
        note = (f"HubKernel.max_reply_size = {self.text!r}"
                + (f" of the hub's available memory = {format_size(total)}"
                   if self.fraction is not None else "")
                + (f", shared by {targets} ranks" if targets > 1 else "")
                + (", halved to concatenate" if copies == 2 else ""))
        share = total // (max(targets, 1) * copies)
        return {"max_bytes": max(share, 1), "max_bytes_note": note}
