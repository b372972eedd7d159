"""The hub's end of the plane: two ROUTER sockets that every peer's DEALER connects to (IPC
for peers on this node, TCP with CurveZMQ for the others), and how messages cross them.

A peer is a rank (direct fan-in) or a node agent; its identity (``plane/identity.py``) says
which, and of which launch. Messages of peers of an earlier launch are dropped here: the
ranks of a restart start clean, whatever the old ones still send.

The sockets are plain (not pyzmq's asyncio sockets), used with NOBLOCK: the asyncio layer
costs a future and some enum arithmetic per message (20-50 µs against 7-14 µs plain,
``benchmarks/results/profile-send-cost.txt``), and the hub sends and receives N messages
per cell. A ROUTER never waits to send. The loop watches each socket's file descriptor and
its callback drains the queue while ``ZMQ_EVENTS`` says there is more (no task to wake, no
exception per wake-up). Everything here runs on the plane thread: ZMQ sockets are not
thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from ..plane import Message, PlaneInfo, make_job_dir, shm, unpack
from ..plane.addresses import node_name
from ..plane.credentials import KeyCheck
from ..plane.guard import ConnectionGuard
from ..plane.identity import agent_identity, parse_identity, rank_identity

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)

#: Messages handled per wake-up before the loop gets a turn, so that a flood of output does
#: not hold up sends, interrupts and the pool's tick.
RECV_BATCH = 128

#: Flags as ints, one frame at a time: ``send_multipart``/``recv_multipart`` check each part
#: and do pyzmq's enum arithmetic per frame, which more than doubles what a message costs.
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_LAST = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)

#: A peer: a rank (its number) or a node agent (its node key).
Peer = int | str
#: on_message(peer, message), for every well-formed message of the current launch.
OnMessage = Callable[[Peer, Message], None]


class _Router:
    """One ROUTER socket, and whether a drain of it is due on the loop."""

    __slots__ = ("due", "fd", "shm_prefix", "sock")

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self.fd: int = sock.FD
        #: a drain is scheduled (a send may have taken the descriptor's signal)
        self.due = False
        #: shared-memory segments its ranks' messages may name ("": none, for other nodes)
        self.shm_prefix = ""


class Transport:
    """Sends to a peer over the socket it last spoke on; hands what arrives to
    ``on_message``."""

    def __init__(self, ctx: zmq.asyncio.Context, size: int, tcp_ip: str,
                 peers_per_address: int = 64) -> None:
        self.ctx = ctx
        self.size = size
        self.tcp_ip = tcp_ip
        self.peers_per_address = peers_per_address
        self.routers: list[_Router] = []
        self.on_message: OnMessage | None = None
        self._routes: dict[Peer, _Router] = {}
        self._identities: dict[Peer, bytes] = {}
        self.launch = 0  # peers of other launches are not heard
        self.shm_prefix = ""  # this kernel's shared-memory segments, once bound
        self.guard: ConnectionGuard | None = None

    def bind(self) -> PlaneInfo:
        """Bind both sockets (on the plane thread); returns what ranks need to connect."""
        self._loop = asyncio.get_running_loop()
        self.auth = AsyncioAuthenticator(self.ctx)
        self.auth.start()
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        self.auth.configure_curve_callback("*", KeyCheck(client_public.decode()))
        ipc, tcp = self._router(), self._router()
        tcp.curve_server = True
        tcp.curve_secretkey = server_secret
        tcp.curve_publickey = server_public
        # Ranks (direct) or agents of other nodes connect here; a flood of strangers' raw
        # connections must not take the hub's descriptors (plane/guard.py).
        self.guard = ConnectionGuard(tcp, self.peers_per_address, self.size + 256)
        self._loop.add_reader(self.guard.monitor.FD, self._guard_events)
        self._guard_events()  # ZMQ's descriptor signals only changes: look once first
        for sock in (ipc, tcp):
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting peer keeps its identity
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone peer raises
            sock.setsockopt(zmq.LINGER, 0)
            router = _Router(sock)
            self._loop.add_reader(router.fd, self._readable, router)
            self.routers.append(router)
        # The IPC socket lives in a short private directory on this node: the job directory
        # can be deeper than a socket path may be (107 bytes), and only local ranks use it.
        self._ipc_dir = make_job_dir()
        ipc_url = f"ipc://{self._ipc_dir}/plane.sock"
        ipc.bind(ipc_url)
        port = tcp.bind_to_random_port(f"tcp://{self.tcp_ip}")
        info = PlaneInfo(node=node_name(), ipc_url=ipc_url,
                         tcp_url=f"tcp://{self.tcp_ip}:{port}",
                         server_public=server_public.decode(),
                         client_public=client_public.decode(),
                         client_secret=client_secret.decode(), size=self.size)
        # Ranks on this node (the IPC socket) may hand over large buffers in /dev/shm.
        self.shm_prefix = self.routers[0].shm_prefix = shm.prefix_for(info)
        for router in self.routers:  # a descriptor signals only changes: look once first
            self._schedule(router)
        return info

    def _router(self) -> zmq.Socket[bytes]:
        # A plain socket of the asyncio context (which the ZAP handler needs); pyzmq's type
        # hints allow only the context's own socket class here.
        sock = self.ctx.socket(zmq.ROUTER, socket_class=zmq.Socket)  # type: ignore[arg-type]
        # No send queue limit: a rank whose I/O thread waits for the GIL behind a long C call
        # must not be declared unreachable because its heartbeats piled up (EAGAIN).
        sock.setsockopt(zmq.SNDHWM, 0)
        return cast("zmq.Socket[bytes]", sock)

    def _guard_events(self) -> None:
        if self.guard is not None:
            self.guard.drain()

    def new_launch(self, launch: int) -> None:
        """Hear only the peers of ``launch`` from now on (a start or restart of the ranks)."""
        self.launch = launch
        self._routes.clear()
        self._identities.clear()

    def send(self, peer: Peer, frames: Sequence[Buffer | zmq.Frame]) -> bool:
        """Queue ``frames`` for ``peer`` without waiting (zero-copy for large frames). False
        when the peer cannot be reached: it never spoke, it is gone (``EHOSTUNREACH``, from
        ``ROUTER_MANDATORY``), or the frames cannot be sent."""
        router = self._routes.get(peer)
        if router is None:
            return False
        identity = self._identities[peer]
        send = router.sock.send
        try:
            # A ROUTER refuses a message at its first frame (the identity) or not at all.
            send(identity, _MORE, copy=False)
            for frame in frames[:-1]:
                send(frame, _MORE, copy=False)
            send(frames[-1], _LAST, copy=False)
        except zmq.ZMQError:
            return False
        except Exception:  # not the peer's fault, but the message cannot reach it either
            log.exception("cannot send to %s", _name(peer))
            return False
        finally:
            # The socket's descriptor is edge-triggered and a send may have consumed the
            # signal of a message that arrived meanwhile: look again (once per loop turn).
            self._schedule(router)
        return True

    def is_local(self, peer: Peer) -> bool:
        """Whether ``peer`` reached the hub over IPC (it is on this node)."""
        router = self._routes.get(peer)
        return router is not None and bool(router.shm_prefix)

    def _schedule(self, router: _Router) -> None:
        if not router.due:
            router.due = True
            self._loop.call_soon(self._readable, router)

    def _readable(self, router: _Router) -> None:
        """The loop's callback for ``router``: hand what waits to ``on_message``; if more may
        be waiting than one batch, let other work run first and come back."""
        router.due = False
        if not router.sock.closed and self._drain(router):
            self._schedule(router)

    def _drain(self, router: _Router) -> bool:
        """Handle up to RECV_BATCH waiting messages; True if there may be more."""
        sock = router.sock
        recv = sock.recv
        events = sock.get
        for _ in range(RECV_BATCH):
            # Reading ZMQ_EVENTS until it shows nothing also re-arms the descriptor.
            if not events(_EVENTS) & _POLLIN:  # type: ignore[operator]
                return False
            frames = [recv(_LAST, copy=False)]
            while frames[-1].more:  # the rest of a message arrives with its first frame
                frames.append(recv(_LAST, copy=False))
            identity = frames[0].bytes
            try:
                launch, peer = parse_identity(identity)
                if launch != self.launch:
                    continue  # a peer of an earlier launch: not heard any more
                # Only ranks on this node hand over shared memory; agents never do.
                msg = unpack(frames[1:], router.shm_prefix if isinstance(peer, int) else "")
                if isinstance(peer, int) and not 0 <= peer < self.size:
                    raise ValueError(f"unknown rank {peer}")
            except ValueError as e:  # UnicodeDecodeError too
                log.warning("dropped a malformed plane message: %s", e)
                continue
            self._routes[peer] = router
            self._identities[peer] = identity
            if self.on_message is None:
                continue
            try:
                self.on_message(peer, msg)
            except Exception:
                log.exception("error handling %s from %s", msg.msg_type, _name(peer))
        return True

    def close(self) -> None:
        """Stop watching and close the sockets; later sends find no route (unreachable)."""
        self._routes.clear()
        if self.guard is not None:
            self._loop.remove_reader(self.guard.monitor.FD)
            self.guard.close()
        for router in self.routers:
            self._loop.remove_reader(router.fd)
            router.sock.close(linger=0)
        self.auth.stop()
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
        self.remove_segments()

    def remove_segments(self) -> None:
        """Remove shared-memory segments that ranks made but the hub never received (a rank
        killed mid-reply, a message dropped at shutdown)."""
        if self.shm_prefix:
            shm.remove_leftovers(self.shm_prefix)


def _name(peer: Peer) -> str:
    return f"rank {peer}" if isinstance(peer, int) else f"the agent of node {peer}"


__all__ = ["RECV_BATCH", "OnMessage", "Peer", "Transport", "agent_identity", "rank_identity"]
