"""DAP ids across the debugged processes: each rank's pydevd (and the hub's own, for
``%%local`` cells) numbers its threads, frames and variables by itself; the front end sees
one debugger, so the hub gives every such id one of its own.

Threads have fixed ids: rank N's main thread is ``N + 1`` (so JupyterLab's default thread,
1, is rank 0) and the hub's is ``size + 1``. Frames and variable references share one
numbering (pydevd's do too), valid until the thread they belong to runs again (DAP).
"""

from __future__ import annotations

#: A debugged process: a rank's number, or "hub".
Key = int | str

HUB: Key = "hub"


class ThreadIds:
    """The DAP thread id of each process's main thread, and its name."""

    def __init__(self, size: int) -> None:
        self.size = size

    def thread(self, key: Key) -> int:
        """The DAP id of ``key``'s main thread, as the front end sees it."""
        return self.size + 1 if key == HUB else int(key) + 1

    def key(self, thread: object) -> Key | None:
        """The process whose main thread has the DAP id ``thread`` (None: no such thread)."""
        if not isinstance(thread, int) or not 1 <= thread <= self.size + 1:
            return None
        return HUB if thread == self.size + 1 else thread - 1

    @staticmethod
    def name(key: Key) -> str:
        """The thread's name in the front end's list (and in what the hub says of it)."""
        return "hub (%%local cells)" if key == HUB else f"rank {key}"


class RefIds:
    """Frame ids and variable references: the hub's number for (process, its number)."""

    def __init__(self) -> None:
        self._next = 1
        self._global: dict[tuple[Key, int], int] = {}
        self._local: dict[int, tuple[Key, int]] = {}

    def outward(self, key: Key, local: object) -> object:
        """The front end's id for ``local`` of ``key`` (0 and non-numbers stay as they are)."""
        if not isinstance(local, int) or isinstance(local, bool) or local == 0:
            return local
        found = self._global.get((key, local))
        if found is None:
            found = self._global[(key, local)] = self._next
            self._local[found] = (key, local)
            self._next += 1
        return found

    def inward(self, ref: object) -> tuple[Key, int] | None:
        """The process and its own id behind the front end's ``ref``."""
        return self._local.get(ref) if isinstance(ref, int) else None

    def forget(self, key: Key) -> None:
        """``key``'s ids are no longer valid (its thread ran on, or it is gone)."""
        for pair in [p for p in self._global if p[0] == key]:
            del self._local[self._global.pop(pair)]
