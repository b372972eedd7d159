"""``ranks``: the programmatic twin of the px magics, in the hub's namespace.

    ranks.execute("x = rank ** 2")        # like a %%px cell
    ranks[0:2].apply(f, 1, y=2)           # [f(1, y=2) on rank 0, on rank 1]
    ranks.push({"a": array})              # numpy arrays travel as raw frames
    ranks.pull("x")                       # [x on rank 0, x on rank 1, ...]
    ranks[0].pull("x")                    # x on rank 0 (an int index gives a single rank)
    ranks.scatter("part", a)              # rank i gets numpy.array_split(a, n)[i] as `part`
    ranks.gather("part")                  # their `part`s concatenated again
    ranks.peek("i")                       # `i` now, while the ranks run a cell
    ranks.where()                         # what each rank is running now (its stack)
    ranks.live["loss"]                    # {rank: [values]} the ranks hpckernel.publish()ed
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from ..targets import format_ranks
from .live import LiveStore
from .px_controller import PxController, PxHandle


class RankView:
    """A set of ranks; index or slice it to narrow the set."""

    def __init__(self, px: PxController, targets: list[int] | None = None,
                 single: bool = False) -> None:
        self._px = px
        self._targets = targets
        self._single = single

    @property
    def targets(self) -> list[int]:
        """The ranks of this view (all of the kernel's when not narrowed)."""
        return self._targets if self._targets is not None else list(range(self._px.size))

    def __getitem__(self, key: int | slice | str | list[int]) -> RankView:
        chosen = self._px.resolve(key) if self._targets is None else _subset(self.targets, key)
        return RankView(self._px, chosen, single=isinstance(key, int))

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        return f"<ranks {format_ranks(self.targets)} of {self._px.size}>"

    def _result(self, values: list[object]) -> object:
        return values[0] if self._single else values

    @property
    def live(self) -> LiveStore:
        """What the ranks published (``hpckernel.publish``): ``ranks.live["loss"]`` is
        ``{rank: [values, oldest first]}``, ``ranks.live.latest("loss")`` the last ones."""
        return self._px.pool.live

    def execute(self, code: str, block: bool = True) -> PxHandle:
        """Run ``code`` on these ranks; their output shows in the current cell."""
        self._px.wait_ready()
        handle = self._px.submit("execute", self.targets, {"code": code}, block=block,
                                 label="ranks.execute", output="live",
                                 hint="the handle of ranks.execute(...): .display_outputs("
                                 "'{ranks}')")
        if block:
            handle.result()
        return handle

    def apply(self, f: Callable[..., object], *args: object, **kwargs: object) -> object:
        """Call ``f(*args, **kwargs)`` on each rank; the return values."""
        return self._result(self._px.run("apply", self.targets, value=(f, args, kwargs)))

    def push(self, namespace: dict[str, object]) -> None:
        """Assign each name in ``namespace`` on every rank."""
        if not isinstance(namespace, dict):
            raise TypeError("push takes a dict of names to values, e.g. ranks.push({'x': 1})")
        self._px.run("push", self.targets, value=namespace)

    def pull(self, names: str | list[str]) -> object:
        """The value of ``names`` (a name or a list of names) on each rank."""
        many = not isinstance(names, str)
        wanted = list(names) if many else [names]
        # A pull's reply value is the list of the names' values (worker/runner.py).
        values = [v if many else cast("list[object]", v)[0] for v in
                  self._px.run("pull", self.targets, {"names": wanted})]
        return self._result(values)

    def scatter(self, name: str, array: object) -> None:
        """Split ``array`` along its first axis (``numpy.array_split``) and assign piece i
        to ``name`` on the i-th of these ranks."""
        self._px.wait_ready()
        self._px.push(self.targets, {name: array}, scatter=True).result()

    def gather(self, name: str) -> object:
        """``name`` from each rank, concatenated along the first axis in rank order."""
        return self._px.gather(self.targets, [name], concat=True)[name]

    def peek(self, names: str | list[str], timeout: float = 10.0) -> object:
        """The current value of ``names`` (``x`` or ``x.attr``; a name or a list) on each
        rank, read while the ranks keep running their cell."""
        many = not isinstance(names, str)
        wanted = list(names) if many else [names]
        request = self._px.ask("peek", self.targets, {"names": wanted}, timeout)
        request.raise_for_errors()
        # A peek's reply value is the list of the names' values, as a pull's.
        return self._result([v if many else cast("list[object]", v)[0]
                             for v in request.value_list()])

    def where(self, timeout: float = 10.0) -> object:
        """What each rank runs now: ``{"state": "busy"|"idle", "seconds", "stack": [{file,
        line, function, code}, ...]}`` (innermost frame last)."""
        request = self._px.ask("where", self.targets, {}, timeout)
        request.raise_for_errors()
        return self._result(request.value_list())


def _subset(targets: list[int], key: int | slice | str | list[int]) -> list[int]:
    if isinstance(key, int):
        return [targets[key]]
    if isinstance(key, slice):
        return targets[key]
    if isinstance(key, str):
        raise TypeError("narrow a view with an index or slice, e.g. ranks[0:2][1]")
    return [targets[i] for i in key]
