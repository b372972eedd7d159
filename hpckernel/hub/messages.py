"""The Jupyter messages the hub reads and sends, as types: what the kernel, the controller,
the merger and the requests in flight pass each other (``publish``, a cell's parent).

Contents are JSON objects built and sent as plain dicts (jupyter_client's ``Session.send``
takes ``dict``), so they are ``dict[str, object]``; the few with fixed keys that the hub
reads back (an error) have a ``TypedDict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypedDict

#: an IOPub message's content or metadata, a reply's content: JSON values by key
Content = dict[str, object]
#: the Jupyter message a request came in (ipykernel's ``get_parent``): its ``header``
#: (``msg_id``, ...), ``content``, ...; the parent of what the hub publishes for it
Parent = dict[str, object]
#: publish(msg_type, content, metadata, parent) sends one IOPub message
Publish = Callable[[str, Content, Content, "Parent | None"], None]
#: one IOPub message kept to publish later: (msg_type, content, metadata)
IOPubMessage = tuple[str, Content, Content]


class ErrorContent(TypedDict):
    """An ``error`` message's content, and the error fields of an ``execute_reply``."""

    ename: str
    evalue: str
    traceback: list[str]


def msg_id(parent: Mapping[str, object] | None) -> str | None:
    """The ``msg_id`` of ``parent``'s header (None without a parent, header or id)."""
    header = (parent or {}).get("header")
    if not isinstance(header, Mapping):
        return None
    found = header.get("msg_id")
    return found if isinstance(found, str) else None


def mime_data(content: Mapping[str, object]) -> Mapping[str, object]:
    """A display's ``data`` (its MIME bundle); empty without one."""
    data = content.get("data")
    return data if isinstance(data, Mapping) else {}
