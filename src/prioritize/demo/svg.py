"""Latency-over-time charts as inline SVG: no script, no font or stylesheet to fetch.

The y axis is logarithmic because the runs differ by an order of magnitude
or more (a critical request served in 150 ms with priorities, in 1.8 s with
FIFO), and on a linear axis the faster line would lie flat on the floor.
Ticks follow the 1-2-5 ladder. A bucket with nothing served leaves a gap in
its line rather than a misleading zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import final

from .text import format_latency

__all__ = ["Series", "latency_chart", "log_ticks"]

_WIDTH, _HEIGHT = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 30, 34

_Scale = Callable[[float], float]


@final
@dataclass(frozen=True, slots=True)
class Series:
    """One line: its label, colour and points ``(seconds, latency or None)``."""

    label: str
    color: str
    points: Sequence[tuple[float, float | None]]
    #: a constant drawn as a dashed reference line across the chart, instead of points
    is_reference: bool = False


def log_ticks(low: float, high: float) -> list[float]:
    """The 1-2-5 ladder values from the largest ≤ ``low`` to the smallest ≥ ``high``."""
    ladder = [m * 10.0**e for e in range(-6, 4) for m in (1, 2, 5)]
    start = max((v for v in ladder if v <= low * (1 + 1e-9)), default=ladder[0])
    stop = min((v for v in ladder if v >= high * (1 - 1e-9)), default=ladder[-1])
    if stop <= start:
        stop = next(v for v in ladder if v > start)
    return [v for v in ladder if start <= v <= stop]


def latency_chart(title: str, duration: float, series: Sequence[Series]) -> str:
    """An SVG line chart of latencies over ``[0, duration]`` seconds, log scale."""
    values = [y for s in series for _, y in s.points if y is not None and y > 0]
    ticks = log_ticks(min(values), max(values)) if values else [0.1, 1.0]
    low, high = math.log10(ticks[0]), math.log10(ticks[-1])
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(seconds: float) -> float:
        return _LEFT + plot_w * (seconds / duration if duration else 0)

    def y(latency: float) -> float:
        return _TOP + plot_h * (1 - (math.log10(latency) - low) / (high - low))

    parts = [
        f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" role="img" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#ccc"/>',
    ]
    for tick in ticks:
        ty = y(tick)
        parts.append(
            f'<line x1="{_LEFT}" y1="{ty:.1f}" x2="{_LEFT + plot_w}" y2="{ty:.1f}" '
            'stroke="#e4e4e4"/>'
            f'<text x="{_LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#555">'
            f"{escape(format_latency(tick))}</text>"
        )
    for second in _time_ticks(duration):
        tx = x(second)
        parts.append(
            f'<text x="{tx:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" fill="#555">'
            f"{second:g} s</text>"
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_HEIGHT - 2}" text-anchor="middle" fill="#555">'
        "time in the measured window (requests by scheduled send time)</text>"
    )
    for index, line in enumerate(series):
        parts.extend(_line(line, x, y, duration))
        parts.append(_legend(line, index))
    parts.append("</svg>")
    return "\n".join(parts)


def _line(series: Series, x: _Scale, y: _Scale, duration: float) -> list[str]:
    stroke = f'fill="none" stroke="{series.color}" stroke-width="2"'
    if series.is_reference:
        value = next((v for _, v in series.points if v), None)
        if value is None:
            return []
        return [
            f'<line x1="{x(0):.1f}" y1="{y(value):.1f}" x2="{x(duration):.1f}" '
            f'y2="{y(value):.1f}" {stroke} stroke-dasharray="6 4"/>'
        ]
    segments: list[list[str]] = [[]]
    for second, value in series.points:
        if value is None or value <= 0:
            segments.append([])
        else:
            segments[-1].append(f"{x(second):.1f},{y(value):.1f}")
    out = []
    for points in segments:
        if len(points) == 1:
            cx, cy = points[0].split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{series.color}"/>')
        elif points:
            out.append(f'<polyline points="{" ".join(points)}" {stroke}/>')
    return out


def _legend(series: Series, index: int) -> str:
    left = _LEFT + index * 190
    dash = ' stroke-dasharray="6 4"' if series.is_reference else ""
    return (
        f'<line x1="{left}" y1="14" x2="{left + 24}" y2="14" stroke="{series.color}" '
        f'stroke-width="2"{dash}/>'
        f'<text x="{left + 30}" y="18" fill="#333">{escape(series.label)}</text>'
    )


def _time_ticks(duration: float) -> list[float]:
    if duration <= 0:
        return [0.0]
    steps = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
    step = next((s for s in steps if duration / s <= 10), duration)
    count = int(duration / step + 1e-9)
    return [round(i * step, 6) for i in range(count + 1)]
