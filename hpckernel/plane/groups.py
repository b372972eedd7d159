"""Grouping equal items by rank: how the hub and the node agents merge what many ranks sent
(equal text, equal replies, equal errors) into one entry with a rank range."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


def group_equal(items: dict[int, T], key: Callable[[T], Hashable] = lambda x: x
                ) -> list[tuple[T, list[int]]]:
    """Equal items together (``key`` says what makes them equal), groups in order of their
    lowest rank, ranks ascending within each group."""
    groups: dict[Hashable, tuple[T, list[int]]] = {}
    for rank in sorted(items):
        groups.setdefault(key(items[rank]), (items[rank], []))[1].append(rank)
    return list(groups.values())
