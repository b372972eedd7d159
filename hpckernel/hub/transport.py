"""The hub's end of the plane: two ROUTER sockets that every rank's DEALER connects to (IPC
for ranks on this node, TCP with CurveZMQ for the others), and how messages cross them.

The sockets are plain (not pyzmq's asyncio sockets), used with NOBLOCK: the asyncio layer
costs a future and some enum arithmetic per message (20-50 µs against 7-14 µs plain,
``benchmarks/results/profile-send-cost.txt``), and the hub sends and receives N messages
per cell. A ROUTER never waits to send; receiving waits on the socket's file descriptor only
when its queue is empty, and then drains the queue. Everything here runs on the plane
thread: ZMQ sockets are not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from typing import Any, cast

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from ..plane import Message, PlaneInfo, make_job_dir, shm, unpack
from ..plane.addresses import node_name
from ..plane.credentials import KeyCheck

log = logging.getLogger(__name__)

#: Messages handled per wake-up before the loop gets a turn, so that a flood of output does
#: not hold up sends, interrupts and the pool's tick.
RECV_BATCH = 128

#: Flags as ints, one frame at a time: ``send_multipart``/``recv_multipart`` check each part
#: and do pyzmq's enum arithmetic per frame, which more than doubles what a message costs.
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_LAST = int(zmq.NOBLOCK)

#: on_message(rank, message), for every well-formed message from a rank.
OnMessage = Callable[[int, Message], None]
#: on_agent(node, message), for every well-formed message from a node agent.
OnAgent = Callable[[str, Message], None]
#: A node agent's identity on the plane starts with this byte (a rank's is its number).
AGENT_PREFIX = b"@"


class _Router:
    """One ROUTER socket, and the event that wakes its receiver."""

    __slots__ = ("fd", "shm_prefix", "sock", "wake")

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self.fd: int = sock.FD
        self.wake = asyncio.Event()
        #: shared-memory segments its messages may name ("": none, for other nodes' ranks)
        self.shm_prefix = ""


class Transport:
    """Sends to rank N over the socket that rank last spoke on; hands what arrives to
    ``on_message``."""

    def __init__(self, ctx: zmq.asyncio.Context, size: int, tcp_ip: str) -> None:
        self.ctx = ctx
        self.size = size
        self.tcp_ip = tcp_ip
        self.routers: list[_Router] = []
        self._routes: dict[int, _Router] = {}
        self._agent_routes: dict[str, _Router] = {}
        #: where messages from node agents go (HubKernel.fanin); dropped while None
        self.on_agent: OnAgent | None = None
        self._identities = [str(r).encode() for r in range(size)]
        self.shm_prefix = ""  # this kernel's shared-memory segments, once bound

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
        for sock in (ipc, tcp):
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # restarted ranks reuse their identity
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone rank raises
            sock.setsockopt(zmq.LINGER, 0)
            router = _Router(sock)
            self._loop.add_reader(router.fd, router.wake.set)
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
        return info

    def _router(self) -> zmq.Socket[bytes]:
        # A plain socket of the asyncio context (which the ZAP handler needs); pyzmq's type
        # hints allow only the context's own socket class here.
        sock = self.ctx.socket(zmq.ROUTER, socket_class=zmq.Socket)  # type: ignore[arg-type]
        # No send queue limit: a rank whose I/O thread waits for the GIL behind a long C call
        # must not be declared unreachable because its heartbeats piled up (EAGAIN).
        sock.setsockopt(zmq.SNDHWM, 0)
        return cast("zmq.Socket[bytes]", sock)

    def send(self, rank: int, frames: list[Any]) -> bool:
        """Queue ``frames`` for ``rank`` without waiting (zero-copy for large frames). False
        when the rank cannot be reached: it never spoke, it is gone (``EHOSTUNREACH``, from
        ``ROUTER_MANDATORY``)."""
        router = self._routes.get(rank)
        if router is None:
            return False
        send = router.sock.send
        try:
            # A ROUTER refuses a message at its first frame (the identity) or not at all.
            send(self._identities[rank], _MORE, copy=False)
            for frame in frames[:-1]:
                send(frame, _MORE, copy=False)
            send(frames[-1], _LAST, copy=False)
        except zmq.ZMQError:
            return False
        except Exception:  # not the rank's fault, but the message cannot reach it either
            log.exception("cannot send to rank %d", rank)
            return False
        finally:
            # The socket's descriptor is edge-triggered and a send may have consumed the
            # signal of a message that arrived meanwhile: have the receiver look again.
            router.wake.set()
        return True

    def send_agent(self, node: str, frames: list[Any]) -> bool:
        """As :meth:`send`, to the agent of ``node``."""
        router = self._agent_routes.get(node)
        if router is None:
            return False
        send = router.sock.send
        try:
            send(AGENT_PREFIX + node.encode(), _MORE, copy=False)
            for frame in frames[:-1]:
                send(frame, _MORE, copy=False)
            send(frames[-1], _LAST, copy=False)
        except zmq.ZMQError:
            return False
        finally:
            router.wake.set()
        return True

    async def receive(self, router: _Router, on_message: OnMessage) -> None:
        """Hand every message arriving on ``router`` to ``on_message``, until cancelled."""
        while True:
            router.wake.clear()
            if self._drain(router, on_message):
                await asyncio.sleep(0)  # more may be waiting: let other work run first
            else:
                # The recv that found the queue empty also re-armed the descriptor, so the
                # next message (or a send, above) sets the event.
                await router.wake.wait()

    def _drain(self, router: _Router, on_message: OnMessage) -> bool:
        """Handle up to RECV_BATCH waiting messages; True if there may be more."""
        recv = router.sock.recv
        for _ in range(RECV_BATCH):
            try:
                frames = [recv(_LAST, copy=False)]
            except zmq.Again:
                return False
            while frames[-1].more:  # the rest of a message arrives with its first frame
                frames.append(recv(_LAST, copy=False))
            ident = frames[0].bytes
            if ident[:1] == AGENT_PREFIX:
                self._from_agent(router, ident, frames)
                continue
            try:
                rank = int(ident)
                msg = unpack(frames[1:], router.shm_prefix)
                if not 0 <= rank < self.size:
                    raise ValueError(f"unknown rank {rank}")
            except (ValueError, UnicodeDecodeError) as e:
                log.warning("dropped a malformed plane message: %s", e)
                continue
            self._routes[rank] = router
            try:
                on_message(rank, msg)
            except Exception:
                log.exception("error handling %s from rank %d", msg.msg_type, rank)
        return True

    def agent_is_local(self, node: str) -> bool:
        """Whether the agent of ``node`` reached the hub over IPC (it is on this node)."""
        router = self._agent_routes.get(node)
        return router is not None and bool(router.shm_prefix)

    def _from_agent(self, router: _Router, ident: bytes, frames: list[zmq.Frame]) -> None:
        try:
            node = ident[1:].decode()
            msg = unpack(frames[1:], "")  # agents hand over no shared memory
        except (ValueError, UnicodeDecodeError) as e:
            log.warning("dropped a malformed plane message from an agent: %s", e)
            return
        self._agent_routes[node] = router
        if self.on_agent is None:
            return
        try:
            self.on_agent(node, msg)
        except Exception:
            log.exception("error handling %s from the agent of node %s", msg.msg_type, node)

    def close(self) -> None:
        """Stop watching and close the sockets; later sends find no route (unreachable)."""
        self._routes.clear()
        self._agent_routes.clear()
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
