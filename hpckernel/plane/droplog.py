"""One log line per kind of dropped message every ten seconds, however many messages cause
it: a peer sending junk (or a bug sending the wrong thing) must not fill a log."""

from __future__ import annotations

import logging
import time


class DropLog:
    """Says, at most every ``interval`` seconds per kind of trouble, that messages were
    dropped, and how many since it last said so."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}

    def dropped(self, who: str, why: str) -> None:
        """A message from ``who`` was dropped because ``why``."""
        now = time.monotonic()
        last, count = self._last.get(why, (-1e9, 0))
        if now - last < self.interval:
            self._last[why] = (last, count + 1)
            return
        self._last[why] = (now, 0)
        more = f" (and {count} more since)" if count else ""
        self.logger.warning("dropped a message from %s: %s%s", who[:100], why[:200], more)
