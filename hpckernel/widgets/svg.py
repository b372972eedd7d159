"""The live plot as a self-contained SVG: the static picture for front ends without widgets
(an HTML export, nbclient, JupyterLab without the widget manager). Axes with values, one
coloured line per label, a legend; no plotting library.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 110, 24, 34
LEGEND_ROWS = 14


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning [low, high] (1, 2 or 5 times a power of ten)."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def render(lines: Mapping[str, Mapping[str, list[float]]], title: str) -> str:
    """The SVG of ``lines`` ({label: {"x": [...], "y": [...]}})."""
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'font-family="sans-serif" font-size="11"><text x="{LEFT}" y="14" '
            f'font-weight="bold">{html.escape(title)}</text>')
    xs = [x for points in lines.values() for x in points["x"]]
    ys = [y for points in lines.values() for y in points["y"]]
    if not ys:
        return head + f'<text x="{LEFT}" y="{HEIGHT // 2}">waiting for values…</text></svg>'
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    x1 = x1 if x1 > x0 else x0 + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - (y - y0) / (y1 - y0))

    parts = [head, f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
                   'fill="none" stroke="#999"/>']
    for y in ticks(y0, y1):
        parts.append(f'<line x1="{LEFT - 4}" x2="{LEFT + plot_w}" y1="{py(y):.1f}" '
                     f'y2="{py(y):.1f}" stroke="#eee"/><text x="{LEFT - 6}" '
                     f'y="{py(y) + 4:.1f}" text-anchor="end">{y:.4g}</text>')
    for x in ticks(x0, x1):
        parts.append(f'<text x="{px(x):.1f}" y="{TOP + plot_h + 14}" '
                     f'text-anchor="middle">{x:.4g}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" '
                 'text-anchor="middle" fill="#555">published value number</text>')
    for n, (label, points) in enumerate(lines.items()):
        colour = COLOURS[n % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}"
                        for x, y in zip(points["x"], points["y"], strict=True))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{path}"/>')
        if n < LEGEND_ROWS:
            parts.append(f'<text x="{LEFT + plot_w + 10}" y="{TOP + 12 * n + 8}" '
                         f'fill="{colour}">— rank {html.escape(label)}</text>')
    if len(lines) > LEGEND_ROWS:
        parts.append(f'<text x="{LEFT + plot_w + 10}" y="{TOP + 12 * LEGEND_ROWS + 8}">'
                     f"… {len(lines) - LEGEND_ROWS} more</text>")
    return "".join(parts) + "</svg>"
