"""Stacked time-series panels as one standalone SVG, written with the standard library only.

The autoscaling demo records request rate, latency, queue depth and replica counts over a run and
draws them one panel above another on a shared time axis, with dashed markers where the load
changes ("load ×8", "load ×1"), so a report shows the load step, the queue growing and the
replicas following. No matplotlib or numpy: the demo runs wherever the test venv does.

Points are (t seconds, value) in recording order; a NaN, infinite or missing value (or t) is a
gap that splits the series' line.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from os import PathLike
from pathlib import Path

# Okabe–Ito: distinguishable under the common colour-vision deficiencies; yellow last (faint on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 56, 40  # outer margins (px); TOP holds the title and marker labels
PANEL_TITLE, GAP = 20, 10  # a panel's title row above its plot area; space below the plot area

Point = tuple[float, float]


@dataclass
class Series:
    label: str
    points: list[Point]  # (t seconds, value)
    step: bool = False  # a step function (replica counts): horizontal, then vertical
    dashed: bool = False


@dataclass
class Panel:
    title: str
    unit: str  # the y-axis label: "req/s", "ms", "pods"
    series: list[Series]
    y_min: float | None = 0.0  # None: from the data
    integer: bool = False  # integer y ticks (replicas)


def nice_ticks(lo: float, hi: float, max_ticks: int, integer: bool = False) -> tuple[float, float, list[float]]:
    """(lo', hi', ticks): the smallest 1/2/5×10^k step with at most max_ticks ticks on [lo', hi'] ⊇ [lo, hi]."""
    if not hi > lo:
        hi = lo + 1
    k = math.floor(math.log10(hi - lo)) - 2
    while True:
        for m in (1, 2, 5):
            step = m * 10.0**k
            if integer and step < 1:
                continue
            a, b = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            if b - a + 1 <= max_ticks:
                return a * step, b * step, [i * step for i in range(a, b + 1)]
        k += 1


def _fmt(v: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{round(v, digits) + 0.0:.{digits}f}"


def _finite(*xs: object) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _segments(points: Sequence[Point]) -> list[list[Point]]:
    """The runs of finite points; a non-finite one ends a run."""
    runs: list[list[Point]] = [[]]
    for t, v in points:
        if _finite(t, v):
            runs[-1].append((float(t), float(v)))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _steps(run: list[Point]) -> list[Point]:
    out = run[:1]
    for (_, v0), (t1, v1) in itertools.pairwise(run):
        out += [(t1, v0), (t1, v1)]
    return out


def _text(x: float, y: float, s: str, anchor: str = "start", size: int = 11, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>{escape(s)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, extra: str = "") -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{extra}/>'


def svg(
    panels: list[Panel],
    title: str,
    x_label: str = "time (s)",
    markers: Sequence[tuple[float, str]] = (),
    width: int = 900,
    panel_height: int = 170,
) -> str:
    """The panels stacked top to bottom on one time axis, as an SVG document."""
    segs = [[_segments(s.points) for s in p.series] for p in panels]
    ts = [t for ps in segs for ss in ps for run in ss for t, _ in run] + [t for t, _ in markers if _finite(t)]
    x0, x1, xticks = nice_ticks(min(ts, default=0.0), max(ts, default=1.0), 10)
    pw, ph = width - LEFT - RIGHT, panel_height - PANEL_TITLE - GAP
    height = TOP + len(panels) * panel_height + BOTTOM

    def x_at(t: float) -> float:
        return LEFT + (t - x0) / (x1 - x0) * pw

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 22, title, "middle", 15, ' font-weight="bold"'),
    ]
    shown = [(t, label) for t, label in markers if _finite(t) and x0 <= t <= x1]
    out += [_text(x_at(t), TOP - 8, label, "middle", 10, ' class="marker-label" fill="#555"') for t, label in shown]
    for i, (panel, panel_segs) in enumerate(zip(panels, segs, strict=True)):
        top = TOP + i * panel_height + PANEL_TITLE
        bottom = top + ph
        values = [v for ss in panel_segs for run in ss for _, v in run]
        lo = min(values, default=0.0) if panel.y_min is None else min([panel.y_min, *values])
        hi = max(values, default=lo)
        y0, y1, yticks = nice_ticks(lo, hi + 0.05 * (hi - lo), 6, panel.integer)

        def y_at(v: float, y0: float = y0, y1: float = y1, bottom: float = bottom) -> float:
            return bottom - (v - y0) / (y1 - y0) * ph

        out.append(f'<g class="panel" data-title="{escape(panel.title)}">')
        out.append(f'<rect x="{LEFT}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        out.append(_text(LEFT, top - 6, panel.title, size=12, extra=' font-weight="bold"'))
        mid = (top + bottom) / 2
        out.append(_text(16, mid, panel.unit, "middle", extra=f' transform="rotate(-90 16 {mid:.1f})"'))
        ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
        for v in yticks:
            out.append(_line(LEFT, y_at(v), LEFT + pw, y_at(v), "#e5e5e5"))
            out.append(_text(LEFT - 6, y_at(v) + 4, _fmt(v, ystep), "end", 10))
        for t in xticks:
            out.append(_line(x_at(t), top, x_at(t), bottom, "#e5e5e5"))
        for t, _ in shown:
            out.append(_line(x_at(t), top, x_at(t), bottom, "#555", ' class="marker" stroke-dasharray="4 3"'))
        for j, (series, runs) in enumerate(zip(panel.series, panel_segs, strict=True)):
            colour, dash = PALETTE[j % len(PALETTE)], ' stroke-dasharray="6 4"' if series.dashed else ""
            out.append(f'<g class="series" data-label="{escape(series.label)}">')
            for run in runs:
                pts = " ".join(f"{x_at(t):.2f},{y_at(v):.2f}" for t, v in (_steps(run) if series.step else run))
                out.append(
                    f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.8" '
                    f'stroke-linejoin="round"{dash}/>'
                )
            out.append("</g>")
        if panel.series:  # legend: right-aligned labels, each with its colour's swatch to the right
            right = LEFT + pw - 8
            box_w = 40 + 6.5 * max(len(s.label) for s in panel.series)
            out.append(
                f'<rect x="{right - box_w:.1f}" y="{top + 4}" width="{box_w + 4:.1f}" '
                f'height="{14 * len(panel.series) + 6}" fill="white" fill-opacity="0.85" stroke="#ddd"/>'
            )
            for j, series in enumerate(panel.series):
                y = top + 16 + 14 * j
                dash = ' stroke-dasharray="6 4"' if series.dashed else ""
                swatch = PALETTE[j % len(PALETTE)]
                out.append(_line(right - 22, y - 4, right - 2, y - 4, swatch, f' stroke-width="2"{dash}'))
                out.append(_text(right - 26, y, series.label, "end", 10, ' class="legend"'))
        if i == len(panels) - 1:
            xstep = xticks[1] - xticks[0]
            out += [_text(x_at(t), bottom + 16, _fmt(t, xstep), "middle", 10, ' class="x-tick"') for t in xticks]
            out.append(_text(LEFT + pw / 2, bottom + 36, x_label, "middle"))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(path: str | PathLike[str], panels: list[Panel], title: str, **kw: object) -> None:
    """svg(panels, title, **kw) into path, as UTF-8."""
    Path(path).write_text(svg(panels, title, **kw), encoding="utf-8")  # type: ignore[arg-type]  # keyword arguments pass through to svg(), whose types it checks
