"""DAP messages as the debugger handles them: JSON objects from the front end and from
pydevd, which nothing validates as a whole, so each field's type is checked where it is
read (these helpers); and the responses built here.
"""

from __future__ import annotations

from collections.abc import Mapping

#: A DAP message (request, response, event) or an object inside one (``arguments``,
#: ``body``, a ``StackFrame``): JSON whose fields are checked where they are read.
DapMessage = dict[str, object]


def member(parent: Mapping[str, object], name: str) -> DapMessage:
    """``parent[name]`` if it is a JSON object (a message's ``arguments`` or ``body``), else
    a new empty one (so a missing one reads as empty)."""
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def members(parent: Mapping[str, object], name: str) -> list[DapMessage]:
    """The JSON objects in the array ``parent[name]`` (a body's ``variables``,
    ``stackFrames``, ``threads``); none if it is not an array."""
    value = parent.get(name)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def text(parent: Mapping[str, object], name: str) -> str:
    """``parent[name]`` as a string (a ``command``, a ``path``); "" if it is missing."""
    return str(parent.get(name, ""))


def number(parent: Mapping[str, object], name: str) -> int | None:
    """``parent[name]`` if it is an integer (an id, a ``pid``), else None."""
    value = parent.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def response(request: Mapping[str, object], body: DapMessage | None = None,
             message: str | None = None) -> DapMessage:
    """A DAP response to ``request``: a success with ``body``, or a failure with ``message``."""
    out: DapMessage = {"type": "response", "seq": request.get("seq", 0),
                    "request_seq": request.get("seq", 0),
                    "command": request.get("command", ""), "success": message is None}
    if message is not None:
        out["message"] = message
    out["body"] = body if body is not None else {}
    return out
