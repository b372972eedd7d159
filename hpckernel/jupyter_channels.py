"""The five channels of the Jupyter messaging protocol, as a connection file names them.

Read by whoever moves a kernel's channels between machines: the Slurm provisioner (the
hub's ports through the job directory and the SSH tunnels) and the argv bridge (its relay
and tunnels from a front end's ports to the hub's). :func:`channel_address` checks a
connection file's ports, :func:`key_bytes` reads its keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypedDict

Port = Literal["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]
#: A connection file's keys for the ports of shell, IOPub, stdin, control and heartbeat.
PORTS: tuple[Port, ...] = ("shell_port", "iopub_port", "stdin_port", "control_port",
                           "hb_port")


class ChannelAddress(TypedDict):
    """Where a kernel's five channels listen: an address and a TCP port each."""

    ip: str
    shell_port: int
    iopub_port: int
    stdin_port: int
    control_port: int
    hb_port: int


def key_bytes(value: str | bytes | None) -> bytes:
    """A connection file's key (HMAC, CurveZMQ) as the bytes zmq and ``Session`` take:
    jupyter_client holds them as bytes, a file read back as str; None as empty."""
    return value.encode() if isinstance(value, str) else value or b""


def channel_address(ip: str, ports: Mapping[str, object]) -> ChannelAddress:
    """``ip`` with the five ports in ``ports`` (a connection file, or port name → number);
    ValueError naming the first port that is missing or not a port number."""
    numbers: dict[str, int] = {}
    for name in PORTS:
        value = ports.get(name)
        if (isinstance(value, bool) or not isinstance(value, int | str)
                or not str(value).isdigit() or not 0 < int(value) < 65536):
            raise ValueError(f"{name} {value!r} is not a port number")
        numbers[name] = int(value)
    return ChannelAddress(ip=ip, shell_port=numbers["shell_port"],
                          iopub_port=numbers["iopub_port"], stdin_port=numbers["stdin_port"],
                          control_port=numbers["control_port"], hb_port=numbers["hb_port"])
