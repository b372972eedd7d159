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
  and ``lend``, and the ranks' ``dapevent``.

A live batch job (``hpckernel/live``) adds the kinds starting with ``l``: requests its
endpoint sends its ranks through their agents (``LIVE_REQUESTS``: the safepoint protocol,
stopping a cell, published values), a rank's ``lend``, and what an attached notebook and
the endpoint say to each other (``lhello``/``lwelcome``, ``lping``/``lstate``, ``lnotice``,
``ldetach``). The notebook sends the endpoint ``execute`` (a cell, run at a safepoint),
``peek``, ``where``, ``lvals`` and ``interrupt``; the endpoint passes it the agents'
``nregister``, ``nsummary``, ``nstream``, ``display`` and ``nreply`` of its requests.
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

# -- a live batch job: the endpoint to its ranks (through their agents), each answered once
LARM: Final = "larm"  # arm for a cell: answer the safepoint count reached (safepoints.py)
LRUN: Final = "lrun"  # run the armed cell at safepoint ``at``; answered once it ran
LCANCEL: Final = "lcancel"  # forget the armed cell
LPARK: Final = "lpark"  # hold the cell where it can stop alike on every rank; answered then
LUNPARK: Final = "lunpark"  # go on (``stop``: stop the held cell with KeyboardInterrupt)
LVALS: Final = "lvals"  # published values after a sequence number (the rank's history)

# -- a live batch job: upwards from a rank, and between notebook and endpoint
LEND: Final = "lend"  # a rank's program ended (status, error)
LHELLO: Final = "lhello"  # a notebook attaches (answered by lwelcome, then nregister each)
LWELCOME: Final = "lwelcome"  # the job: size, nodes, state
LPING: Final = "lping"  # the notebook is still there (answered by lstate)
LSTATE: Final = "lstate"  # the programs' state: ended ranks, failures, all done
LNOTICE: Final = "lnotice"  # a line for the output of the notebook's request ``id``
LDETACH: Final = "ldetach"  # the notebook leaves: its queued cells are dropped

#: Run by a rank's main thread, one after another, in arrival order.
REQUESTS: Final = frozenset({EXECUTE, APPLY, PUSH, PULL})
#: Answered by a rank's I/O thread while its main thread runs: no queueing, no busy state.
CONTROL_REQUESTS: Final = frozenset({COMPLETE, INSPECT, PEEK, WHERE, DAP})
#: A live job's requests to its ranks: answered by the rank's I/O thread (``lrun`` later,
#: by its main thread at the safepoint); agents pass them as any request.
LIVE_REQUESTS: Final = frozenset({LARM, LRUN, LCANCEL, LPARK, LUNPARK, LVALS})
#: Counted against the sender's output window (credit.py).
OUTPUT: Final = frozenset({STREAM, DISPLAY, NSTREAM})

Sender = Literal["hub", "rank", "agent", "endpoint", "notebook"]
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
_CELL = ("cell", str)
KINDS: Final[Mapping[str, Kind]] = {k.name: k for k in (
    *(_kind(name, "hub", "agent", "notebook", "endpoint", required=(_ID,))
      for name in REQUESTS | CONTROL_REQUESTS),
    _kind(HB, "hub", "agent", "rank"),
    _kind(INTERRUPT, "hub", "agent", "notebook"),
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
    _kind(LARM, "endpoint", "agent", required=(_ID, _CELL)),
    _kind(LRUN, "endpoint", "agent", required=(_ID, _CELL, ("at", int), ("code", str))),
    _kind(LCANCEL, "endpoint", "agent", required=(_ID, _CELL)),
    _kind(LPARK, "endpoint", "agent", required=(_ID, _CELL)),
    _kind(LUNPARK, "endpoint", "agent", required=(_ID, _CELL, ("stop", bool))),
    _kind(LVALS, "notebook", "endpoint", "agent", required=(_ID,)),
    _kind(LEND, "rank", "agent", required=(("rank", int), ("status", str))),
    _kind(LHELLO, "notebook"),
    _kind(LWELCOME, "endpoint", required=(("size", int), ("nodes", int))),
    _kind(LPING, "notebook"),
    _kind(LSTATE, "endpoint", required=(("ended", str), ("done", bool))),
    _kind(LNOTICE, "endpoint", required=(_ID, ("text", str))),
    _kind(LDETACH, "notebook"),
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
