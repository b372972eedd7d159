"""The agent's sockets: a DEALER up (to the hub, or to its parent agent in a tree: IPC on
the same node, else TCP with CurveZMQ; identity ``@<launch>.<node>``), a ROUTER down to the
node's ranks (IPC in a private 0700 directory of this node, named in ``agent-<node>.json``
in the job directory), and for an agent with agents below it (``HubKernel.fanout``) a TCP
ROUTER with CurveZMQ that admits only the plane's client key, its connections bounded
(``plane/guard.py``).

An agent started again on its node (``launcher/rank.sh``, after the first was killed) finds
its predecessor's ``agent-<node>.json`` and binds the same addresses, so that the ranks (and
the agents below) reconnect to it by themselves."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..plane import PlaneInfo, make_job_dir, read_plane_info
from ..plane.addresses import node_ip, node_name
from ..plane.credentials import KeyCheck, write_private
from ..plane.guard import ConnectionGuard
from ..plane.identity import agent_identity, current_launch
from ..plane.nodes import agent_plane_file
from ..plane.private import UnsafeDirectoryError, check_private_dir
from ..plane.shm import prefix_for, remove_leftovers
from ..plane.wire import OutFrame


class Link:
    """The sockets; the agent's loop polls them."""

    def __init__(self, up: PlaneInfo, hub: PlaneInfo, job_dir: Path, node: str,
                 kids: bool = False) -> None:
        """``up``: where to connect (the hub's plane, or the parent agent's file); ``hub``:
        the hub's plane (its CurveZMQ client keys); ``kids``: agents will connect here."""
        self.ctx = zmq.Context()
        self.up: zmq.Socket[bytes] = self.ctx.socket(zmq.DEALER)
        self.up.setsockopt(zmq.IDENTITY, agent_identity(current_launch(), node))
        self.up.setsockopt(zmq.LINGER, 2000)
        self.up.setsockopt(zmq.SNDHWM, 0)
        # Made before connecting: a reconnection (to a parent agent started again) is seen.
        self.up_monitor = self.up.get_monitor_socket(zmq.EVENT_CONNECTED)
        if up.node == node_name():
            self.up.connect(up.ipc_url)
        else:
            self.up.curve_serverkey = up.server_public.encode()
            self.up.curve_publickey = hub.client_public.encode()
            self.up.curve_secretkey = hub.client_secret.encode()
            self.up.connect(up.tcp_url)
        self.plane_file = agent_plane_file(job_dir, node)
        before = _predecessor(self.plane_file)
        self.down = self._router()
        if before is not None:
            ipc_url = before.ipc_url
            self._ipc_dir = Path(ipc_url[len("ipc://"):]).parent
        else:
            self._ipc_dir = make_job_dir()
            ipc_url = f"ipc://{self._ipc_dir}/agent.sock"
        self.down.bind(ipc_url)
        self.kids: zmq.Socket[bytes] | None = None
        self.auth: ThreadAuthenticator | None = None
        self.guard: ConnectionGuard | None = None
        tcp_url = ""
        if kids:  # agents of other nodes below this one: TCP, with the plane's keys
            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve_callback("*", KeyCheck(hub.client_public))
            self.kids = self._router()
            self.guard = ConnectionGuard(self.kids, per_address=8, total=256)
            self.kids.curve_server = True
            self.kids.curve_secretkey = hub.client_secret.encode()
            self.kids.curve_publickey = hub.client_public.encode()
            tcp_url = self._bind_kids(before.tcp_url if before is not None else "")
        # The plane file of this node's ranks (IPC, no keys needed) and of the agents below
        # (TCP: this agent serves with the plane's client key pair, which they hold too).
        self.info = replace(hub, node=node_name(), ipc_url=ipc_url, tcp_url=tcp_url,
                            server_public=hub.client_public if kids else "",
                            client_public="", client_secret="")
        self.shm_prefix = prefix_for(self.info)  # large reply buffers of the node's ranks
        tmp = self.plane_file.with_suffix(".tmp")
        write_private(tmp, json.dumps(asdict(self.info)))
        os.replace(tmp, self.plane_file)  # ranks never read half a file

    def _bind_kids(self, before: str) -> str:
        """Bind the TCP socket for the agents below: where a predecessor listened if it can
        (they reconnect there), else on a new port of this node's address."""
        assert self.kids is not None
        if before:
            try:
                self.kids.bind(before)
                return before
            except zmq.ZMQError:
                pass  # taken meanwhile: the agents below will not find this one again
        ip = node_ip("auto")
        return f"tcp://{ip}:{self.kids.bind_to_random_port(f'tcp://{ip}')}"

    def up_connected(self) -> bool:
        """Whether a (re)connection of the link up was waiting (one is taken off)."""
        try:
            self.up_monitor.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _router(self) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone peer raises
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    @property
    def downs(self) -> list[zmq.Socket[bytes]]:
        """The sockets below: to the node's ranks, and to the agents below if any."""
        return [self.down] if self.kids is None else [self.down, self.kids]

    def to_hub(self, frames: Sequence[OutFrame]) -> None:
        """Send a message up (to the hub, or the parent agent)."""
        self.up.send_multipart(frames, copy=False)

    def send(self, sock: zmq.Socket[bytes], ident: bytes, frames: Sequence[OutFrame]) -> bool:
        """Send a message to the peer ``ident`` below (on ``sock``, one of ``downs``); False
        when the peer is gone (or never connected)."""
        try:
            sock.send_multipart([ident, *frames], copy=False)
        except zmq.ZMQError:
            return False
        return True

    def from_hub(self) -> list[zmq.Frame] | None:
        """The next message from above, None when none waits."""
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
        """Close the sockets; remove the plane file, the socket directory and the
        shared-memory segments left (the agent's last act)."""
        try:
            self.plane_file.unlink()
        except OSError:
            pass
        for sock in self.downs:
            sock.close(linger=0)
        if self.guard is not None:
            self.guard.close()
        self.up.disable_monitor()
        self.up_monitor.close(linger=0)
        self.up.close()  # lingers, so that the last messages reach the hub
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
        remove_leftovers(self.shm_prefix)  # segments of replies that never went up
        shutil.rmtree(self._ipc_dir, ignore_errors=True)


def _predecessor(plane_file: Path) -> PlaneInfo | None:
    """What an agent of this node and launch that was killed left (``rank.sh`` starts the
    node's agent again): its addresses, if its socket directory is still this user's own
    private one; else None (a first start: ``_fresh_start`` removed earlier launches')."""
    try:
        info = read_plane_info(plane_file)
    except (OSError, ValueError, TypeError):
        return None
    if not info.ipc_url.startswith("ipc://"):
        return None
    try:
        check_private_dir(Path(info.ipc_url[len("ipc://"):]).parent)
    except (UnsafeDirectoryError, OSError):
        return None
    return info
