"""The agent's sockets: a DEALER up (to the hub, or to its parent agent in a tree: IPC on
the same node, else TCP with CurveZMQ; identity ``@<node>``), a ROUTER down to the node's
ranks (IPC in a private 0700 directory of this node, named in ``agent-<node>.json`` in the
job directory), and for an agent with agents below it (``HubKernel.fanout``) a TCP ROUTER
with CurveZMQ that admits only the plane's client key."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..plane import PlaneInfo, make_job_dir
from ..plane.addresses import node_ip, node_name
from ..plane.credentials import KeyCheck, write_private
from ..plane.nodes import agent_plane_file
from ..plane.shm import prefix_for, remove_leftovers


class Link:
    """The sockets; the agent's loop polls them."""

    def __init__(self, up: PlaneInfo, hub: PlaneInfo, job_dir: Path, node: str,
                 kids: bool = False) -> None:
        """``up``: where to connect (the hub's plane, or the parent agent's file); ``hub``:
        the hub's plane (its CurveZMQ client keys); ``kids``: agents will connect here."""
        self.ctx = zmq.Context()
        self.up: zmq.Socket[bytes] = self.ctx.socket(zmq.DEALER)
        self.up.setsockopt(zmq.IDENTITY, f"@{node}".encode())
        self.up.setsockopt(zmq.LINGER, 2000)
        self.up.setsockopt(zmq.SNDHWM, 0)
        if up.node == node_name():
            self.up.connect(up.ipc_url)
        else:
            self.up.curve_serverkey = up.server_public.encode()
            self.up.curve_publickey = hub.client_public.encode()
            self.up.curve_secretkey = hub.client_secret.encode()
            self.up.connect(up.tcp_url)
        self.down = self._router()
        self._ipc_dir = make_job_dir()
        ipc_url = f"ipc://{self._ipc_dir}/agent.sock"
        self.down.bind(ipc_url)
        self.kids: zmq.Socket[bytes] | None = None
        self.auth: ThreadAuthenticator | None = None
        tcp_url = ""
        if kids:  # agents of other nodes below this one: TCP, with the plane's keys
            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve_callback("*", KeyCheck(hub.client_public))
            self.kids = self._router()
            self.kids.curve_server = True
            self.kids.curve_secretkey = hub.client_secret.encode()
            self.kids.curve_publickey = hub.client_public.encode()
            ip = node_ip("auto")
            tcp_url = f"tcp://{ip}:{self.kids.bind_to_random_port(f'tcp://{ip}')}"
        # The plane file of this node's ranks (IPC, no keys needed) and of the agents below
        # (TCP: this agent serves with the plane's client key pair, which they hold too).
        self.info = replace(hub, node=node_name(), ipc_url=ipc_url, tcp_url=tcp_url,
                            server_public=hub.client_public if kids else "",
                            client_public="", client_secret="")
        self.shm_prefix = prefix_for(self.info)  # large reply buffers of the node's ranks
        self.plane_file = agent_plane_file(job_dir, node)
        tmp = self.plane_file.with_suffix(".tmp")
        write_private(tmp, json.dumps(asdict(self.info)))
        os.replace(tmp, self.plane_file)  # ranks never read half a file

    def _router(self) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone peer raises
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    @property
    def downs(self) -> list[zmq.Socket[bytes]]:
        return [self.down] if self.kids is None else [self.down, self.kids]

    def to_hub(self, frames: list[Any]) -> None:
        self.up.send_multipart(frames, copy=False)

    def send(self, sock: zmq.Socket[bytes], ident: bytes, frames: list[Any]) -> bool:
        """False when the peer is gone (or never connected)."""
        try:
            sock.send_multipart([ident, *frames], copy=False)
        except zmq.ZMQError:
            return False
        return True

    def from_hub(self) -> list[zmq.Frame] | None:
        try:
            return self.up.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def receive(self, sock: zmq.Socket[bytes]) -> list[zmq.Frame] | None:
        """[identity, *frames] of the next message from below, None when none waits."""
        try:
            return sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def close(self) -> None:
        try:
            self.plane_file.unlink()
        except OSError:
            pass
        for sock in self.downs:
            sock.close(linger=0)
        self.up.close()  # lingers, so that the last messages reach the hub
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
        remove_leftovers(self.shm_prefix)  # segments of replies that never went up
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
