"""Timestamps in records (provenance, run records, workflow files): one format everywhere.

ISO 8601 in UTC with milliseconds (``2026-11-30T21:40:25.123+00:00``): sortable as text,
unambiguous across the nodes and time zones a record passes through, and precise enough to
order the cells of a session. People see them in local time (:func:`shown`).
"""

from __future__ import annotations

from datetime import datetime, timezone


def iso(moment: datetime) -> str:
    """``moment`` (aware, or naive local time) in the record format."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def now() -> str:
    """The current time in the record format."""
    return iso(datetime.now(timezone.utc))


def shown(stamp: str | None) -> str:
    """A record's timestamp as people read it: local time to the second; ``-`` if none."""
    if not stamp:
        return "-"
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")
