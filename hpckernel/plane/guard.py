"""Bounds on the connections a TCP plane socket holds: a stranger's flood of raw connections
must not take the process's file descriptors.

libzmq accepts every TCP connection and only then runs the CurveZMQ handshake; a peer that
never completes it holds a descriptor until ``HANDSHAKE_IVL`` (made short here) runs out.
A ``ConnectionGuard`` watches the socket's monitor: each accepted connection is counted
under its peer's address, and one beyond ``per_address`` connections from that address, or
beyond ``total`` in all, is shut down at once (``shutdown(2)`` on its descriptor: libzmq
then closes it itself). The limits are set above what the legitimate peers need (the ranks
or node agents of other nodes), so only a flood meets them.

The owner polls ``monitor`` with its other sockets and calls :meth:`ConnectionGuard.drain`
when it is readable (the hub's plane thread, a node agent's loop).
"""

from __future__ import annotations

import logging
import os
import socket
import time

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

#: Milliseconds a connection may take to complete its handshake (libzmq's default: 30 s).
HANDSHAKE_MS = 5000
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


class ConnectionGuard:
    """Counts and caps the connections of one listening TCP socket (see the module)."""

    def __init__(self, sock: zmq.Socket[bytes], per_address: int, total: int) -> None:
        """Call before ``sock`` binds, so that no connection is accepted unseen."""
        self.per_address = max(int(per_address), 1)
        self.total = max(int(total), self.per_address)
        sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        # A plain socket whatever the context's class (the hub's is asyncio's, whose sockets
        # answer recv with a future): the owner polls it and drains it without waiting.
        self._monitor = sock.get_monitor_socket(_EVENTS)
        self.monitor: zmq.Socket[bytes] = zmq.Socket.shadow(self._monitor.underlying)
        self._port: int | None = None  # the listening port, once bound
        self._sock = sock
        self._peers: dict[int, str] = {}  # descriptor -> peer address
        self._by_address: dict[str, int] = {}
        self.refused = 0
        self._said = 0.0

    def drain(self) -> None:
        """Handle every waiting monitor event (never waits)."""
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return  # closed
            try:
                event = parse_monitor_message(frames)
            except RuntimeError:
                continue
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._accepted(fd)
            else:
                self._gone(fd)

    def _accepted(self, fd: int) -> None:
        peer = self._peer(fd)
        if peer is None:
            return  # closed already, or not this socket's connection any more
        count = self._by_address.get(peer, 0)
        if count >= self.per_address or len(self._peers) >= self.total:
            self._refuse(fd, peer)
            return
        self._peers[fd] = peer
        self._by_address[peer] = count + 1

    def _gone(self, fd: int) -> None:
        peer = self._peers.pop(fd, None)
        if peer is not None:
            left = self._by_address[peer] - 1
            if left:
                self._by_address[peer] = left
            else:
                del self._by_address[peer]

    def _peer(self, fd: int) -> str | None:
        """The peer address of the connection on ``fd`` if it still is one of this socket's
        (a descriptor can be closed and reused before its event is read here)."""
        try:
            with socket.socket(fileno=os.dup(fd)) as conn:
                if self._port is None:
                    self._port = _port_of(self._sock)
                if conn.getsockname()[1] != self._port:
                    return None
                return str(conn.getpeername()[0])
        except OSError:
            return None

    def _refuse(self, fd: int, peer: str) -> None:
        try:
            with socket.socket(fileno=os.dup(fd)) as conn:
                conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
        self.refused += 1
        now = time.monotonic()
        if now - self._said > 10:  # one line per flood, not one per connection
            self._said = now
            log.warning("refused connections to the plane beyond its limits (%d from %s; "
                        "%d in all so far)", self.per_address, peer, self.refused)

    def close(self) -> None:
        """Stop watching (before the socket closes)."""
        self._sock.disable_monitor()
        self._monitor.close(linger=0)


def _port_of(sock: zmq.Socket[bytes]) -> int | None:
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None
