"""Content for the notebook that Jupyter's JSON packer always takes, whatever the ranks sent.

Ranks send what their code printed and displayed: text read with ``surrogateescape`` holds
lone surrogates (``'x\\ud800y'``), metadata can hold any object. Jupyter's packer refuses
both (``UnicodeEncodeError``, ``ValueError``), and a message the hub cannot send would
leave its cell without a reply. :func:`safe_content` makes such content sendable — lone
surrogates as ``\\ud800`` text, other values as their ``repr`` — and is used only when the
content failed to pack as it was (the common case costs nothing).
"""

from __future__ import annotations

import math
from typing import overload

#: Deeper than this, a value is shown as its repr: a rank's data cannot make the hub recurse
#: without end.
MAX_DEPTH = 64


@overload
def safe_content(value: dict[str, object], depth: int = 0) -> dict[str, object]:
    """A message's content made safe is a content again."""


@overload
def safe_content(value: object, depth: int = 0) -> object:
    """Any other value made safe (a JSON value)."""


def safe_content(value: object, depth: int = 0) -> object:
    """``value`` with every part JSON can carry (see the module docstring)."""
    if isinstance(value, str):
        return _safe_text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= MAX_DEPTH:
        return _safe_text(repr(value)[:1000])
    if isinstance(value, dict):
        return {_safe_text(str(k)): safe_content(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_content(v, depth + 1) for v in value]
    return _safe_text(repr(value)[:1000])


def _safe_text(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
