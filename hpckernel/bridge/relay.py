"""The ZMQ relay between a front end's five ports (on loopback) and the hub's.

Messages pass through unchanged (the hub checks their HMAC signatures): ROUTER↔DEALER for
shell, control and stdin, XPUB↔XSUB for IOPub, each moved by libzmq's own proxy in a
thread of its own; the heartbeat is answered here. The hub side always speaks CurveZMQ (the
bridge gives the hub keys of its own when the front end has none), since it crosses the
network.

The front-end side is on loopback, which every local user reaches: a connection file with an
empty key is refused (anyone could send requests the hub accepts, and run code as this
user); with CurveZMQ keys in it the front-end side speaks CurveZMQ, and without them the
relay takes only connections from this user's own processes: a ZAP handler looks up the
owner of the connecting socket in the kernel's table of TCP sockets (``/proc/net/tcp``) and
refuses any other's, so another user can neither subscribe to the output nor send a
request. Where that table does not exist, such a connection file is refused.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import zmq
from jupyter_client.connect import KernelConnectionInfo

from ..jupyter_channels import PORTS, ChannelAddress, Port, key_bytes
from .errors import ConnectionFileError, RelayError

log = logging.getLogger(__name__)

# Request channels: the front end's DEALER → our ROUTER → our DEALER → the hub's ROUTER.
REQUEST_CHANNELS: tuple[Port, ...] = ("shell_port", "control_port", "stdin_port")

#: The kernel's table of IPv4 TCP sockets, with each socket's owner.
TCP_TABLE = Path("/proc/net/tcp")
_ESTABLISHED = "01"
_LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


def check_key(connection: Mapping[str, object]) -> None:
    """ConnectionFileError, in one line, for a connection file whose messages need no
    signature. Checked when the bridge reads the file, for the relay and the ssh tunnels
    alike, and again by the relay itself."""
    if not connection.get("key"):
        raise ConnectionFileError("the connection file has an empty \"key\": any local user could "
                         "send the kernel requests and run code as you; start the kernel "
                         "from a front end that writes a key")


class Relay:
    """Binds the front end's ports at once (so they stay ours while the job queues); moves
    messages once :meth:`connect` knows the hub."""

    def __init__(self, connection: KernelConnectionInfo) -> None:
        """Bind the five ports of ``connection`` (a front end's connection file, checked:
        tcp, every port there) on loopback; RelayError if one is taken, ConnectionFileError
        if the file would let other local users in."""
        check_key(connection)
        public, secret = connection.get("curve_publickey"), connection.get("curve_secretkey")
        if not (public and secret) and not TCP_TABLE.exists():
            raise ConnectionFileError(
                "the connection file has no CurveZMQ keys and this system cannot tell who "
                "connects to a local port: use a front end with CurveZMQ (jupyter_client "
                "8's transport_encryption) or --login")
        self.ctx = zmq.Context()
        self._threads: list[threading.Thread] = []
        self._controls: list[zmq.Socket[bytes]] = []
        self.front: dict[str, zmq.Socket[bytes]] = {}
        self._relayed: set[str] = set()  # front sockets a proxy thread owns
        self._owner_only: OwnerOnly | None = None
        if not (public and secret):
            self._owner_only = OwnerOnly(self.ctx)
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
            else:  # each connection is shown to OwnerOnly first (ZAP), named by its port
                sock.zap_domain = f"relay:{int(connection[name])}".encode()
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
        if self._owner_only is not None:
            self._owner_only.stop()
        self.ctx.term()


class OwnerOnly:
    """A ZAP handler (RFC 27) for the front sockets: a connection is accepted only if every
    established TCP socket connected to its port belongs to this user. A connection that
    another user's socket could be (one of theirs is connected to the same port at that
    moment) is refused; ZMQ clients reconnect, so the user's own retry gets through."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.sock: zmq.Socket[bytes] = ctx.socket(zmq.REP)
        self.sock.linger = 0
        self.sock.bind("inproc://zeromq.zap.01")  # before any front socket binds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hpckernel-relay-zap",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.sock.poll(200):
                    continue
                version, request_id, domain, *_ = self.sock.recv_multipart()
                ok, why = self.check(domain)
                self.sock.send_multipart([version, request_id, b"200" if ok else b"400",
                                          why.encode(), b"", b""])
        except zmq.ContextTerminated:
            pass
        finally:
            self.sock.close(linger=0)

    @staticmethod
    def check(domain: bytes) -> tuple[bool, str]:
        """Whether the connection to the port in ``domain`` (``relay:PORT``) is this
        user's, and why not."""
        try:
            port = int(domain.decode().partition(":")[2])
            owners = peer_owners(port)
        except (ValueError, OSError) as e:
            return False, f"cannot tell who connects: {e}"
        foreign = owners - {os.getuid()}
        if not owners or foreign:
            log.warning("refused a connection to port %d from uid %s", port,
                        ",".join(map(str, sorted(foreign))) or "unknown")
            return False, "only the kernel's owner may connect"
        return True, "OK"

    def stop(self) -> None:
        """Stop answering ZAP requests and wait for the thread (the relay's shutdown)."""
        self._stop.set()
        self._thread.join(timeout=5)


def peer_owners(port: int) -> set[int]:
    """The uids owning the established loopback TCP sockets connected to ``port``."""
    remote = f"{_LOOPBACK}:{port:04X}"
    owners: set[int] = set()
    with open(TCP_TABLE) as table:
        next(table)  # the header
        for line in table:
            fields = line.split()
            if len(fields) > 7 and fields[2] == remote and fields[3] == _ESTABLISHED:
                owners.add(int(fields[7]))
    return owners


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
