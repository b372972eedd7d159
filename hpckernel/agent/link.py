"""The agent's two sockets: a DEALER up to the hub (IPC on the hub's node, else TCP with
CurveZMQ, identity ``@<node>``), and a ROUTER down to the node's ranks (IPC in a private
0700 directory of this node, named in ``agent-<node>.json`` in the job directory)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import zmq

from ..plane import PlaneInfo, make_job_dir, unpack
from ..plane.addresses import node_name
from ..plane.credentials import write_private
from ..plane.nodes import agent_plane_file
from ..plane.shm import prefix_for
from ..plane.wire import Message


class Link:
    """Both sockets; the agent's loop polls them."""

    def __init__(self, hub: PlaneInfo, job_dir: Path, node: str) -> None:
        self.ctx = zmq.Context()
        self.up: zmq.Socket[bytes] = self.ctx.socket(zmq.DEALER)
        self.up.setsockopt(zmq.IDENTITY, f"@{node}".encode())
        self.up.setsockopt(zmq.LINGER, 2000)
        self.up.setsockopt(zmq.SNDHWM, 0)
        if hub.node == node_name():
            self.up.connect(hub.ipc_url)
        else:
            self.up.curve_serverkey = hub.server_public.encode()
            self.up.curve_publickey = hub.client_public.encode()
            self.up.curve_secretkey = hub.client_secret.encode()
            self.up.connect(hub.tcp_url)
        self.down: zmq.Socket[bytes] = self.ctx.socket(zmq.ROUTER)
        self.down.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone rank raises
        self.down.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.down.setsockopt(zmq.SNDHWM, 0)
        self.down.setsockopt(zmq.LINGER, 0)
        self._ipc_dir = make_job_dir()
        ipc_url = f"ipc://{self._ipc_dir}/agent.sock"
        self.down.bind(ipc_url)
        # The ranks' plane file: this node, the IPC address, no keys (IPC needs none).
        self.info = replace(hub, node=node_name(), ipc_url=ipc_url, tcp_url="",
                            server_public="", client_public="", client_secret="")
        self.shm_prefix = prefix_for(self.info)  # large reply buffers of the node's ranks
        self.plane_file = agent_plane_file(job_dir, node)
        tmp = self.plane_file.with_suffix(".tmp")
        write_private(tmp, json.dumps(asdict(self.info)))
        os.replace(tmp, self.plane_file)  # ranks never read half a file

    def to_hub(self, frames: list[Any]) -> None:
        self.up.send_multipart(frames, copy=False)

    def to_rank(self, rank: int, frames: list[Any]) -> bool:
        """False when the rank is gone (or never connected)."""
        try:
            self.down.send_multipart([str(rank).encode(), *frames], copy=False)
        except zmq.ZMQError:
            return False
        return True

    def from_hub(self) -> list[zmq.Frame] | None:
        try:
            return self.up.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def from_rank(self) -> tuple[int, Message, list[zmq.Frame]] | bool | None:
        """(rank, message, raw frames after the identity); None when nothing waits; False
        for a malformed message (dropped)."""
        try:
            frames = self.down.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        try:
            rank = int(frames[0].bytes)
            return rank, unpack(frames[1:], self.shm_prefix), frames[1:]
        except (ValueError, UnicodeDecodeError):
            return False

    def close(self) -> None:
        try:
            self.plane_file.unlink()
        except OSError:
            pass
        self.down.close(linger=0)
        self.up.close()  # lingers, so that the last messages reach the hub
        self.ctx.term()
        shutil.rmtree(self._ipc_dir, ignore_errors=True)
