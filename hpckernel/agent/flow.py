"""Flow control of what an agent sends up (``plane/credit.py``): its ranks' output, the
output of the agents below it, and its node replies go up in order, under the agent's
window of credits from the hub (or its parent agent).

A rank (or an agent below) is told that its output is taken in only once the message that
carries it has gone up, so ranks that print faster than the hub takes their output in wait
in ``print``, and the agent holds at most a window per rank. Summaries, registrations and
interrupts never wait here: the agent sends them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..plane import Message
from ..plane.credit import Credits, SendWindow, stamp_of
from ..plane.headers import PlaneHeader
from ..plane.wire import OutFrame
from .output import NodeOutput, Outgoing, Sender
from .replies import NodeRequest


class UpFlow:
    """The agent's messages on their way up (``NodeAgent.flow``): the node's output and
    replies (``output``), the window they go up under, and the credits owed to senders."""

    def __init__(self, window: int, send_up: Callable[[Sequence[OutFrame]], None],
                 tell: Callable[[Sender, int], None]) -> None:
        """``send_up`` sends a message up; ``tell`` sends a sender below its credit."""
        self.window = SendWindow(window)  # output up, to the hub or the parent agent
        self.credits: Credits[Sender] = Credits(window)  # output of ranks, agents below
        self.output = NodeOutput(max(self.window.window // 4, 64 * 1024))
        self._send_up = send_up
        self._tell = tell

    def credit(self, header: PlaneHeader) -> None:
        """Room for more output (a ``credit`` from the hub or the parent agent)."""
        if self.window.credit(stamp_of(header)):
            self.pump()

    def pump(self) -> None:
        """Send up what is ready, in order, while the window has room; then tell the ranks
        (and agents below) whose output went up."""
        ready = self.output.ready
        window = self.window
        while ready:
            out = ready[0]
            if out.size and not window.fits(out.size):
                more = window.ask()
                if more is not None:
                    self._send_up(more)
                return
            ready.popleft()
            self._send_up(out.encode(window.take(out.size) if out.size else None))
            for sender, stamp in out.credits.items():
                told = self.credits.taken(sender, stamp)
                if told is not None:
                    self._tell(sender, told)

    def arrived(self, sender: Sender, header: PlaneHeader) -> int | None:
        """An output message of ``sender`` arrived: its stamp (None if it has none)."""
        stamp = stamp_of(header)
        if stamp is not None:
            self.credits.arrived(sender, stamp)
        return stamp

    def asked(self, sender: Sender, header: PlaneHeader) -> None:
        """``sender`` waits for credit (``more``): told at once if all it sent went up."""
        stamp = stamp_of(header)
        if stamp is not None:
            told = self.credits.asked(sender, stamp)
            if told is not None:
                self._tell(sender, told)

    def passed(self, kid: bytes, msg: Message, frames: Sequence[OutFrame]) -> None:
        """Output of the agent below ``kid`` passes through, in order with ours, under this
        agent's window; its size is what the agent below counted (the step between its
        stamps)."""
        stamp = stamp_of(msg.header)
        if stamp is None:
            return
        size = max(stamp - self.credits.last_arrived(kid), 0)
        self.credits.arrived(kid, stamp)
        up = msg.header.copy()
        del up["sent"]
        self.output.ready.append(Outgoing([frames[0], b"", *frames[2:]], up, size,
                                          {kid: stamp}))
        self.pump()

    def reply(self, request: NodeRequest) -> None:
        """Send up what ``request`` has (its output first, then its node reply)."""
        self.output.take(request.id)  # output before the reply that ends it
        reply = request.take()
        if reply is not None:
            self.output.ready.append(Outgoing(reply))
        self.pump()
