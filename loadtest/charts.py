"""Small self-contained SVG charts (lines, bars, reference rules) for the HTML report."""

from __future__ import annotations

import math
from html import escape
from typing import Literal, NamedTuple

WIDTH, HEIGHT = 920, 290
LEFT, RIGHT, BOTTOM = 60, 16, 40
LEGEND_ROW = 16


class Series(NamedTuple):
    """One data series: ``(x, y)`` points drawn as a line, or as one bar per point."""

    label: str
    points: list[tuple[float, float]]
    color: str
    kind: Literal["line", "bar"] = "line"


class Rule(NamedTuple):
    """A horizontal reference line, e.g. a target or a limit."""

    label: str
    y: float
    color: str


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten): ``span`` in about ``ticks`` parts."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


class _Frame(NamedTuple):
    x_max: float
    y_max: float
    top: float
    """Where the plot starts, below the legend's rows."""

    def x(self, value: float) -> float:
        return LEFT + value / self.x_max * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - value / self.y_max * (HEIGHT - self.top - BOTTOM)


def _frame(series: list[Series], rules: list[Rule], top: float) -> _Frame:
    xs = [x for s in series for x, _ in s.points] or [1.0]
    ys = [y for s in series for _, y in s.points] + [r.y for r in rules]
    x_max = max(max(xs) + (1 if any(s.kind == "bar" for s in series) else 0), 1.0)
    y_top = max([*ys, 1.0]) * 1.08
    step = nice_step(y_top)
    return _Frame(x_max, math.ceil(y_top / step) * step, top)


def _axes(frame: _Frame, x_label: str, y_label: str) -> list[str]:
    parts = []
    y_step = nice_step(frame.y_max)
    for i in range(round(frame.y_max / y_step) + 1):
        y = frame.y(i * y_step)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                     f'stroke="#e5e5e5"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{i * y_step:g}</text>')  # fmt: skip
    x_step = nice_step(frame.x_max, 8)
    for i in range(math.floor(frame.x_max / x_step) + 1):
        x = frame.x(i * x_step)
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                     f'text-anchor="middle">{i * x_step:g}</text>')  # fmt: skip
    base = HEIGHT - BOTTOM
    middle = (frame.top + base) / 2
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#555"/>'
                 f'<line x1="{LEFT}" y1="{frame.top}" x2="{LEFT}" y2="{base}" stroke="#555"/>'
                 f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" '
                 f'text-anchor="middle">{escape(x_label)}</text>'
                 f'<text x="14" y="{middle}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {middle})">{escape(y_label)}</text>')  # fmt: skip
    return parts


def _draw(frame: _Frame, series: Series) -> str:
    if series.kind == "bar":
        width = max(frame.x(1) - frame.x(0) - 1, 1)
        return "".join(
            f'<rect x="{frame.x(x):.1f}" y="{frame.y(y):.1f}" width="{width:.1f}" '
            f'height="{frame.y(0) - frame.y(y):.1f}" fill="{series.color}"/>'
            for x, y in series.points
        )
    points = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in series.points)
    return (f'<polyline points="{points}" fill="none" stroke="{series.color}" '
            f'stroke-width="1.6"/>')  # fmt: skip


def _legend(items: list[tuple[str, str]]) -> tuple[str, int]:
    """The legend's SVG, wrapped to the chart's width, and how many rows it took."""
    parts, x, row = [], LEFT, 0
    for label, color in items:
        width = 28 + 6 * len(label)  # about 6 px per character at font-size 11
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, row = LEFT, row + 1
        y = 10 + row * LEGEND_ROW
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16}" y="{y + 10}">{escape(label)}</text>')  # fmt: skip
        x += width
    return "".join(parts), row + 1


def chart(
    series: list[Series], *, x_label: str, y_label: str, rules: list[Rule] | None = None
) -> str:
    """An inline ``<svg>`` with axes, ticks, a legend, the series and the rules."""
    rules = rules or []
    legend, rows = _legend(
        [(s.label, s.color) for s in series] + [(r.label, r.color) for r in rules]
    )
    frame = _frame(series, rules, top=18 + rows * LEGEND_ROW)
    parts = [legend, *_axes(frame, x_label, y_label)]
    parts.extend(_draw(frame, s) for s in series if s.points)
    for rule in rules:
        y = frame.y(rule.y)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                     f'stroke="{rule.color}" stroke-dasharray="6 4"/>')  # fmt: skip
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">'
            f'{"".join(parts)}</svg>')  # fmt: skip
