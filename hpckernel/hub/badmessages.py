"""What a bad message may cost the hub: a short log line, and no state kept for it.

jupyter_client's ``Session`` puts the ``repr`` of a wrong signature into its error (which
ipykernel logs whole) and keeps every signature it saw against replays — before it checks
it: one unauthenticated message with a 1 MB signature was 1 MB of log and 1 MB of memory.
"""

from __future__ import annotations

import logging

import zmq
from jupyter_client.session import Session

#: Longest line, and most characters in all, that one log record may write.
MAX_LINE = 300
MAX_RECORD = 4000


class CheckedSession(Session):
    """A ``Session`` that refuses a signature of the wrong length before anything else."""

    def deserialize(self, msg_list: list[bytes] | list[zmq.Message], content: bool = True,
                    copy: bool = True) -> dict[str, object]:
        """jupyter_client's ``deserialize``, after the signature's length is checked."""
        if self.auth is not None and msg_list:
            size = len(msg_list[0])  # bytes, or a zmq.Frame with copy=False
            expected = 2 * self.auth.digest_size  # hex digits
            if size and size != expected:
                raise ValueError(f"Invalid Signature: {size} bytes, not {expected}")
        result: dict[str, object] = super().deserialize(msg_list, content, copy)
        return result


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else (
        f"{text[:limit]}… [{len(text) - limit} more characters]")


class CapRecords(logging.Filter):
    """Shortens every line of a record's message and traceback to ``MAX_LINE`` characters
    and the whole record to ``MAX_RECORD``, whatever a message put into it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Shorten the record's message and traceback lines (always keeps the record)."""
        message = record.getMessage()
        if len(message) > MAX_LINE:
            record.msg, record.args = _shorten(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _shorten(record.exc_text)
        return True


def _shorten(text: str) -> str:
    return _cut("\n".join(_cut(line, MAX_LINE) for line in text.splitlines()), MAX_RECORD)


def cap_log_records(*loggers: logging.Logger) -> None:
    """Put :class:`CapRecords` on every handler that records of ``loggers`` reach."""
    for logger in loggers:
        current: logging.Logger | None = logger
        while current is not None:
            for handler in current.handlers:
                if not any(isinstance(f, CapRecords) for f in handler.filters):
                    handler.addFilter(CapRecords())
            current = current.parent if current.propagate else None
