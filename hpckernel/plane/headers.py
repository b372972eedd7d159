"""The JSON header of plane messages, as one ``TypedDict`` (every field optional: each
message type uses a few). Requests and replies between the hub and the ranks, and what
node agents add on their way through (``HubKernel.fanin``)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

#: What the hub knows a rank to be doing (``%ranks`` shows it).
RankState = Literal["starting", "idle", "busy", "stuck", "dead"]
#: A buffer of a reply carried in shared memory: [buffer index, segment name, size]
#: (``wire.to_shm``; checked entry by entry by ``wire.attach_segments``).
ShmSegment = list[int | str]
#: A JSON object passed through unread (a DAP request, response or event).
JsonObject = dict[str, object]


class PlaneHeader(TypedDict, total=False):
    """The header of any plane message; ``kinds.KINDS`` says which fields a kind must have."""

    # -- every request and its reply
    id: str | None  # the request's id; output carries it too
    rank: int  # the rank that sent this
    request: str  # a reply: the kind of request it answers
    status: Literal["ok", "error"]
    ename: str
    evalue: str
    traceback: list[str]
    # -- requests
    code: str
    silent: bool
    execution_count: int | None
    cursor_pos: int
    detail_level: int
    names: list[str]
    max_bytes: int  # the share of HubKernel.max_reply_size each rank may send
    max_bytes_note: str
    store_history: bool  # execute: False for a front end's hidden request
    join_threads: float  # execute: wait this long for threads the code starts
    debug_path: str  # execute on a debugged rank: the cell's file name (hub/debugger.py)
    debug_offset: int  # execute on a debugged rank: lines the hub took off the cell
    dap: JsonObject  # dap: the DAP request; its reply: the DAP response
    event: JsonObject  # dapevent: a DAP event of a debugged rank
    # -- output
    name: str  # stream name
    text: str
    msg_type: str  # of a display
    sent: int  # output, credit, more: a sender's running count of output bytes (credit.py)
    # -- registration
    size: int
    pid: int
    host: str
    python: str
    mpi: str
    error: str | None
    # -- heartbeats
    cpu: float
    rss: int
    # -- interrupts: the open requests to stop (queued or running), and whether to stop
    # whatever runs (a rank marked stuck, or late to stop); to an agent, ``late`` names
    # the ranks to interrupt so, as a range string
    ids: list[str]
    any: bool
    late: str
    # -- a rank registering again with a new node agent: the replies it sent last (their
    # headers), which may have been lost with the old agent
    rejoin: bool
    recent: list[PlaneHeader]
    # -- hub -> agent: whose request this is, compactly (targets.format_ranks)
    targets: str
    only: int  # a value for this one rank (scatter): the agent passes it to that rank only
    interval: float  # hb: the hub's heartbeat interval
    # -- agent -> hub
    node: str  # the agent's node key
    registered: list[PlaneHeader]  # nregister: the register headers of the node's ranks
    summaries: list[list[str]]  # nsummary of a tree's agent: [node, ranks, load JSON] below
    via: str  # nregister passed up a tree: the agent that talks to the hub for this node
    ranks: str  # nsummary, display: the ranks it covers (nsummary: their [cpu, rss] pairs
    # are the payload, as JSON)
    parts: list[list[str]]  # nstream: [ranks, text] per distinct text
    groups: list[list[Any]]  # nreply: [ranks, reply header] per distinct reply
    lost: str  # nreply: ranks the agent stopped waiting for (dead, unreachable)
    values: list[list[Any]]  # nreply: [rank, frame count(, shared-memory segments)] per value
    shm_prefix: str  # nregister: an agent on the hub's node passes its ranks' segments on
    shm: list[ShmSegment]  # reply: its buffers in shared memory (wire.to_shm)
    # -- a live batch job (hpckernel/live, kinds.LIVE_REQUESTS and the l* kinds)
    cell: str  # the endpoint's id of a notebook's cell (larm, lrun, lcancel, lpark, lunpark)
    at: int  # lrun: the safepoint the cell runs at; larm's reply: the count reached
    stop: bool  # lunpark: stop the held cell (else it goes on)
    held: Literal["cell", "start", "done", "no"]  # lpark's reply: where the rank holds it
    since: list[list[Any]]  # lvals: [ranks, sequence number] already had
    ended: str  # lstate: ranks whose program ended
    failed: dict[str, str]  # lstate: rank -> how its program failed
    done: bool  # lstate: every rank's program ended
    job: str  # lwelcome: the Slurm job (or the run's live id)
    nodes: int  # lwelcome: nodes of the job
    registered_ranks: int  # lwelcome: ranks connected so far
