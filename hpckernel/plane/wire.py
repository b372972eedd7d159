"""Wire format of the hub↔rank plane.

A message is ``[msg_type, header, payload, *buffers]``:

- ``msg_type``: ASCII bytes (``execute``, ``stream``, ``reply`` …);
- ``header``: UTF-8 JSON, small metadata every message has (request id, rank …);
- ``payload``: a cloudpickle (protocol 5) of any Python value, or empty;
- ``buffers``: the out-of-band buffers of that pickle — numpy arrays travel as raw
  frames here, so a 16 MB array is never copied into a pickle byte string.

A snapshot of values that another thread keeps changing (``%peek`` of a running rank) is
pickled ``inband`` instead: the bytes are copied when the pickle is made, not later when
ZMQ sends the frames.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import zmq

NO_PAYLOAD = b""


@dataclass
class Message:
    """One decoded plane message."""

    msg_type: str
    header: dict[str, Any]
    payload: bytes | memoryview = NO_PAYLOAD
    buffers: list[memoryview] = field(default_factory=list)

    def value(self) -> Any:
        """Unpickle the payload; buffers are used in place (zero copy)."""
        if not self.payload:
            return None
        return pickle.loads(self.payload, buffers=self.buffers)


def dumps(value: Any, inband: bool = False) -> list[bytes | pickle.PickleBuffer]:
    """Serialise ``value`` into [pickle, *out-of-band buffers] (just [pickle] if ``inband``)."""
    if inband:
        return [cloudpickle.dumps(value, protocol=5)]
    buffers: list[pickle.PickleBuffer] = []
    data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return [data, *buffers]


def pack(msg_type: str, header: dict[str, Any], value: Any = None, *, has_value: bool = False,
         inband: bool = False) -> list[Any]:
    """Frames for one message; ``value`` is pickled when given (or ``has_value`` is set)."""
    frames: list[Any] = [msg_type.encode(), json.dumps(header).encode()]
    if value is not None or has_value:
        frames.extend(dumps(value, inband))
    else:
        frames.append(NO_PAYLOAD)
    return frames


def _view(frame: zmq.Frame | bytes) -> memoryview:
    return frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)


def unpack(frames: list[zmq.Frame] | list[bytes]) -> Message:
    """Decode frames received with ``copy=False`` (or plain bytes, in tests).

    Raises ``ValueError`` on a malformed message, so a receiver can log and drop it.
    """
    if len(frames) < 3:
        raise ValueError(f"plane message has {len(frames)} frames, expected at least 3")
    msg_type = bytes(_view(frames[0])).decode("ascii")
    header = json.loads(bytes(_view(frames[1])))
    if not isinstance(header, dict):
        raise ValueError("plane message header is not a JSON object")
    return Message(msg_type, header, _view(frames[2]), [_view(f) for f in frames[3:]])
