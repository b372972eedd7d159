"""The notebook's end of the connection to a live job's endpoint: one DEALER socket,
CurveZMQ with the keys of the job's ``live.json``, driven by the attached job's plane
thread (``attached.py``) as the hub's ``Transport`` is by its pool: sends never wait, what
arrives is handed to ``on_message`` in batches, and a monitor says when the connection
drops (the job ended, or the network or the SSH tunnel did).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..hub.transport import RECV_BATCH, OnMessage, Peer
from ..plane import unpack
from ..plane.droplog import DropLog
from .files import LiveInfo

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)
_drops = DropLog(log)

#: The one peer: the endpoint (the agents behind it are named in what it passes on).
ENDPOINT = "endpoint"


class EndpointLink:
    """The socket to the endpoint; every method runs on the plane thread."""

    def __init__(self, info: LiveInfo, url: str) -> None:
        self.ctx = zmq.Context()
        sock = self.sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 10_000)  # a notebook's requests: bounded, never waited on
        sock.curve_serverkey = info.server_public.encode()
        sock.curve_publickey = info.client_public.encode()
        sock.curve_secretkey = info.client_secret.encode()
        self.monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
        sock.connect(url)
        self.on_message: OnMessage | None = None
        #: called with True when the connection is up, False when it dropped
        self.on_connection: Callable[[bool], None] = lambda up: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the sockets from ``loop`` (the plane thread's, running)."""
        self._loop = loop
        loop.add_reader(self.sock.FD, self._wake.set)
        loop.add_reader(self.monitor.FD, self._monitor)

    def send(self, peer: Peer, frames: Sequence[zmq.Frame | Buffer]) -> bool:
        """Queue ``frames`` for the endpoint (whatever ``peer``); False if they cannot go
        now (the fan-in's ``PeerLink``)."""
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            return False  # not connected yet, or the queue is full: the request is lost
        finally:
            self._wake.set()  # the edge-triggered descriptor may have been consumed
        return True

    def is_local(self, peer: Peer) -> bool:
        """Never: the endpoint hands over no shared memory."""
        return False

    async def receive(self) -> None:
        """Hand what arrives to ``on_message``, until cancelled."""
        while True:
            self._wake.clear()
            if self._drain():
                await asyncio.sleep(0)
            else:
                await self._wake.wait()

    def _drain(self) -> bool:
        for _ in range(RECV_BATCH):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            try:
                msg = unpack(frames, "")
            except ValueError as e:
                _drops.dropped("the job's endpoint", str(e))
                continue
            if self.on_message is not None:
                try:
                    self.on_message(ENDPOINT, msg)
                except Exception:
                    log.exception("error handling %s from the job", msg.msg_type)
        return True

    def _monitor(self) -> None:
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            self.on_connection(event["event"] == zmq.EVENT_CONNECTED)

    def close(self) -> None:
        """Stop watching and close the sockets (the attached job's detach)."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.FD)
            self._loop.remove_reader(self.monitor.FD)
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)
        self.ctx.term()
