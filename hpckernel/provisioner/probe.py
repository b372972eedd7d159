"""Is the kernel's IOPub path whole? A probe through the tunnels, as a client would use them.

After the SSH master is rebuilt, the request channels work again as soon as their
listeners are back, but IOPub only once a subscription has travelled to the hub again:
output published before that is lost. The probe subscribes through the tunnel, sends a
``kernel_info_request`` on the control channel and waits for that request's ``status``
message on IOPub.
"""

from __future__ import annotations

import time

import zmq
import zmq.asyncio
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.session import Session

from ..jupyter_channels import key_bytes


def _curve_client(sock: zmq.asyncio.Socket, info: KernelConnectionInfo) -> None:
    """Make ``sock`` a CurveZMQ client of the kernel, when ``info`` has keys."""
    public = key_bytes(info.get("curve_publickey"))
    secret = key_bytes(info.get("curve_secretkey"))
    if public and secret:
        sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = (
            secret, public, public)


async def iopub_works(info: KernelConnectionInfo, timeout: float) -> bool:
    """Whether a request's IOPub messages come back through ``info``'s ports (the
    connection info clients use) within ``timeout`` seconds."""
    session = Session(key=key_bytes(info.get("key")),
                      signature_scheme=info.get("signature_scheme", "hmac-sha256"))
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    control = ctx.socket(zmq.DEALER)
    try:
        ip = info.get("ip", "127.0.0.1")
        for sock, port in ((sub, info["iopub_port"]), (control, info["control_port"])):
            sock.linger = 0
            _curve_client(sock, info)
            sock.connect(f"tcp://{ip}:{port}")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Sent again each second: a request published before our subscription arrived
            # at the hub leaves no trace on IOPub.
            sent = session.send(control, "kernel_info_request", {})
            if sent is None:
                return False
            ours = sent["header"]["msg_id"]
            until = min(deadline, time.monotonic() + 1.0)
            while (left := until - time.monotonic()) > 0:
                if not await sub.poll(left * 1000):
                    break
                frames = await sub.recv_multipart()
                _, msg = session.feed_identities(frames)
                parent = session.deserialize(msg, content=False)["parent_header"]
                if parent.get("msg_id") == ours:
                    return True
        return False
    finally:
        sub.close(linger=0)
        control.close(linger=0)
        ctx.term()
