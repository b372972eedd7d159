"""Is the kernel's IOPub path whole? A probe through the tunnels, as a client would use them.

After the SSH master is rebuilt, the request channels work again as soon as their
listeners are back, but IOPub only once a subscription has travelled to the hub again:
output published before that is lost. The probe subscribes through the tunnel, sends a
``kernel_info_request`` on the control channel and waits for that request's ``status``
message on IOPub.
"""

from __future__ import annotations

import time
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session


def _curve_client(sock: zmq.Socket[Any], info: dict[str, Any]) -> None:
    public, secret = info.get("curve_publickey"), info.get("curve_secretkey")
    if public and secret:
        public = public.encode() if isinstance(public, str) else public
        secret = secret.encode() if isinstance(secret, str) else secret
        sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = (
            secret, public, public)


async def iopub_works(info: dict[str, Any], timeout: float) -> bool:
    """Whether a request's IOPub messages come back through ``info``'s ports (the
    connection info clients use) within ``timeout`` seconds."""
    key = info.get("key", b"")
    session = Session(key=key.encode() if isinstance(key, str) else key,
                      signature_scheme=info.get("signature_scheme", "hmac-sha256"))
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    control = ctx.socket(zmq.DEALER)
    try:
        for sock, port in ((sub, "iopub_port"), (control, "control_port")):
            sock.linger = 0
            _curve_client(sock, info)
            sock.connect(f"tcp://{info.get('ip', '127.0.0.1')}:{int(info[port])}")
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
