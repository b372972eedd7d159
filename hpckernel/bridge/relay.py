"""The ZMQ relay between a front end's five ports (on loopback) and the hub's.

Messages pass through unchanged (the hub checks their HMAC signatures): ROUTER↔DEALER for
shell, control and stdin, XPUB↔XSUB for IOPub, each moved by libzmq's own proxy in a
thread of its own; the heartbeat is answered here. The front-end side speaks CurveZMQ when
the front end's connection file has keys; the hub side always does (the bridge gives the
hub keys of its own when the front end has none), since it crosses the network.
"""

from __future__ import annotations

import os
import threading

import zmq
from jupyter_client.connect import KernelConnectionInfo

from ..jupyter_channels import PORTS, ChannelAddress, Port, key_bytes
from .errors import RelayError

# Request channels: the front end's DEALER → our ROUTER → our DEALER → the hub's ROUTER.
REQUEST_CHANNELS: tuple[Port, ...] = ("shell_port", "control_port", "stdin_port")


class Relay:
    """Binds the front end's ports at once (so they stay ours while the job queues); moves
    messages once :meth:`connect` knows the hub."""

    def __init__(self, connection: KernelConnectionInfo) -> None:
        """Bind the five ports of ``connection`` (a front end's connection file, checked:
        tcp, every port there) on loopback; RelayError if one is taken."""
        self.ctx = zmq.Context()
        self._threads: list[threading.Thread] = []
        self._controls: list[zmq.Socket[bytes]] = []
        self.front: dict[str, zmq.Socket[bytes]] = {}
        self._relayed: set[str] = set()  # front sockets a proxy thread owns
        public, secret = connection.get("curve_publickey"), connection.get("curve_secretkey")
        try:
            self._bind(connection, public, secret)
        except (RelayError, zmq.ZMQError):
            self.close()
            raise
        # The heartbeat is the relay's own: it says the bridge is there; the hub's
        # liveness is the bridge's business (it watches the job).
        self._run("hb_port", self.front["hb_port"])

    def _bind(self, connection: KernelConnectionInfo, public: str | None,
              secret: str | None) -> None:
        for name in PORTS:
            kind = (zmq.ROUTER if name in REQUEST_CHANNELS or name == "hb_port"
                    else zmq.XPUB)
            sock = self.ctx.socket(kind)
            sock.linger = 0
            if public and secret:
                sock.curve_secretkey = key_bytes(secret)
                sock.curve_publickey = key_bytes(public)
                sock.curve_server = True
            if kind == zmq.XPUB:
                # Pass every subscription on, so that each new subscriber gets the hub's
                # IOPub welcome (ipykernel 7), not only the first.
                sock.setsockopt(zmq.XPUB_VERBOSE, 1)
            self.front[name] = sock
            try:
                sock.bind(f"tcp://127.0.0.1:{connection[name]}")
            except zmq.ZMQError as e:
                raise RelayError(f"cannot listen on {name} {connection[name]} of the "
                                 f"connection file: {e}") from None

    def connect(self, hub: ChannelAddress, public: bytes, secret: bytes) -> None:
        """Start relaying to the hub at ``hub`` (its ip and ports), a CurveZMQ server with
        the public key ``public`` (the relay uses the same pair as a client, as Jupyter's
        clients do)."""
        # One routing id for every request channel: the hub answers an input_request on
        # stdin to the identity the execute_request came with on shell.
        identity = b"hpckernel-relay-" + os.urandom(8).hex().encode()
        for name in (*REQUEST_CHANNELS, "iopub_port"):
            back = self.ctx.socket(zmq.XSUB if name == "iopub_port" else zmq.DEALER)
            back.linger = 0
            back.curve_secretkey = secret
            back.curve_publickey = public
            back.curve_serverkey = public
            if name != "iopub_port":
                back.setsockopt(zmq.ROUTING_ID, identity)
            back.connect(f"tcp://{hub['ip']}:{hub[name]}")
            self._run(name, back)

    def _run(self, name: str, back: zmq.Socket[bytes]) -> None:
        front = self.front[name]
        self._relayed.add(name)
        control = self.ctx.socket(zmq.PAIR)
        control.linger = 0
        address = f"inproc://relay-{name}-{id(control)}"
        control.bind(address)
        self._controls.append(control)

        def proxy() -> None:
            steer = self.ctx.socket(zmq.PAIR)
            steer.connect(address)
            try:
                zmq.proxy_steerable(front, back, None, steer)
            except zmq.ContextTerminated:
                pass
            finally:
                steer.close(linger=0)
                if back is not front:
                    back.close(linger=0)
                front.close(linger=0)

        thread = threading.Thread(target=proxy, name=f"hpckernel-relay-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        """Stop every proxy, close every socket (the ports are free again)."""
        for control in self._controls:
            control.send(b"TERMINATE")
        for thread in self._threads:
            thread.join(timeout=5)
        for control in self._controls:
            control.close(linger=0)
        for name, sock in self.front.items():
            if name not in self._relayed:
                sock.close(linger=0)  # never relayed: the hub was not reached
        self.ctx.term()

