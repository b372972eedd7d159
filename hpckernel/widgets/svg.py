"""A line chart as a self-contained SVG string: the live plot's drawing, no plotting library.

Numbers only; a dict value becomes one line per numeric key, an array value plots its
latest contents against the index.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT, PAD = 560, 240, 40


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real):
        try:  # numpy scalars and 0-d arrays
            value = float(value)
        except (TypeError, ValueError):
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def lines_of(series: Mapping[int, Sequence[Any]], keep: int = 200) -> dict[str, list[float]]:
    """``{rank: [values]}`` → ``{label: [y...]}``: what the plot draws, as plain floats."""
    lines: dict[str, list[float]] = {}
    for rank, values in series.items():
        if not values:
            continue
        last = values[-1]
        if isinstance(last, Mapping):
            for key in last:
                ys = [_number(v.get(key)) for v in values[-keep:] if isinstance(v, Mapping)]
                lines[f"{rank}:{key}"] = [y for y in ys if y is not None]
        elif _number(last) is None and hasattr(last, "__len__"):
            ys = [_number(v) for v in list(last)[:keep]]  # an array: its latest contents
            lines[str(rank)] = [y for y in ys if y is not None]
        else:
            ys = [_number(v) for v in values[-keep:]]
            lines[str(rank)] = [y for y in ys if y is not None]
    return {label: ys for label, ys in lines.items() if ys}


def render(lines: Mapping[str, Sequence[float]], title: str) -> str:
    """The SVG of ``lines`` (label → y values, x is the index)."""
    ys = [y for values in lines.values() for y in values]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'font-family="sans-serif" font-size="11"><text x="{PAD}" y="14">'
            f"{html.escape(title)}</text>")
    if not ys:
        return head + f'<text x="{PAD}" y="{HEIGHT // 2}">waiting for values…</text></svg>'
    low, high = min(ys), max(ys)
    span = (high - low) or 1.0
    longest = max(len(v) for v in lines.values())
    plot_w, plot_h = WIDTH - 2 * PAD - 60, HEIGHT - 2 * PAD

    def point(i: int, y: float) -> str:
        x = PAD + plot_w * (i / max(1, longest - 1))
        return f"{x:.1f},{PAD + plot_h * (1 - (y - low) / span):.1f}"

    parts = [head,
             f'<rect x="{PAD}" y="{PAD}" width="{plot_w}" height="{plot_h}" fill="none" '
             'stroke="#ccc"/>',
             f'<text x="2" y="{PAD + 4}">{high:.4g}</text>',
             f'<text x="2" y="{PAD + plot_h}">{low:.4g}</text>']
    for n, (label, values) in enumerate(lines.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = " ".join(point(i, y) for i, y in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{points}"/>')
        parts.append(f'<text x="{PAD + plot_w + 8}" y="{PAD + 12 * n + 8}" fill="{colour}">'
                     f"rank {html.escape(label)}</text>")
    return "".join(parts) + "</svg>"
