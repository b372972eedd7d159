"""Byte counts as people write and read them: ``'2GB'`` → 2000000000 → ``'2.0 GB'``."""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9,
          "GB": 10**9, "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``text`` (``'512MB'``, ``'2GB'``, ``'1GiB'``, ``'4096'``); ValueError if it
    is not a positive size."""
    size = _SIZE.match(text)
    unit = size[2].upper() if size else ""
    if not size or unit not in _UNITS or float(size[1]) <= 0:
        raise ValueError(f"{text!r} is not a size: use bytes with a unit ('512MB', '2GB', "
                         "'1GiB')")
    return int(float(size[1]) * _UNITS[unit])


def format_size(n: float) -> str:
    """``n`` bytes in decimal units: ``512 B``, ``1.5 MB``, ``2.1 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_memory(n: int) -> str:
    """A process's memory in whole binary units, as ``top`` shows it: ``12 MiB``."""
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"
