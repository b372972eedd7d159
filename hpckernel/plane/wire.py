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

A reply from a rank on the hub's node carries each buffer of at least ``shm.MIN_SIZE``
bytes in a shared-memory segment instead of a frame (:func:`to_shm`); the header's ``shm``
field names the segments, and :func:`unpack` maps them in place of the frames.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import zmq

from . import shm
from .headers import PlaneHeader, ShmSegment

NO_PAYLOAD = b""
#: One frame of a message to send: what ``send_multipart(copy=False)`` takes (a received
#: ``zmq.Frame`` passed on, a pickle's out-of-band buffer, bytes or a view of them).
OutFrame = bytes | memoryview | pickle.PickleBuffer | zmq.Frame
#: Header field of a message whose buffers are (partly) in shared memory: a list of
#: ``[buffer index, segment name, size]``; the other buffers are the frames, in order.
SHM = "shm"
#: More segments than this in one message is malformed (a numpy array needs one).
MAX_SEGMENTS = 4096


@dataclass
class Message:
    """One decoded plane message."""

    msg_type: str
    header: PlaneHeader
    payload: bytes | memoryview = NO_PAYLOAD
    buffers: list[memoryview] = field(default_factory=list)

    def value(self) -> Any:  # whatever the sender pickled: its receiver knows its shape
        """Unpickle the payload; buffers are used in place (zero copy)."""
        if not self.payload:
            return None
        return pickle.loads(self.payload, buffers=self.buffers)


def dumps(value: object, inband: bool = False) -> list[bytes | pickle.PickleBuffer]:
    """Serialise ``value`` into [pickle, *out-of-band buffers] (just [pickle] if ``inband``)."""
    if inband:
        return [cloudpickle.dumps(value, protocol=5)]
    buffers: list[pickle.PickleBuffer] = []
    data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return [data, *buffers]


def pack(msg_type: str, header: Mapping[str, object], value: object = None, *,
         has_value: bool = False, inband: bool = False) -> list[OutFrame]:
    """Frames for one message; ``value`` is pickled when given (or ``has_value`` is set)."""
    frames: list[OutFrame] = [msg_type.encode(), json.dumps(header).encode()]
    if value is not None or has_value:
        frames.extend(dumps(value, inband))
    else:
        frames.append(NO_PAYLOAD)
    return frames


def to_shm(frames: list[OutFrame], prefix: str) -> list[OutFrame]:
    """The message ``frames`` (of :func:`pack`) for a hub on this node: each out-of-band
    buffer of at least ``shm.MIN_SIZE`` bytes is copied into a shared-memory segment under
    ``prefix`` and named in the header instead of sent. A buffer whose segment cannot be made
    stays a frame. Moved buffers are copies: their owner may change them once this returns."""
    if len(frames) <= 3:
        return frames
    segments: list[ShmSegment] = []
    rest: list[OutFrame] = []
    for index, buf in enumerate(frames[3:]):
        name = None
        if isinstance(buf, pickle.PickleBuffer) and len(segments) < MAX_SEGMENTS:
            try:
                flat = buf.raw()
            except BufferError:  # not contiguous: cannot be one segment
                flat = memoryview(b"")
            if flat.nbytes >= shm.MIN_SIZE:
                name = shm.create(prefix, flat)
        if name is None:
            rest.append(buf)
        else:
            segments.append([index, name, flat.nbytes])
    if not segments:
        return frames
    head = frames[1]
    assert isinstance(head, bytes)  # pack made it
    header = json.loads(head)
    header[SHM] = segments
    return [frames[0], json.dumps(header).encode(), frames[2], *rest]


def attach_segments(msg_type: str, segments: object, frames: list[memoryview],
                    prefix: str | None) -> list[memoryview]:
    """``frames`` with the header's shared-memory segments mapped in at their indices."""
    named = ([e[1] for e in segments if isinstance(e, list) and len(e) == 3
              and isinstance(e[1], str)] if isinstance(segments, list) else [])
    try:
        if msg_type != "reply":
            raise ValueError(f"a {msg_type!r} message may not name shared-memory segments")
        if not isinstance(segments, list) or not 0 < len(segments) <= MAX_SEGMENTS:
            raise ValueError("bad shared-memory segment list")
        total = len(frames) + len(segments)
        wanted: dict[int, tuple[str, int]] = {}
        for entry in segments:
            if not (isinstance(entry, list) and len(entry) == 3):
                raise ValueError("bad shared-memory segment entry")
            index, name, size = entry
            if (type(index) is not int or type(size) is not int or not isinstance(name, str)
                    or not 0 <= index < total or index in wanted or size <= 0):
                raise ValueError("bad shared-memory segment entry")
            match = shm.NAME.match(name)
            if not match or (prefix is not None and match[1] != prefix):
                raise ValueError(f"bad shared-memory segment name {name[:80]!r}")
            wanted[index] = (name, size)
        rest = iter(frames)
        return [shm.attach(*wanted[i]) if i in wanted else next(rest) for i in range(total)]
    except ValueError:
        for name in named:  # those not mapped yet: nobody else will remove them
            match = shm.NAME.match(name)
            if match and (prefix is None or match[1] == prefix):
                shm.discard(name)
        raise


def _view(frame: zmq.Frame | bytes) -> memoryview:
    return frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)


def unpack(frames: list[zmq.Frame] | list[bytes], shm_prefix: str | None = None,
           keep_shm: bool = False) -> Message:
    """Decode frames received with ``copy=False`` (or plain bytes, in tests).

    Buffers in shared-memory segments (see :func:`to_shm`) are mapped, and their names
    removed, here; with ``shm_prefix``, only segments of that kernel are accepted (with
    ``""``, none: for messages from other nodes). With ``keep_shm`` they stay named in the
    header, unmapped, for whoever the message goes to next.
    Raises ``ValueError`` on a malformed message, so a receiver can log and drop it.
    """
    if len(frames) < 3:
        raise ValueError(f"plane message has {len(frames)} frames, expected at least 3")
    try:
        msg_type = bytes(_view(frames[0])).decode("ascii")
        header = json.loads(bytes(_view(frames[1])))
    except (ValueError, RecursionError) as e:  # RecursionError: deeply nested JSON
        raise ValueError(f"plane message does not decode: {type(e).__name__}: "
                         f"{str(e)[:200]}") from None
    if not isinstance(header, dict):
        raise ValueError("plane message header is not a JSON object")
    buffers = [_view(f) for f in frames[3:]]
    segments = header.pop(SHM, None)
    if segments is not None:
        if keep_shm:  # passed on unopened (a node agent on the hub's node)
            header[SHM] = segments
        else:
            buffers = attach_segments(msg_type, segments, buffers, shm_prefix)
    return Message(msg_type, header, _view(frames[2]), buffers)  # type: ignore[arg-type]
