"""Rank target specifications (``%%px --targets 0:4``) and rank-range labels (``0-3,5``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class TargetError(ValueError):
    """A target specification that does not name valid ranks."""


def parse_targets(spec: str | int | slice | Sequence[int] | None, size: int) -> list[int]:
    """Ranks named by ``spec`` among ``size`` ranks, sorted, without duplicates.

    ``spec`` is ``all``/None, an int (negative counts from the end), a ``start:stop[:step]``
    slice, or a comma-separated mix of those (``"0,2:4,-1"``).
    """
    if spec is None:
        return list(range(size))
    if isinstance(spec, int):
        return [_one(spec, size, str(spec))]
    if isinstance(spec, slice):
        return list(range(size))[spec] or _empty(str(spec))
    if not isinstance(spec, str):
        return sorted({_one(int(r), size, str(r)) for r in spec}) or _empty(str(spec))
    text = spec.strip()
    if text in ("all", "*", ""):
        return list(range(size))
    ranks: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            ranks.update(_slice(part, size))
        else:
            ranks.add(_one(_int(part, spec), size, part))
    return sorted(ranks)


def _int(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TargetError(
            f"bad targets {spec!r}: use a rank (0), a list (1,3), a slice (0:4), -1 or 'all'"
        ) from None


def _one(rank: int, size: int, text: str) -> int:
    if not -size <= rank < size:
        raise TargetError(f"rank {text} does not exist: this kernel has {size} ranks "
                          f"(0-{size - 1})")
    return rank % size


def _slice(part: str, size: int) -> list[int]:
    fields = part.split(":")
    if len(fields) > 3:
        raise TargetError(f"bad slice {part!r}: use start:stop[:step]")
    values = [_int(f, part) if f.strip() else None for f in fields]
    ranks = list(range(size))[slice(*values)]
    if not ranks:
        _empty(part)
    return ranks


def _empty(spec: str) -> list[int]:
    raise TargetError(f"targets {spec!r} select no ranks")


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
    """``"0-3,5"`` → ``[0, 1, 2, 3, 5]``: the inverse of :func:`format_ranks` (how requests
    carry their targets to node agents). ``ValueError`` on anything else, and (with
    ``limit``, the number of ranks there are) on ranks beyond it, before any list is made:
    a short text must not make a huge list."""
    ranks: list[int] = []
    for lo, hi in rank_intervals(text, limit):
        ranks.extend(range(lo, hi + 1))
    return ranks


def rank_intervals(text: str, limit: int | None = None) -> list[tuple[int, int]]:
    """``"0-3,5"`` → ``[(0, 3), (5, 5)]``, without making a list of every rank; with
    ``limit``, ``ValueError`` for a rank not below it."""
    intervals: list[tuple[int, int]] = []
    if not text:
        return intervals
    for part in text.split(","):
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo < 0 or hi < lo:
            raise ValueError(f"bad rank range {part[:40]!r}")
        if limit is not None and hi >= limit:
            raise ValueError(f"rank range {part[:40]!r} goes beyond the {limit} ranks")
        intervals.append((lo, hi))
    return intervals


def format_sorted(ranks: list[int]) -> str:
    """:func:`format_ranks` of distinct ranks in increasing order (what :func:`parse_targets`
    gives), with a shortcut for one run: thousands of ranks are not sorted again."""
    if ranks and ranks[-1] - ranks[0] == len(ranks) - 1:
        return str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"
    return format_ranks(ranks)

