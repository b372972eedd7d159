"""Every kind of message on the plane, declared once: its name, who sends it, and the header
fields a receiver may rely on (``check``).

The hub, the node agents and the ranks each dispatch through a table from kind to handler
(``hub/fanin``, ``agent/agent.py``, ``worker/channel.py`` and ``worker/runner.py``); the
names in those tables come from here, so that one grep finds every sender and receiver of a
kind. A message whose header lacks a field its kind requires is dropped by the receiver with
one log line (``check``), never handled half-way.

Who sends what:

- the hub (or an agent, passing it down): the requests (``REQUESTS``: run by a rank's main
  thread in arrival order), the control requests (``CONTROL_REQUESTS``: answered by a rank's
  I/O thread while the main thread runs), ``hb``, ``interrupt``, ``shutdown``, ``credit``;
- a rank: ``register``, ``reply``, ``stream``, ``display``, ``more``, ``hb``, ``live``,
  ``dapevent``;
- a node agent, for its node (or its subtree): ``nregister``, ``nsummary``, ``nstream``,
  ``display`` (with a rank range), ``nreply``, ``ndead``, ``more``, and the ranks' ``live``
  and ``dapevent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

# -- requests: the hub asks, every target rank replies once (``reply``) -------------------
EXECUTE: Final = "execute"  # run code as a cell
APPLY: Final = "apply"  # call a function
PUSH: Final = "push"  # assign values
PULL: Final = "pull"  # read values
COMPLETE: Final = "complete"
INSPECT: Final = "inspect"
PEEK: Final = "peek"  # a consistent copy of a value, while the rank runs
WHERE: Final = "where"  # the main thread's stack, while the rank runs
DAP: Final = "dap"  # a debugger request (hub/debugger.py), answered also while paused

# -- plane control, downwards ----------------------------------------------------------
HB: Final = "hb"  # heartbeat; a rank answers with its load, an agent with its summary
INTERRUPT: Final = "interrupt"  # stop the requests named in the header
SHUTDOWN: Final = "shutdown"  # leave (ranks: through MPI_Finalize)
CREDIT: Final = "credit"  # the receiver has taken in output up to a stamp (credit.py)

# -- upwards from a rank ---------------------------------------------------------------
REGISTER: Final = "register"  # a rank says who and where it is (again after a reconnect)
REPLY: Final = "reply"
STREAM: Final = "stream"  # text of stdout/stderr
DISPLAY: Final = "display"  # display_data, update_display_data, clear_output, execute_result
MORE: Final = "more"  # the sender waits for credit (credit.py)
LIVE: Final = "live"  # a value published mid-cell (hpckernel.publish)
DAPEVENT: Final = "dapevent"  # a debugged rank's DAP event (worker/debugger.py)

# -- upwards from a node agent ---------------------------------------------------------
NREGISTER: Final = "nregister"  # the agent, and the ranks registered with it since
NSUMMARY: Final = "nsummary"  # the node's load, once per heartbeat
NSTREAM: Final = "nstream"  # the node's text of one request and stream, equal text merged
NREPLY: Final = "nreply"  # the node's answer to one request
NDEAD: Final = "ndead"  # an agent below this one is gone

#: Run by a rank's main thread, one after another, in arrival order.
REQUESTS: Final = frozenset({EXECUTE, APPLY, PUSH, PULL})
#: Answered by a rank's I/O thread while its main thread runs: no queueing, no busy state.
CONTROL_REQUESTS: Final = frozenset({COMPLETE, INSPECT, PEEK, WHERE, DAP})
#: Counted against the sender's output window (credit.py).
OUTPUT: Final = frozenset({STREAM, DISPLAY, NSTREAM})

Sender = Literal["hub", "rank", "agent"]
#: A header field and the type its value must have (``int`` excludes ``bool``).
Field = tuple[str, type]


@dataclass(frozen=True)
class Kind:
    """One kind of plane message."""

    name: str
    senders: frozenset[Sender]
    #: header fields a receiver may rely on, with their types
    required: tuple[Field, ...] = ()


def _kind(name: str, *senders: Sender, required: tuple[Field, ...] = ()) -> Kind:
    return Kind(name, frozenset(senders), required)


_ID = ("id", str)
KINDS: Final[Mapping[str, Kind]] = {k.name: k for k in (
    *(_kind(name, "hub", "agent", required=(_ID,)) for name in REQUESTS | CONTROL_REQUESTS),
    _kind(HB, "hub", "agent", "rank"),
    _kind(INTERRUPT, "hub", "agent"),
    _kind(SHUTDOWN, "hub", "agent"),
    _kind(CREDIT, "hub", "agent", required=(("sent", int),)),
    _kind(REGISTER, "rank", required=(("rank", int),)),
    _kind(REPLY, "rank", required=(("status", str),)),
    _kind(STREAM, "rank", required=(("name", str), ("text", str))),
    _kind(DISPLAY, "rank", "agent", required=(("msg_type", str),)),
    _kind(MORE, "rank", "agent", required=(("sent", int),)),
    _kind(LIVE, "rank", "agent", required=(("name", str), ("rank", int))),
    _kind(DAPEVENT, "rank", "agent", required=(("rank", int), ("event", dict))),
    _kind(NREGISTER, "agent", required=(("registered", list),)),
    _kind(NSUMMARY, "agent"),
    _kind(NSTREAM, "agent", required=(("name", str), ("parts", list))),
    _kind(NREPLY, "agent", required=(_ID, ("groups", list), ("values", list))),
    _kind(NDEAD, "agent", required=(("node", str),)),
)}


def check(kind: str, header: Mapping[str, object]) -> str | None:
    """Why a message of ``kind`` with ``header`` cannot be handled (unknown kind, a required
    field missing or of the wrong type), or None if it can."""
    spec = KINDS.get(kind)
    if spec is None:
        return f"unknown message kind {kind[:40]!r}"
    for name, typ in spec.required:
        value = header.get(name)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            return f"{kind} message without a valid {name!r}"
    return None


def is_control(kind: str) -> bool:
    """Whether a request of ``kind`` is answered by a rank's I/O thread (no queueing)."""
    return kind in CONTROL_REQUESTS
