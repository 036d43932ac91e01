"""Every column's test on aggregated panes, vectorised: KS for numeric columns, chi-square for categorical.

One evaluation tests every feature and model output at one or two scales; `column_tests` does it
in a few numpy calls whatever the number of columns (each numpy call costs microseconds, whatever
its size), with thresholds from `calibration`. The results equal `stats`' per-column functions
(tested in tests/unit/test_monitor_drift.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

from monitor import stats
from monitor.calibration import Calibration
from monitor.windows import Pane, PaneLayout


@dataclass(frozen=True)
class ColumnTests:
    """Every column's test at every scale: (scales, columns) arrays, columns = features..., outputs...
    (the prediction, then p(<class>) columns)."""

    names: tuple[str, ...]
    tests: tuple[str, ...]  # "ks" or "chi2" per column
    statistic: np.ndarray
    distance: np.ndarray
    p_value: np.ndarray
    threshold: np.ndarray


class ColumnLayout:
    """Where each test's bins sit in a pane's flat counts, so all scales are tested in a few numpy calls.

    The flat layout is the KS columns (numeric features, then the regression prediction or the
    class probabilities), then the chi-square columns (categorical features, then a classifier's
    predicted class); see `PaneLayout`. The KS columns are one contiguous run of bins and the
    chi-square columns the next. Every record has one bin in each KS column, so one cumulative sum
    over the run, divided by n, minus j is column j's own CDF (`ks_shifted` holds reference CDF + j);
    `maximum.reduceat` / `add.reduceat` take each column's maximum or sum, and one index (`order`)
    puts the KS then chi-square columns in result order. The results equal `stats`' per-column
    functions (tested)."""

    def __init__(self, layout: PaneLayout) -> None:
        reference = layout.reference
        ks_columns, chi2_columns = layout.ks_columns, layout.chi2_columns
        bins = list(ks_columns.values())
        self.ks_end = sum(b.size for b in bins)
        self.ks_starts = np.array(
            [layout.slices[name].start for name in ks_columns], dtype=np.int64
        )
        if (
            self.ks_starts.tolist()
            != np.cumsum([0] + [b.size for b in bins[:-1]]).tolist()[: len(bins)]
        ):
            raise ValueError("pane layout is not KS columns..., chi-square columns...")
        self.ks_shifted = (
            np.concatenate([b.reference_cdf + j for j, b in enumerate(bins)])
            if bins
            else np.empty(0)
        )
        self.reference_size = reference.size
        self.chi2_names = tuple(chi2_columns)
        profiles = list(chi2_columns.values())
        self.chi2_starts = np.array(
            [layout.slices[name].start - self.ks_end for name in self.chi2_names], dtype=np.int64
        )
        self.chi2_column = np.repeat(np.arange(len(profiles)), [p.size for p in profiles])
        self.chi2_reference = _concat([p.counts for p in profiles]).astype(np.float64)
        self.chi2_fraction = _concat([p.counts / p.counts.sum() for p in profiles])
        self.chi2_known = np.array([p.size for p in profiles], dtype=np.int64)
        self.chi2_m = np.array([p.counts.sum() for p in profiles], dtype=np.float64)
        # result order: the features as the reference lists them (numeric, then categorical), then the outputs
        self.names = (*reference.features, *reference.outputs)
        self.tests = tuple("chi2" if name in chi2_columns else "ks" for name in self.names)
        position = {name: i for i, name in enumerate((*ks_columns, *chi2_columns))}
        self.order = np.array([position[name] for name in self.names], dtype=np.intp)

    def ordered(self, ks_part: np.ndarray, chi2_part: np.ndarray) -> np.ndarray:
        """(scales, KS columns) and (scales, chi-square columns) as (scales, columns) in result order."""
        return np.concatenate((ks_part, chi2_part), axis=1)[:, self.order]


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0)


_column_layout = lru_cache(maxsize=16)(ColumnLayout)  # one per PaneLayout (hashed by identity)


def column_tests(
    layout: PaneLayout,
    calibration: Calibration,
    panes: Sequence[Pane],
    alpha: float | Sequence[float],
) -> ColumnTests:
    """Every column's test on each aggregated pane (a scale): KS for numeric columns (features, a
    regression prediction, class probabilities), smoothed chi-square (+ total variation) for
    categorical ones (features, a predicted class), with unseen categories as extra categories of
    reference count 0; thresholds (and the categorical p-values) from `calibration` at `alpha` (one
    for all panes, or one per pane). Every evaluation runs this, so it keeps to few numpy calls
    (each costs microseconds, whatever its size)."""
    tl = _column_layout(layout)
    alphas = [alpha] * len(panes) if isinstance(alpha, (int, float)) else list(alpha)
    counts = np.stack([pane.counts for pane in panes])
    sizes = [pane.records for pane in panes]
    n = np.array(sizes, dtype=np.float64)[:, None]
    empty = n[:, 0] == 0
    with np.errstate(
        invalid="ignore", divide="ignore"
    ):  # an empty pane gives NaN, as stats' functions
        # Every record has one bin in each KS column, so column j's run starts at j * n records:
        # the cumulative fraction minus j is the column's own CDF (`ks_shifted` = reference CDF + j).
        ks = np.maximum.reduceat(
            np.abs(np.cumsum(counts[:, : tl.ks_end], axis=1) / n - tl.ks_shifted),
            tl.ks_starts,
            axis=1,
        )
        ks_scale = np.array([stats.ks_scale(k, tl.reference_size) if k else np.nan for k in sizes])[
            :, None
        ]
        ks_p = special.kolmogorov(ks_scale * ks)
        ks_threshold = np.array(
            [[calibration.ks(k, a) if k else np.nan] for k, a in zip(sizes, alphas)]
        )

        known = counts[:, tl.ks_end :]
        unseen = [
            [
                np.fromiter(pane.unseen[name].values(), dtype=np.float64)
                if name in pane.unseen
                else _NONE
                for name in tl.chi2_names
            ]
            for pane in panes
        ]
        extra = np.array([[len(u) for u in row] for row in unseen], dtype=np.int64).reshape(
            len(panes), -1
        )
        total = tl.chi2_m + calibration.pseudo_count * (tl.chi2_known + extra)  # (scales, columns)
        expected = n * (tl.chi2_reference + calibration.pseudo_count) / total[:, tl.chi2_column]
        x2 = np.add.reduceat((known - expected) ** 2 / expected, tl.chi2_starts, axis=1)
        tv = np.add.reduceat(np.abs(known / n - tl.chi2_fraction), tl.chi2_starts, axis=1)
        for s, c in zip(*np.nonzero(extra)):  # categories the reference never saw
            expected_unseen = n[s, 0] * calibration.pseudo_count / total[s, c]
            x2[s, c] += ((unseen[s][c] - expected_unseen) ** 2).sum() / expected_unseen
            tv[s, c] += unseen[s][c].sum() / n[s, 0]
        x2 = x2 * tl.chi2_m / (n + tl.chi2_m)
        tv = 0.5 * tv
        dof = np.where(n > 0, tl.chi2_known + extra - 1, 0)
        chi2_p = special.chdtrc(dof, x2)  # fixed mode's p-value, for information
    ks[empty], x2[empty], tv[empty], chi2_p[empty] = np.nan, np.nan, np.nan, np.nan
    chi2_threshold = np.full(x2.shape, calibration.fixed_threshold)
    if calibration.calibrated:
        # Each categorical column's threshold and p-value come from its exact null at the pane's n
        # (see `exact`): a cached table look-up per column and scale. Unseen categories add to the
        # statistic, not to the null: the reference frequencies never produce them.
        for s, (k, a) in enumerate(zip(sizes, alphas)):
            for c, name in enumerate(tl.chi2_names):
                chi2_threshold[s, c] = calibration.chi2(name, k, a) if k else np.nan
                chi2_p[s, c] = (
                    calibration.chi2_p_value(name, k, a, float(x2[s, c])) if k else np.nan
                )
    return ColumnTests(
        tl.names,
        tl.tests,
        tl.ordered(ks, x2),
        tl.ordered(ks, tv),
        tl.ordered(ks_p, chi2_p),
        tl.ordered(np.broadcast_to(ks_threshold, ks.shape), chi2_threshold),
    )


_NONE = np.empty(0)
