"""Locating the templates shipped in ``kernelspec/`` and ``launcher/``.

In a source checkout (editable install) they sit beside the package; a wheel carries them
inside it, under ``hpckernel/_templates``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def template_dir(name: str) -> Path:
    """The ``kernelspec`` or ``launcher`` directory."""
    for candidate in (_PACKAGE / "_templates" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"hpckernel's {name}/ templates are missing: reinstall hpckernel")
