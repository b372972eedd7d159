"""Moving variables between the hub and the ranks: what ``--in``/``--out``, ``%push``/
``%pull`` and ``ranks.scatter``/``ranks.gather`` share.

Values travel through the plane's ``push``/``pull`` requests, so numpy arrays go as raw
frames; ``scatter`` gives each rank its own slice (``numpy.array_split`` along the first
axis, in target order) and ``concat`` joins what the ranks hold the same way back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import ModuleType

from ..targets import format_ranks
from .errors import HubError
from .requests import Request


class TransferError(HubError, ValueError):
    """A variable that cannot be moved as asked; the message says what to do instead."""

    def _render_traceback_(self) -> list[str]:
        return [f"TransferError: {self}"]  # IPython shows this, not the hub's own stack


def hub_values(namespace: Mapping[str, object], names: list[str]) -> dict[str, object]:
    """The hub's values of ``names``."""
    missing = [n for n in names if n not in namespace]
    if missing:
        raise TransferError(f"{missing[0]!r} is not defined in the hub: define it in a "
                            "%%local cell (or with ranks.pull) first")
    return {n: namespace[n] for n in names}


def _numpy(what: str) -> ModuleType:
    try:
        import numpy
    except ImportError:
        raise TransferError(f"{what} needs numpy in the hub: pip install numpy") from None
    return numpy


def split(name: str, value: object, parts: int) -> list[object]:
    """``value`` cut into ``parts`` nearly equal pieces along its first axis."""
    np = _numpy("scatter")
    if np.ndim(value) == 0:
        raise TransferError(f"cannot scatter {name!r}: a {type(value).__name__} has no first "
                            "axis to split; send it whole with --in / %push instead")
    return list(np.array_split(value, parts))


def per_rank(values: dict[str, object], targets: list[int], scatter: bool
             ) -> dict[int, object] | None:
    """Each target's namespace update (a dict of names) for a scatter; None for a
    broadcast."""
    if not scatter:
        return None
    pieces = {name: split(name, value, len(targets)) for name, value in values.items()}
    return {rank: {name: parts[i] for name, parts in pieces.items()}
            for i, rank in enumerate(targets)}


def collect(request: Request, names: list[str]) -> dict[str, list[object]]:
    """Each name's values in target order, from a finished ``pull`` request.

    A name that some ranks lack is one error naming them; nothing is half assigned."""
    errors = request.errors
    lacking = {r: e for r, e in errors.items() if e.get("ename") == "NameError"}
    if lacking and len(lacking) == len(errors):
        found = re.search(r"name '(\w+)'", next(iter(lacking.values())).get("evalue", ""))
        name = found[1] if found else names[0]
        have = [r for r in request.targets if r not in lacking]
        where = (f" (only rank{'s' if len(have) > 1 else ''} {format_ranks(have)} "
                 f"ha{'ve' if len(have) > 1 else 's'} it)" if have else "")
        raise TransferError(
            f"{name!r} is not defined on rank{'s' if len(lacking) > 1 else ''} "
            f"{format_ranks(lacking)}{where}, so nothing was gathered into the hub"
            + (f"; get the others with ranks[{have!r}].pull({name!r})" if have else ""))
    request.raise_for_errors()
    return {name: [request.values[r][i] for r in request.targets]
            for i, name in enumerate(names)}


def concat(name: str, values: list[object]) -> object:
    """The ranks' arrays joined along their first axis, in rank order."""
    np = _numpy("concat")
    types = ", ".join(sorted({type(v).__name__ for v in values}))
    try:
        arrays = [np.atleast_1d(v) for v in values]
        kinds = {a.dtype.kind for a in arrays}
        # No silent coercion: objects stay objects, numbers do not turn into text.
        if "O" in kinds or (kinds & set("USV") and kinds - set("USV")):
            raise TypeError("these are not arrays of one kind")
        return np.concatenate(arrays)
    except (TypeError, ValueError) as e:
        raise TransferError(f"cannot concatenate {name!r} from the ranks ({types}): {e}; "
                            "gather it as a list instead (without --concat)") from None
