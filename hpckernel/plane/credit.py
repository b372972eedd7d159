"""Flow control of output on the plane: byte credits (``HubKernel.output_window``).

A sender of output (a rank; a node agent, for its ranks' output) may have at most ``window``
bytes of it that its receiver (the hub; a rank's node agent; an agent's parent in a tree)
has not taken in yet. Each output message carries ``sent``, the sender's running count of
output bytes including that message; the receiver tells the sender how far it has taken
its output in (a ``credit`` message with that count) every quarter window, and at once
when the sender says it waits (a ``more`` message with its count: everything before it
has arrived, as a peer's messages keep their order). So a rank that prints faster than
the hub takes its output in waits in ``print``, and the receiver holds at most a window
per sender, plus one message: a single message larger than the window goes when nothing
else of its sender is in flight (a large ``display``; text is sent in pieces).

Each message counts at least ``window / MESSAGES`` bytes (``SendWindow.cost``): a window
of tiny messages (``clear_output`` and a ``print`` in a loop, ≈ 100 B each) is then a
thousand messages in transit, not forty thousand, so the receiver takes a window in within
a few milliseconds and nothing queues behind it.

Nothing else waits on credits: replies, heartbeats, interrupts and registrations pass
beside output, so a rank waiting in ``print`` is still alive and interruptible.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from . import kinds
from .credentials import DEFAULT_WINDOW
from .wire import OutFrame, pack

K = TypeVar("K", bound=Hashable)
#: The most messages a full window holds (each counts at least window / MESSAGES bytes).
MESSAGES = 1024

__all__ = ["DEFAULT_WINDOW", "Credits", "SendWindow", "WaitingWindow", "credit_frames",
           "display_size", "more_frames", "stamp_of"]


def credit_frames(stamp: int) -> list[OutFrame]:
    """The receiver's word that the output up to ``stamp`` is taken in."""
    return pack(kinds.CREDIT, {"sent": stamp})


def more_frames(stamp: int) -> list[OutFrame]:
    """The sender's word that it waits for credit, having sent up to ``stamp``."""
    return pack(kinds.MORE, {"sent": stamp})


def display_size(content: Mapping[str, object]) -> int:
    """What a ``display`` counts against the window: its data's size, roughly (the values'
    text: mostly str already, base64 for images), and a little for the rest."""
    data = content.get("data")
    return 100 + (sum(len(str(v)) for v in data.values()) if isinstance(data, dict) else 0)


def stamp_of(header: Mapping[str, object]) -> int | None:
    """The ``sent`` count of an output, ``credit`` or ``more`` message (None if it has none)."""
    stamp = header.get("sent")
    return stamp if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp >= 0 \
        else None


class SendWindow:
    """The sending side: output bytes sent, and how far the receiver has taken them in.

    Not locked: a node agent's single thread uses it as it is; a rank guards it with its
    channel's condition (``worker/channel.py``)."""

    def __init__(self, window: int) -> None:
        self.window = max(int(window), 1)
        self.min_cost = max(self.window // MESSAGES, 1)
        self.sent = 0  # running count of output bytes sent
        self.acked = 0  # the count the receiver last said it has taken in
        self.asked = False  # a ``more`` is out, not answered yet

    def cost(self, size: int) -> int:
        """What a message of ``size`` bytes counts against the window."""
        return size if size > self.min_cost else self.min_cost

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` bytes may go now."""
        unacked = self.sent - self.acked
        return unacked <= 0 or unacked + self.cost(size) <= self.window

    def take(self, size: int) -> int:
        """Count a message of ``size`` bytes as sent; its stamp."""
        self.sent += self.cost(size)
        return self.sent

    def ask(self) -> list[OutFrame] | None:
        """The ``more`` message to send when a message does not fit, unless one is out."""
        if self.asked:
            return None
        self.asked = True
        return more_frames(self.sent)

    def credit(self, stamp: int | None) -> bool:
        """A ``credit`` arrived (its stamp, ``stamp_of``); True if it gave room."""
        if type(stamp) is not int or stamp <= self.acked:
            return False
        self.acked = min(stamp, self.sent)
        self.asked = False
        return True


class Credits(Generic[K]):
    """The receiving side: per sender, how far its output has arrived and been taken in
    (consumed: merged by the hub, or passed up by an agent), and what it was told."""

    def __init__(self, window: int) -> None:
        self.quantum = max(int(window) // 4, 1)
        self._arrived: dict[K, int] = {}
        self._taken: dict[K, int] = {}
        self._told: dict[K, int] = {}
        self._asked: set[K] = set()

    def reset(self) -> None:
        """New senders (the ranks were restarted)."""
        self._arrived.clear()
        self._taken.clear()
        self._told.clear()
        self._asked.clear()

    def arrived(self, sender: K, stamp: int) -> None:
        """Output of ``sender`` up to ``stamp`` arrived (for a receiver that passes it on
        later: a node agent)."""
        self._arrived[sender] = stamp

    def last_arrived(self, sender: K) -> int:
        """How far ``sender``'s output has arrived (0: nothing yet)."""
        return self._arrived.get(sender, 0)

    def taken(self, sender: K, stamp: int) -> int | None:
        """The output of ``sender`` up to ``stamp`` is taken in: the stamp to tell it now (a
        quarter window since it was last told, or it waits), or None."""
        told = self._told.get(sender, 0)
        if stamp < told:
            told = 0  # a new sender under the old name (restarted ranks)
        self._taken[sender] = stamp
        if stamp - told >= self.quantum or sender in self._asked:
            self._told[sender] = stamp
            self._asked.discard(sender)
            return stamp
        return None

    def answer(self, sender: K, msg_type: str, header: Mapping[str, object]
               ) -> list[OutFrame] | None:
        """The ``credit`` message owed to ``sender`` for its output message now taken in,
        or for its ``more`` (None: none now, or the message carries no stamp)."""
        stamp = stamp_of(header)
        if stamp is None:
            return None
        told = self.asked(sender, stamp) if msg_type == "more" else self.taken(sender, stamp)
        return None if told is None else credit_frames(told)

    def asked(self, sender: K, stamp: int) -> int | None:
        """``sender`` waits, having sent up to ``stamp``: the stamp to tell it now if all of
        that is taken in, else None (it is told as soon as more is taken in)."""
        if self._arrived.get(sender, 0) > self._taken.get(sender, 0):
            self._asked.add(sender)
            return None
        self._told[sender] = self._taken[sender] = stamp
        self._asked.discard(sender)
        return stamp


class WaitingWindow(SendWindow):
    """A :class:`SendWindow` that threads wait on (a rank: its main thread waits in
    ``print``, its I/O thread receives the credits)."""

    def __init__(self, window: int) -> None:
        super().__init__(window)
        self.cond = threading.Condition()

    def credit(self, stamp: int | None) -> bool:
        """A ``credit`` arrived (on the I/O thread): wake the threads waiting for room."""
        with self.cond:
            if not super().credit(stamp):
                return False
            self.cond.notify_all()
            return True
