"""Rank target specifications (``%%px --targets 0:4``) and rank-range labels (``0-3,5``).

Two readers, two kinds of input. :func:`parse_targets` reads what a user typed (or passed
from hub code) and says what is wrong in words the user can act on. :func:`parse_ranks` and
:func:`rank_intervals` read the rank ranges that plane messages carry (``"0-3,5"``), which
come from ranks and node agents: they are bounded by the kernel's size and refuse anything
else before making a list, so that a short message naming ``0-40000000`` costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import SupportsIndex

#: The most ranks a plane message may name when its reader does not pass the kernel's
#: size (a bound, not a size: pass the size where it is known).
MAX_RANKS = 1 << 24

_USAGE = "use a rank (0), a list (1,3), a slice (0:4), -1 or 'all'"
_RANGE = re.compile(r"(\d{1,10})(?:-(\d{1,10}))?", re.ASCII)


class TargetError(ValueError):
    """A target specification that does not name valid ranks."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this (a magic or ``ranks[...]`` in hub code), not the hub's stack.
        return [f"TargetError: {self}"]


class RankRangeError(ValueError):
    """Rank ranges in a plane message that are malformed or name ranks beyond the kernel."""


#: What a user may name ranks with (see :func:`parse_targets`).
TargetSpec = str | int | slice | Sequence[int] | None


def parse_targets(spec: TargetSpec, size: int) -> list[int]:
    """Ranks named by ``spec`` among ``size`` ranks, sorted, without duplicates.

    ``spec`` is ``all``/None, an int (negative counts from the end), a ``start:stop[:step]``
    slice, a sequence of ints, or a comma-separated mix of those (``"0,2:4,-1"``).
    Anything else is a :class:`TargetError` that says what is wrong.
    """
    if spec is None:
        return list(range(size))
    if isinstance(spec, bool):
        raise TargetError(f"bad targets {spec!r}: {_USAGE}")
    if isinstance(spec, int):
        return [_one(spec, size, str(spec))]
    if isinstance(spec, slice):
        return _range(spec.start, spec.stop, spec.step, size, _slice_text(spec))
    if isinstance(spec, str):
        return _parse_text(spec, size)
    if isinstance(spec, Iterable):
        return sorted({_one(_index(r, spec), size, str(r)) for r in spec}) or _empty(
            str(spec))
    raise TargetError(f"bad targets {spec!r} (a {type(spec).__name__}): {_USAGE}")


def _parse_text(spec: str, size: int) -> list[int]:
    text = spec.strip()
    if text in ("all", "*", ""):
        return list(range(size))
    ranks: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            fields = part.split(":")
            if len(fields) > 3:
                raise TargetError(f"bad slice {part!r}: use start:stop[:step]")
            start, stop, step = [_int(f, part) if f.strip() else None
                                 for f in fields] + [None] * (3 - len(fields))
            ranks.update(_range(start, stop, step, size, part))
        elif (label := re.fullmatch(r"(\d{1,18})\s*-\s*(\d{1,18})", part, re.ASCII)) and (
                int(label[1]) <= int(label[2])):
            raise TargetError(f"bad targets {_short(spec)!r}: {part!r} is how labels write "
                              f"ranks {label[1]} to {label[2]}; as targets write "
                              f"{label[1]}:{int(label[2]) + 1}")
        else:
            ranks.add(_one(_int(part, spec), size, part))
    return sorted(ranks)


def _int(text: str, spec: str) -> int:
    if not re.fullmatch(r"\s*[-+]?\d{1,18}\s*", text, re.ASCII):
        raise TargetError(f"bad targets {_short(spec)!r}: {_USAGE}")
    return int(text)


def _index(value: object, spec: object) -> int:
    """An element of a sequence of targets as an int (numpy ints too), else TargetError."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TargetError(f"bad targets {_short(spec)}: {value!r} is not a rank number")
    return int(value.__index__())


def _one(rank: int, size: int, text: str) -> int:
    if not -size <= rank < size:
        raise TargetError(f"rank {_short(text)} does not exist: this kernel has {size} ranks "
                          f"(0-{size - 1})")
    return rank % size


def _range(start: object, stop: object, step: object, size: int, text: str) -> list[int]:
    """The ranks of slice ``start:stop:step`` among ``size`` (only ``size`` are made)."""
    values: list[int | None] = []
    for name, value in (("start", start), ("stop", stop), ("step", step)):
        if value is None:
            values.append(None)
        elif isinstance(value, bool) or not isinstance(value, SupportsIndex):
            raise TargetError(f"bad slice {text}: its {name} {value!r} is not a number")
        else:
            values.append(int(value.__index__()))
    if values[2] == 0:
        raise TargetError(f"bad slice {text}: its step cannot be 0")
    ranks = sorted(range(size)[slice(*values)])
    return ranks or _empty(text)


def _slice_text(spec: slice) -> str:
    return ":".join("" if v is None else str(v) for v in (spec.start, spec.stop, spec.step))


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _empty(spec: str) -> list[int]:
    raise TargetError(f"targets {_short(spec)!r} select no ranks")


def _runs(ranks: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of ``ranks``: ``[0, 1, 2, 5]`` → ``[(0, 2), (5, 5)]``."""
    runs: list[tuple[int, int]] = []
    for rank in sorted(set(ranks)):
        if runs and rank == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], rank)
        else:
            runs.append((rank, rank))
    return runs


def format_ranks(ranks: Iterable[int], width: int = 0) -> str:
    """``[0, 1, 2, 3, 5]`` → ``"0-3,5"``; with ``width``, cut after about that many
    characters (``"0-3,5,…"``): scattered ranks of a large job make long labels."""
    return _shorten(",".join(str(a) if a == b else f"{a}-{b}" for a, b in _runs(ranks)),
                    width)


def format_targets(ranks: Iterable[int]) -> str:
    """``[0, 1, 2, 3, 5]`` → ``"0:4,5"``: a spec ``parse_targets`` reads back."""
    return ",".join(str(a) if a == b else f"{a}:{b + 1}" for a, b in _runs(ranks))


def _shorten(text: str, width: int) -> str:
    if not width or len(text) <= width:
        return text
    return text[:text.rfind(",", 0, width) + 1] + "…"


def parse_ranks(text: str, limit: int | None = None) -> list[int]:
    """``"0-3,5"`` → ``[0, 1, 2, 3, 5]``: the inverse of :func:`format_ranks` (how requests,
    replies and output of plane messages name their ranks). ``limit``: the kernel's number
    of ranks (None: ``MAX_RANKS``); a rank at or beyond it, overlapping ranges (more than
    ``limit`` ranks in all) or anything malformed is a :class:`RankRangeError` (a
    ``ValueError``), raised before any list is made."""
    ranks: list[int] = []
    for lo, hi in rank_intervals(text, limit):
        ranks.extend(range(lo, hi + 1))
    return ranks


def rank_intervals(text: str, limit: int | None = None) -> list[tuple[int, int]]:
    """``"0-3,5"`` → ``[(0, 3), (5, 5)]``, without making a list of every rank; bounded by
    ``limit`` as :func:`parse_ranks` is."""
    size = MAX_RANKS if limit is None else limit
    intervals: list[tuple[int, int]] = []
    if not text:
        return intervals
    if not isinstance(text, str):
        raise RankRangeError(f"rank ranges must be text, not {type(text).__name__}")
    count = 0
    for part in _parts(text):
        match = _RANGE.fullmatch(part)
        if match is None:
            raise RankRangeError(f"bad rank range {_short(part)!r}")
        lo = int(match[1])
        hi = int(match[2]) if match[2] is not None else lo
        if hi < lo:
            raise RankRangeError(f"bad rank range {part!r}: it ends before it starts")
        if hi >= size:
            raise RankRangeError(f"rank range {part!r} goes beyond the kernel's {size} ranks")
        count += hi - lo + 1
        if count > size:
            raise RankRangeError(f"rank ranges {_short(text)!r} name more ranks than the "
                                 f"kernel's {size}")
        intervals.append((lo, hi))
    return intervals


def _parts(text: str) -> Iterator[str]:
    """The comma-separated parts of ``text``, one at a time (a long text is not split into
    a list of millions of strings before the first is checked)."""
    start = 0
    while True:
        end = text.find(",", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end]
        start = end + 1


def format_sorted(ranks: list[int]) -> str:
    """:func:`format_ranks` of distinct ranks in increasing order (what :func:`parse_targets`
    gives), with a shortcut for one run: thousands of ranks are not sorted again."""
    if ranks and ranks[-1] - ranks[0] == len(ranks) - 1:
        return str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"
    return format_ranks(ranks)
