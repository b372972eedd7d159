"""How ``%peek`` and ``%where`` show the ranks' answers: one block per group of ranks that
answered alike, labelled like the rest of the output (``[peek:0-3]``, ``[where:1,3]``)."""

from __future__ import annotations

from typing import TypedDict

from ..plane.groups import group_equal
from ..targets import format_ranks
from .requests import Request


class StackFrame(TypedDict):
    """One frame of a rank's stack, as ``where`` answers it (innermost last)."""

    file: str
    line: int
    function: str
    code: str


class WhereAnswer(TypedDict):
    """A rank's answer to ``where`` (``worker/introspect.py``)."""

    state: str  # "busy" or "idle"
    seconds: float
    stack: list[StackFrame]


def _failures(request: Request, label: str) -> list[str]:
    errors = {r: f"{e.get('ename')}: {e.get('evalue')}" for r, e in request.errors.items()}
    return [f"[{label}:{format_ranks(ranks)}] {text}"
            for text, ranks in group_equal(errors)]


def format_peek(request: Request, names: list[str]) -> str:
    """``%peek``'s text: each name's value per group of ranks that hold the same, then the
    failures."""
    lines = []
    for i, name in enumerate(names):
        shown = {r: repr(v[i]) for r, v in request.values.items()
                 if request.replies.get(r, {}).get("status") == "ok"}
        for text, ranks in group_equal(shown):
            sep = "\n" if "\n" in text else " "
            lines.append(f"[peek:{format_ranks(ranks)}] {name} ={sep}{text}")
    return "\n".join([*lines, *_failures(request, "peek")])


def _stack_text(answer: WhereAnswer) -> str:
    if answer["state"] != "busy":
        return "idle"
    frames = answer["stack"]
    text = [f"busy for {answer['seconds']:.1f} s" + (", in:" if frames else
                                                      " (in the rank's own code)")]
    for f in frames:
        text.append(f"  {f['file']}, line {f['line']}, in {f['function']}")
        if f["code"]:
            text.append(f"    {f['code']}")
    return "\n".join(text)


def format_where(request: Request) -> str:
    """``%where``'s text: each group of ranks at the same place, its stack, then the failures."""
    answers: dict[int, WhereAnswer] = {r: v for r, v in request.values.items()
                                       if request.replies.get(r, {}).get("status") == "ok"}
    # Ranks in the same place group together even if they started at different times.
    groups = group_equal(answers, lambda a: repr((a["state"], a["stack"])))
    lines = []
    for answer, ranks in groups:
        slowest = max(answers[r]["seconds"] for r in ranks)
        lines.append(f"[where:{format_ranks(ranks)}] "
                     + _stack_text({**answer, "seconds": slowest}))
    return "\n".join([*lines, *_failures(request, "where")])
