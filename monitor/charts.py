"""Inline SVG for the page, written out directly: overlaid distributions, sparklines, a timeline.

Why not matplotlib: its SVG backend took about 150 times as long for the diamonds charts alone
as the whole page takes here from result to HTML (819 ms against 5.5 ms), in more bytes, after a
0.4 s import (bench/page_bench.py, bench/PAGE_RESULTS.md), and the monitor renders on an HTTP
thread that shares the GIL with its loop.
Written out here, every bar is a `<g>` carrying the bins it sums and its counts (`data-bins`,
`data-names`, `data-window`, `data-reference`) and a `<title>` tooltip, which tests read back;
colours come from the page's CSS classes.

Every text that comes from a schema or a message (names, categories, labels) goes through `text`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from html import escape

from monitor.histograms import Bar, Chart

WIDTH = 520


def text(value: object) -> str:
    """Escaped for HTML and SVG text and attribute values (quotes included)."""
    return escape(str(value), quote=True)


def distribution(chart: Chart) -> str:
    """The window's distribution over the reference's: a histogram, or a bar per value."""
    return _histogram(chart) if chart.kind == "histogram" else _bars(chart)


def sparkline(values: Sequence[float | None], width: int = 150, height: int = 30) -> str:
    """statistic / threshold over past evaluations; the dashed line is the threshold (1)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    top = max(1.25, max(known) * 1.1)
    step = (width - 6) / max(len(values) - 1, 1)

    def at(i: int, v: float) -> tuple[float, float]:
        return 3 + i * step, height - 3 - (height - 6) * min(v, top) / top

    limit = _n(at(0, 1)[1])
    parts = [
        f'<svg class="spark" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
        f'<line class="limit" x1="0" x2="{width}" y1="{limit}" y2="{limit}"/>'
    ]
    for run in _runs(values):
        points = " ".join(f"{_n(x)},{_n(y)}" for x, y in (at(i, v) for i, v in run))
        parts.append(f'<polyline class="trend" points="{points}"/>')
    for i, v in enumerate(values):
        if v is not None and (v > 1 or i == len(values) - 1):
            x, y = at(i, v)
            css = "over" if v > 1 else "last"
            parts.append(f'<circle class="{css}" cx="{_n(x)}" cy="{_n(y)}" r="2.2"/>')
    return "".join(parts) + "</svg>"


def timeline(
    series: Sequence[tuple[str, Sequence[float | None]]],
    level: float | None,
    label: Callable[[float], str],
    first: int,
    last: int,
) -> str:
    """Lines over past evaluations (series: (css class, values)), the reference `level` dashed."""
    known = [v for _, values in series for v in values if v is not None]
    known += [level] if level is not None else []
    if not known:
        return ""
    width, height, left, top, bottom = WIDTH, 150, 56, 10, 24
    ticks = _ticks(0.0, max(known) * 1.08)
    count = max(len(values) for _, values in series)
    step = (width - left - 8) / max(count - 1, 1)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - v / ticks[-1])

    parts = [_svg_open(width, height, "timeline"), *_y_axis(ticks, y, left, width, label)]
    if level is not None:
        parts.append(
            f'<line class="level" x1="{left}" x2="{width - 4}" y1="{_n(y(level))}" '
            f'y2="{_n(y(level))}"/>'
        )
    for css, values in series:
        for run in _runs(values):
            points = " ".join(f"{_n(left + i * step)},{_n(y(v))}" for i, v in run)
            parts.append(f'<polyline class="{css}" points="{points}"/>')
            if len(run) == 1:  # a point alone draws no line
                i, v = run[0]
                parts.append(
                    f'<circle class="{css}" cx="{_n(left + i * step)}" cy="{_n(y(v))}" r="2.5"/>'
                )
    parts.append(
        f'<text class="tick" x="{left}" y="{height - 6}">pane {first}</text>'
        f'<text class="tick" x="{width - 4}" y="{height - 6}" text-anchor="end">'
        f"pane {last}</text>"
    )
    return "".join(parts) + "</svg>"


# -- distributions -------------------------------------------------------------------------------
def _histogram(chart: Chart) -> str:
    bars, m, n, unit = chart.bars, chart.reference_rows, chart.records, chart.unit or 1.0
    low, inner, high = bars[0], bars[1:-1], bars[-1]
    x0, x1 = inner[0].lo, inner[-1].hi
    height, left, right, top, bottom, gap = 200, 48, 8, 20, 40, 6
    base = height - bottom
    # the tails are drawn one `unit` wide, `gap` pixels off the value axis
    scale = (WIDTH - left - right - 2 * gap) / ((x1 - x0) + 2 * unit)
    tail = unit * scale

    def px(v: float) -> float:
        return left + tail + gap + (v - x0) * scale

    spans = [
        (left, left + tail, unit),
        *((px(b.lo), px(b.hi), b.hi - b.lo) for b in inner),
        (px(x1) + gap, px(x1) + gap + tail, unit),
    ]
    # heights are shares per `unit` of value, so bars of unequal widths compare as densities
    shares = [
        (b.reference / m * unit / w, b.window / n * unit / w if n else 0.0)
        for b, (_, _, w) in zip(bars, spans)
    ]
    ticks = _ticks(0.0, max(max(s) for s in shares) or 1.0)

    def y(v: float) -> float:
        return top + (base - top) * (1 - v / ticks[-1])

    parts = [
        _svg_open(WIDTH, height, "histogram"),
        *_y_axis(ticks, y, left, WIDTH - right, _percent(ticks)),
    ]
    for bar, (a, b, _), (ref, win) in zip(bars, spans, shares):
        parts.append(_bar(bar, chart, (a, b - a, y(ref)), (a, b - a, y(win)), base))
    for v in _ticks(x0, x1, 6, inside=True):
        x = _n(px(v))
        parts.append(
            f'<line class="tickmark" x1="{x}" x2="{x}" y1="{base}" y2="{base + 4}"/>'
            f'<text class="tick" x="{x}" y="{base + 15}" text-anchor="middle">'
            f"{text(short_number(v))}</text>"
        )
    parts.append(
        f'<text class="tick tail" x="{left}" y="{height - 6}">◂ {text(low.label)}</text>'
        f'<text class="tick tail" x="{WIDTH - right}" y="{height - 6}" '
        f'text-anchor="end">{text(high.label)} ▸</text>'
    )
    if chart.gap is not None and chart.gap_bar is not None:
        a, b, _ = spans[chart.gap_bar]
        bar = bars[chart.gap_bar]
        x = (a + b) / 2 if bar.lo is None else px(min(max(chart.gap[1], bar.lo), bar.hi))
        parts.append(_gap_marker(x, top, base))
    return "".join(parts) + "</svg>"


def _bars(chart: Chart) -> str:
    m, n = chart.reference_rows, chart.records
    # "other values" (between a numeric column's reference values) only when the window has some
    shown = [b for b in chart.bars if b.kind != "other" or b.window]
    labels = [_short(b.label) for b in shown]
    left, right, top = 48, 8, 20
    slot = (WIDTH - left - right) / max(len(shown), 1)
    tilted = max((len(t) for t in labels), default=0) * 6.6 > slot - 4
    height = 234 if tilted else 190
    base = height - (74 if tilted else 30)
    shares = [(b.reference / m if m else 0.0, b.window / n if n else 0.0) for b in shown]
    ticks = _ticks(0.0, max((max(s) for s in shares), default=0.0) or 1.0)

    def y(v: float) -> float:
        return top + (base - top) * (1 - v / ticks[-1])

    parts = [
        _svg_open(WIDTH, height, "bars"),
        *_y_axis(ticks, y, left, WIDTH - right, _percent(ticks)),
    ]
    for i, (bar, label, (ref, win)) in enumerate(zip(shown, labels, shares)):
        x = left + i * slot
        parts.append(
            _bar(
                bar,
                chart,
                (x + slot * 0.1, slot * 0.8, y(ref)),
                (x + slot * 0.28, slot * 0.44, y(win)),
                base,
            )
        )
        cx, css = x + slot / 2, "tick" + (" unseen" if bar.kind == "unseen" else "")
        where = (
            f'transform="translate({_n(cx + 3)},{base + 10}) rotate(-40)" text-anchor="end"'
            if tilted
            else f'x="{_n(cx)}" y="{base + 15}" text-anchor="middle"'
        )
        parts.append(f'<text class="{css}" {where}>{text(label)}</text>')
    if chart.gap is not None and chart.gap_bar is not None and chart.bars[chart.gap_bar] in shown:
        parts.append(
            _gap_marker(left + (shown.index(chart.bars[chart.gap_bar]) + 0.5) * slot, top, base)
        )
    return "".join(parts) + "</svg>"


def _bar(
    bar: Bar,
    chart: Chart,
    ref: tuple[float, float, float],
    win: tuple[float, float, float],
    base: float,
) -> str:
    # One bar: the reference's share behind, the window's in front, each (x, width, top y);
    # data-* say what it sums, the title says it in words.
    n, m = chart.records, chart.reference_rows
    window = f"{bar.window:,} of {n:,} records ({bar.window / n:.1%})" if n else "no records"
    tip = (
        f"{bar.label}: window {window} · reference {bar.reference:,} of {m:,} rows "
        f"({bar.reference / m:.1%})"
    )
    runs = ",".join(f"{a}:{b}" for a, b in bar.bins)
    names = f' data-names="{text(json.dumps(bar.names))}"' if bar.names else ""
    rects = "".join(
        f'<rect class="{css}" x="{_n(x)}" y="{_n(y)}" width="{_n(max(w - 0.6, 0.6))}" '
        f'height="{_n(base - y)}"/>'
        for css, (x, w, y) in (("ref", ref), ("win", win))
    )
    return (
        f'<g class="bar {bar.kind}" data-bins="{runs}"{names} data-window="{bar.window}" '
        f'data-reference="{bar.reference}"><title>{text(tip)}</title>{rects}</g>'
    )


def _gap_marker(x: float, top: float, base: float) -> str:
    # the label above the plot, on the side of the line with more room
    side = f'x="{_n(x - 3)}" text-anchor="end"' if x > WIDTH / 2 else f'x="{_n(x + 3)}"'
    return (
        f'<line class="gap" x1="{_n(x)}" x2="{_n(x)}" y1="{top - 12}" y2="{base}"/>'
        f'<text class="gaplabel" {side} y="{top - 5}">largest CDF gap</text>'
    )


# -- helpers -------------------------------------------------------------------------------------
def _svg_open(width: int, height: int, css: str) -> str:
    return (
        f'<svg class="chart {css}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">'
    )


def _y_axis(
    ticks: list[float],
    y: Callable[[float], float],
    left: float,
    right: float,
    label: Callable[[float], str],
) -> list[str]:
    return [
        f'<line class="grid" x1="{left}" x2="{_n(right)}" y1="{_n(y(v))}" y2="{_n(y(v))}"/>'
        f'<text class="tick" x="{left - 4}" y="{_n(y(v) + 3.5)}" text-anchor="end">'
        f"{text(label(v))}</text>"
        for v in ticks
    ]


def _percent(ticks: list[float]) -> Callable[[float], str]:
    return (lambda v: f"{v:.0%}") if ticks[-1] >= 0.05 else (lambda v: f"{v:.1%}")


def _ticks(lo: float, hi: float, count: int = 4, inside: bool = False) -> list[float]:
    """Round numbers from lo up to the first at or above hi (inside: those within [lo, hi])."""
    if not hi > lo:
        return [lo, lo + 1.0]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 2.5, 5, 10) if s * power >= raw)
    start = math.ceil(lo / step - 1e-9) * step if inside else math.floor(lo / step + 1e-9) * step
    ticks = [start]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(ticks[-1] + step)
    if inside and ticks[-1] > hi + 1e-9 * step:
        ticks.pop()
    return [round(t, 12) for t in ticks]


def short_number(v: float) -> str:
    """An axis number: 3 significant digits, k and M for thousands and millions."""
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:,.0f}" if v == int(v) else f"{v:.3g}"


def _short(label: str, size: int = 16) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive known values as (index, value) runs; None or NaN breaks a line."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None or v != v:
            runs.append([])
        else:
            runs[-1].append((i, v))
    return [r for r in runs if r]


def _n(x: float) -> str:
    """A coordinate with one decimal, no trailing zeros: small SVG."""
    return f"{x:.1f}".rstrip("0").rstrip(".")
