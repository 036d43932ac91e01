"""A column's two distributions as bars: the reference's and a window's, from the bins the monitor
keeps, merged for display so that every bar is an exact sum of them.

Display bins. A numeric column keeps up to 2K+1 fine bins (carat: 231 distinct values, so 463
bins; predictions: 500 quantile bins), too many bars to read. A column with at most
`DISCRETE_MAX` distinct reference values gets a bar per value (affairs' age, children) and one
for window values between them. Others get a histogram: the reference's middle 99% (`TAIL` each
side) cut into about `DISPLAY_BINS` equal-width bars whose edges are snapped to the column's own
edges (so every bar is an exact sum of fine bins), and a tail bar each side for the rest, however
far the window moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.reference import CategoricalProfile, NumericBins
from monitor.windows import UNSEEN_OVERFLOW, Pane

DISPLAY_BINS = 30  # bars of a histogram between its tails
DISCRETE_MAX = 30  # at most this many distinct reference values: a bar per value
TAIL = 0.005  # reference share in each tail bar of a histogram
UNSEEN_BARS = 8  # unseen categories drawn a bar each (the largest); the rest share one


@dataclass(frozen=True)
class Bar:
    """One bar: runs [start, stop) of the column's bins, or unseen category names, and their counts.

    kind: "bin" (a value, category or range), "tail" (a histogram's rest below or above its range),
    "other" (window values between the reference's distinct values), "unseen" (categories the
    reference never saw); lo, hi: a histogram bar's value range (lo, hi], None for the others."""

    label: str
    bins: tuple[tuple[int, int], ...]
    reference: int  # reference rows in it
    window: int  # window records in it
    kind: str = "bin"
    names: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class Chart:
    """A column's two distributions. kind "histogram": bars on a value axis, heights per `unit` of
    value; "bars": a slot per value or category. gap (KS columns): the largest difference between
    the two CDFs over the fine bins (the binned KS statistic of these counts) and where it is."""

    kind: str
    bars: tuple[Bar, ...]
    records: int  # window records behind the counts (the reported scale's)
    reference_rows: int
    unit: float | None = None
    gap: tuple[float, float] | None = None  # (largest |F_window - F_reference|, at value)
    gap_bar: int | None = None  # the bar holding the fine bin where the gap is


# -- helpers -------------------------------------------------------------------------------------
def numeric_chart(bins: NumericBins, counts: np.ndarray, n: int, m: int) -> Chart:
    """A numeric column: bars per value or a histogram. counts: (2K+1,) the window pane's slice
    for this column, n its records; m: the reference's rows (its counts come from its CDF)."""
    edges = bins.edges.tolist()
    k = len(edges)
    ref = np.rint(np.diff(bins.reference_cdf, prepend=0.0) * m).astype(np.int64)
    # cumulative counts from 0: a run [a, b) holds cum[b] - cum[a] (plain ints: cheap per bar)
    ref_cum, win_cum = [0, *np.cumsum(ref).tolist()], [0, *np.cumsum(counts).tolist()]

    def bar(
        runs: tuple[tuple[int, int], ...],
        label: str,
        kind: str = "bin",
        lo: float | None = None,
        hi: float | None = None,
    ) -> Bar:
        return Bar(
            label=label,
            bins=runs,
            reference=sum(ref_cum[b] - ref_cum[a] for a, b in runs),
            window=sum(win_cum[b] - win_cum[a] for a, b in runs),
            kind=kind,
            lo=lo,
            hi=hi,
        )

    gap, at = None, -1
    if n:
        cdf_gap = np.abs(np.cumsum(counts) / n - bins.reference_cdf)
        at = int(np.argmax(cdf_gap))
        gap = (float(cdf_gap[at]), edges[min(at // 2, k - 1)])

    def chart(kind: str, bars: list[Bar], unit: float | None = None) -> Chart:
        holding = next((i for i, b in enumerate(bars) if any(a <= at < z for a, z in b.bins)), None)
        return Chart(
            kind=kind,
            bars=tuple(bars),
            records=n,
            reference_rows=m,
            unit=unit,
            gap=gap,
            gap_bar=holding,
        )

    if bins.exact and k <= DISCRETE_MAX:
        bars = [bar(((2 * j + 1, 2 * j + 2),), _value(e)) for j, e in enumerate(edges)]
        between = tuple((2 * j, 2 * j + 1) for j in range(k + 1))  # the open intervals
        return chart("bars", [*bars, bar(between, "other values", "other")])
    # F(e_j), the reference's share at or below each edge, puts TAIL of it in each tail
    lo, hi = (int(i) for i in np.searchsorted(bins.reference_cdf[1::2], [TAIL, 1 - TAIL]))
    hi = min(hi, k - 1)
    if hi <= lo:
        lo, hi = 0, k - 1
    span = edges[hi] - edges[lo]
    width = span / DISPLAY_BINS
    if bins.exact:
        # Values on a lattice (table: whole numbers, a few halves): a bar narrower than the step
        # between the values that carry the mass would alternate full and empty.
        heavy = bins.edges[ref[1::2] >= m / (2 * DISPLAY_BINS)]
        if len(heavy) > 1:
            width = max(width, float(np.median(np.diff(heavy))))
    count = max(1, min(DISPLAY_BINS, round(span / width)))
    grid = np.linspace(edges[lo], edges[hi], count + 1)[1:-1]
    right = np.clip(np.searchsorted(bins.edges, grid), 1, k - 1)
    nearest = np.where(bins.edges[right] - grid < grid - bins.edges[right - 1], right, right - 1)
    cuts = sorted({lo, hi, *(int(c) for c in nearest if lo < c < hi)})
    bars = [bar(((0, 2 * lo + 2),), f"≤ {_value(edges[lo])}", "tail")]
    bars += [
        bar(
            ((2 * a + 2, 2 * b + 2),),
            f"({_value(edges[a])}, {_value(edges[b])}]",
            lo=edges[a],
            hi=edges[b],
        )
        for a, b in zip(cuts, cuts[1:])
    ]
    bars.append(bar(((2 * hi + 2, 2 * k + 1),), f"> {_value(edges[hi])}", "tail"))
    return chart("histogram", bars, unit=span / count)


def category_chart(
    profile: CategoricalProfile, pane: Pane, part: slice, order: Sequence[str] | None
) -> Chart:
    """A categorical column: a bar per known category (in `order`, then the rest), then the
    unseen ones by name, most frequent first. part: the column's slice of the pane's counts."""
    counts = pane.counts[part].tolist()
    listed = [c for c in (order or ()) if c in profile.index]
    ranked = listed + [c for c in profile.categories.tolist() if c not in set(listed)]
    bars = [
        Bar(
            label=str(c),
            bins=((profile.index[c], profile.index[c] + 1),),
            reference=int(profile.counts[profile.index[c]]),
            window=counts[profile.index[c]],
        )
        for c in ranked
    ]
    unseen = sorted(pane.unseen.get(profile.name, {}).items(), key=most_first)
    shown, rest = unseen[:UNSEEN_BARS], unseen[UNSEEN_BARS:]
    bars += [
        Bar(
            label=_unseen_name(name),
            bins=(),
            reference=0,
            window=count,
            kind="unseen",
            names=(name,),
        )
        for name, count in shown
    ]
    if rest:
        bars.append(
            Bar(
                label=f"{len(rest)} more new",
                bins=(),
                reference=0,
                window=sum(c for _, c in rest),
                kind="unseen",
                names=tuple(name for name, _ in rest),
            )
        )
    return Chart(
        kind="bars",
        bars=tuple(bars),
        records=pane.records,
        reference_rows=int(profile.counts.sum()),
    )


def most_first(item: tuple[str, int]) -> tuple[int, str]:
    """Sort key of (name, count): the most frequent first, then by name."""
    return -item[1], item[0]


def _unseen_name(name: str) -> str:
    return "(other new names)" if name == UNSEEN_OVERFLOW else name


def _value(x: float) -> str:
    """An edge as text: from 1,000 with separators and no decimals, else 4 significant digits."""
    return f"{x:,.0f}" if abs(x) >= 1000 or x == int(x) else f"{x:.4g}"
