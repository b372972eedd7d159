"""The dependency graph of a workflow's steps: order, levels, what comes after what.

Pure functions over `{name: Step}`; used by the engine (submission order, which steps a
resubmit re-runs) and by the views (rows of boxes by depth).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import DefinitionError
from .spec import Step


def order(steps: Mapping[str, Step]) -> list[str]:
    """Step names so that every step comes after the steps it depends on; definition order
    is kept where dependencies allow. Raises `DefinitionError` naming a cycle or an unknown
    step."""
    for step in steps.values():
        for up in step.after:
            if up not in steps:
                raise DefinitionError(f"step {step.name!r}: after names unknown step {up!r}; "
                                      f"known steps: {', '.join(steps)}")
    done: list[str] = []
    placed: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in placed:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name):], name]
            raise DefinitionError(f"the steps form a cycle: {' -> '.join(reversed(cycle))}; "
                                  "remove one of these dependencies")
        visiting.append(name)
        for up in steps[name].after:
            visit(up)
        visiting.pop()
        placed.add(name)
        done.append(name)

    for name in steps:
        visit(name)
    return done


def levels(steps: Mapping[str, Step]) -> list[list[str]]:
    """Steps grouped by depth: roots first, each step one level below its deepest parent."""
    depth: dict[str, int] = {}
    for name in order(steps):
        depth[name] = 1 + max((depth[up] for up in steps[name].after), default=-1)
    rows: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for name in steps:
        rows[depth[name]].append(name)
    return rows


def descendants(steps: Mapping[str, Step], names: Iterable[str]) -> set[str]:
    """Every step that depends, directly or not, on one of `names` (not `names` themselves)."""
    below: dict[str, set[str]] = {name: set() for name in steps}
    for step in steps.values():
        for up in step.after:
            below[up].add(step.name)
    found: set[str] = set()
    todo = list(names)
    while todo:
        for child in below[todo.pop()]:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found - set(names)
