"""The internal hub↔rank plane: wire format and credentials.

The hub binds a ZMQ ROUTER; each rank connects a DEALER whose identity is its rank number.
Ranks on the hub's node use an IPC socket inside the 0700 job directory (fast, and
authenticated by file permissions); ranks on other nodes use TCP with CurveZMQ.
"""

from . import kinds
from .credentials import PlaneInfo, make_job_dir, read_plane_info, write_plane_info
from .wire import Message, pack, unpack

__all__ = [
    "Message",
    "PlaneInfo",
    "kinds",
    "make_job_dir",
    "pack",
    "read_plane_info",
    "unpack",
    "write_plane_info",
]
