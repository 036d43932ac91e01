"""Tests on the joined errors' distribution: concept drift seen record by record, not as a mean.

The rolling MSE (or error rate) is one number per window: a change shows only once it has moved
the window's mean past its threshold, and a change that moves the errors without raising their
mean (labels 5% lower) never does. These tests compare how the window's errors are distributed
with the reference's (the model's held-out rows), from counts over bins the reference fixes: a
joined record adds 1 to one bin, a window is the sum of its panes' counts, so several workers'
panes merge by addition, exactly (integers).

Why these tests (bench/concept_bench.py; numbers and command in bench/CONCEPT_RESULTS.md):
- Regression, `ResidualKS`: two-sample KS of the *standardized signed error*
  z = (prediction - label - b) / s, b and s the mean error and its mean absolute deviation among
  reference rows with a similar prediction (quantile cells of the reference's predictions).
  - signed: a concept change usually biases the errors (prices x1.2: labels above their
    predictions); |error| loses the sign, and a two-sided KS on |error| also flags an input
    shift that *lowers* the errors (`carat-shift`, fewer big stones: 90% of the windows);
  - standardized: big stones carry big dollar errors, so a shift towards them moves the raw
    errors' distribution with no change in how good the model is for a stone of a given price
    (`tilt:carat:1.2`: the KS on |error| flags 65% of the windows). Centring and scaling by the
    errors of the reference rows with a similar prediction makes the test one of
    P(label | prediction), which is what concept drift means: under carat-shift, cut-mix and
    tilt:carat:1.2 it flags no window, and labels 5% higher or lower are flagged 250 records
    after they start (the MSE ratio never flags them);
  - KS: the null is Kolmogorov's law at the effective size n*m/(n+m), as for the features
    (`stats.ks_threshold`); binning (quantile edges of the reference's z) only lowers the
    statistic, so the test stays conservative whatever the errors' distribution.
- Classification, `ConfidenceWeightedErrors`: the mean over the window of e * w(c), e = 1 for a
  misclassified record, c the model's confidence (its top class probability) and
  w(c) = -log(1 - c), the log-loss of that error (binary: exactly the record's log-loss; with
  more classes the least it can be). Label noise (`labels:flip`) turns right answers into errors
  wherever the model is, and most records are confident ones, where an error is rare in the
  reference and so is strong evidence: on the affairs model the error rate of its most confident
  eighth rises from 6% to 32% under `labels:flip:0.3`, that of its least confident from 43% to
  47%. A plain error rate weighs both alike (`labels:flip:0.15`: 6,625 records to an alarm
  against 1,000). Confidence is binned by the reference's quantiles, each bin's weight from its
  reference rows' mean confidence, so a pane holds counts of (bin, error). The null is the mean
  of en = n*m/(n+m) draws from the reference's per-record values, its upper tail by the
  saddlepoint approximation (`stats.mean_upper_quantile`): the MSE ratio's method, with one
  change: each confidence cell's error rate in that sample is smoothed with Jeffreys' prior,
  (errors + 1/2) / (rows + 1). The plug-in sample alone alarmed 1.2-2x alpha (affairs, 1,274
  rows; 4x with 600 rows, 11x on a synthetic model at n = 1,000) against references drawn from
  the population: a reference that happens to hold few errors among its confident rows makes
  the null's mean and spread both small. Smoothed: 0.3-0.6x alpha from 1e-2 to 1e-6
  (bench/CONCEPT_RESULTS.md, "Calibration"). Without probabilities every weight is 1: the plain
  error rate.

Both are tested at three scales (`scales`): the whole window, its newest half and its newest
pane, each at its own n. The window detects a small persistent change; the newest pane an abrupt
one a pane after it starts (ADWIN's idea with fixed cut points, like the column tests' two
scales). Each scale is a test in the Bonferroni split (`tests`: 3 at the defaults).

Pane layout: `ErrorTest.size` counts per pane; a joined record's bin from `bin_index`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from monitor import stats

SCALES = ("window", "recent", "pane")


@dataclass(frozen=True)
class ErrorDrift:
    """One evaluation of an error test: the scale with the largest statistic / threshold, so
    `detected` (any scale over its threshold) equals statistic > threshold as reported."""

    test: str  # "residual_ks" or "weighted_errors"
    statistic: float
    threshold: float
    p_value: float | None  # KS only; the weighted mean has a threshold, not a p-value
    detected: bool
    scale: str  # "window", "recent" or "pane"
    records: int  # joined records behind the statistic
    reference: float  # the no-drift centre: 0 for KS, the reference's mean weighted error


def scales(panes: int) -> tuple[tuple[str, int], ...]:
    """The scales tested on a window of `panes` panes: (name, newest panes summed), no duplicates.

    >>> scales(4), scales(2), scales(1)
    ((('window', 4), ('recent', 2), ('pane', 1)), (('window', 2), ('recent', 1)), (('window', 1),))
    """
    if panes < 1:
        raise ValueError(f"a window has at least one pane, got {panes}")
    out: dict[int, str] = {}
    for name, count in zip(SCALES, (panes, panes // 2, 1)):
        if count >= 1:
            out.setdefault(count, name)
    return tuple((name, count) for count, name in out.items())


def tests(panes: int) -> int:
    """Tests the error test adds to the Bonferroni split (`Calibration.tests`): one per scale."""
    return len(scales(panes))


def scale_counts(panes: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Counts per scale from a window's panes (oldest first), each (size,):
    {"window": all, "recent": the newest half, "pane": the newest}."""
    stacked = np.asarray(panes, dtype=np.int64)
    return {
        name: stacked[len(stacked) - count :].sum(axis=0) for name, count in scales(len(stacked))
    }


def confidence(probabilities: ArrayLike) -> np.ndarray:
    """The model's confidence per record: its top class probability. probabilities (n, C), or (n,)
    for a binary model whose messages carry one class's probability p (confidence max(p, 1 - p))."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        return np.maximum(p, 1.0 - p)
    return p.max(axis=1)


class ErrorTest:
    """What the monitor needs of an error test: pane layout, per-record bins, statistic, threshold.

    A joined record's bin comes from its prediction, its label and (classification) the model's
    confidence; `size` counts make a pane; `statistic(counts)` against `threshold(n, alpha)`."""

    name = ""
    size: int  # bins per pane
    m: int  # reference rows

    def bin_index(
        self, predictions: ArrayLike, labels: ArrayLike | None, confidences: ArrayLike | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def counts(
        self, predictions: ArrayLike, labels: ArrayLike | None, confidences: ArrayLike | None = None
    ) -> np.ndarray:
        """Bin counts of k joined records, (size,) int64."""
        return np.bincount(self.bin_index(predictions, labels, confidences), minlength=self.size)

    def statistic(self, counts: np.ndarray) -> float:
        raise NotImplementedError

    def threshold(self, n: int, alpha: float) -> float:
        raise NotImplementedError

    def p_value(self, statistic: float, n: int) -> float | None:
        return None

    @property
    def reference_value(self) -> float:
        return 0.0

    def evaluate(
        self, counts_by_scale: Mapping[str, np.ndarray], alpha: float, min_records: int = 100
    ) -> ErrorDrift | None:
        """The test at each scale (`scale_counts`, the window first) holding at least
        `min_records` joined records, a smaller scale only when it holds fewer than the window;
        None when none does."""
        rows = []
        window = None
        for name, counts in counts_by_scale.items():
            n = int(np.sum(counts))
            if n < max(min_records, 1) or (window is not None and n >= window):
                continue
            window = n if window is None else window
            statistic, threshold = self.statistic(counts), self.threshold(n, alpha)
            ratio = statistic / threshold if threshold > 0 else math.inf
            rows.append((ratio, name, n, statistic, threshold))
        if not rows:
            return None
        detected = any(statistic > threshold for _, _, _, statistic, threshold in rows)
        _, name, n, statistic, threshold = max(rows, key=lambda row: row[0])
        return ErrorDrift(
            self.name,
            statistic,
            threshold,
            self.p_value(statistic, n),
            detected,
            name,
            n,
            self.reference_value,
        )


def _quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Distinct inner quantile edges splitting `values` into about `bins` equal parts."""
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


class ResidualKS(ErrorTest):
    """Two-sample KS of the standardized signed errors against the reference's (regression).

    z = (prediction - label - b) / s, b and s the mean error and the mean absolute deviation from it
    of the reference rows in the prediction's cell (`levels` quantile cells of the reference's
    predictions, at most one per `rows_per_level` rows, so each cell's b and s rest on enough rows).
    Centring matters as much as scaling: a model's errors can be biased differently at different
    predictions (the synthetic prices below are over-predicted at the top), and an input shift
    towards those would otherwise move z. Bins: `bins` quantile bins of the reference's z.

    >>> rng = np.random.default_rng(0)
    >>> truth = rng.gamma(2.0, 1000.0, 5000)
    >>> predicted = truth * rng.lognormal(0.0, 0.1, 5000)   # errors grow with the price
    >>> test = ResidualKS(predicted, truth)
    >>> test.size, len(test.scale)                          # 100 bins, 10 cells of 500 rows
    (100, 10)
    >>> late = rng.gamma(2.0, 1000.0, 500)
    >>> calm, inflated = late * rng.lognormal(0.0, 0.1, 500), late * rng.lognormal(0.0, 0.1, 500)
    >>> round(test.statistic(test.counts(calm, late)), 4), round(test.threshold(500, 1e-6), 4)
    (0.032, 0.1256)
    >>> round(test.statistic(test.counts(inflated, late * 1.1)), 4)  # labels x1.1
    0.384
    """

    name = "residual_ks"

    def __init__(
        self,
        predictions: ArrayLike,
        labels: ArrayLike,
        bins: int = 100,
        levels: int = 20,
        rows_per_level: int = 500,
    ) -> None:
        predictions, labels = np.asarray(predictions, np.float64), np.asarray(labels, np.float64)
        if predictions.shape != labels.shape or predictions.ndim != 1 or len(predictions) < 2:
            raise ValueError(
                "reference predictions and labels must be (m,) with m >= 2, got "
                f"{predictions.shape} and {labels.shape}"
            )
        if not (np.all(np.isfinite(predictions)) and np.all(np.isfinite(labels))):
            raise ValueError("reference predictions and labels must be finite")
        if bins < 2 or levels < 1 or rows_per_level < 1:
            raise ValueError(
                "need bins >= 2, levels >= 1 and rows_per_level >= 1, got "
                f"{bins}, {levels} and {rows_per_level}"
            )
        self.m = len(predictions)
        cells = max(1, min(levels, self.m // rows_per_level))
        self.level_edges = _quantile_edges(predictions, cells)
        errors = predictions - labels
        cell = self._cell(predictions)
        size = len(self.level_edges) + 1
        count = np.maximum(np.bincount(cell, minlength=size), 1)
        self.centre = np.bincount(cell, weights=errors, minlength=size) / count
        deviation = np.abs(errors - self.centre[cell])
        spread = np.bincount(cell, weights=deviation, minlength=size) / count
        # a reference whose errors are all equal: any positive scale will do
        overall = float(np.abs(errors - errors.mean()).mean()) or 1.0
        self.scale = np.where(spread > 0, spread, overall)
        z = self.standardized(predictions, labels)
        self.edges = _quantile_edges(z, bins)
        self.size = len(self.edges) + 1
        self.reference_cdf = np.cumsum(np.bincount(self._bin(z), minlength=self.size))[:-1] / self.m

    def _cell(self, predictions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.level_edges, predictions, side="right")

    def _bin(self, z: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, z, side="right")  # NaN sorts last: the top bin

    def standardized(self, predictions: ArrayLike, labels: ArrayLike) -> np.ndarray:
        """(prediction - label - b(prediction)) / s(prediction), (k,)."""
        predictions = np.asarray(predictions, np.float64)
        cell = self._cell(predictions)
        return (predictions - np.asarray(labels, np.float64) - self.centre[cell]) / self.scale[cell]

    def bin_index(
        self, predictions: ArrayLike, labels: ArrayLike | None, confidences: ArrayLike | None = None
    ) -> np.ndarray:
        """Bin of each joined record, (k,) int64 in [0, size); predictions, labels (k,) floats."""
        return self._bin(self.standardized(predictions, labels))

    def statistic(self, counts: np.ndarray) -> float:
        """KS distance between the window's binned CDF and the reference's, at the bin edges."""
        counts = np.asarray(counts)
        n = counts.sum()
        if n == 0:
            return math.nan
        return float(np.abs(np.cumsum(counts)[:-1] / n - self.reference_cdf).max())

    def threshold(self, n: int, alpha: float) -> float:
        return stats.ks_threshold(alpha, n, self.m)

    def p_value(self, statistic: float, n: int) -> float | None:
        return stats.ks_pvalue(statistic, n, self.m)


def _grid(n: int, alpha: float) -> tuple[int, float]:
    """n rounded down (3 significant digits above 1,000, a multiple of 10 from 100) and alpha down
    to a 2**(1/4) grid: both only raise the threshold, and few distinct thresholds get computed."""
    if n > 1000:
        unit = 10 ** (int(math.log10(n)) - 2)
        n = n // unit * unit
    elif n >= 100:
        n = n // 10 * 10
    return n, 2.0 ** (math.floor(math.log2(alpha) * 4) / 4)


class ConfidenceWeightedErrors(ErrorTest):
    """Mean over the window of e * w(c): errors weighted by the log-loss they carry (classifiers).

    `bins` quantile bins of the reference's confidence; bin k's weight is -log(1 - c_k), c_k the
    mean confidence of the reference rows in it (clipped to 1 - 0.5/m: the reference cannot tell a
    confidence finer than that). A joined record's pane bin is 2k + e. Without confidences (a
    model without probabilities): one bin of weight 1, the plain error rate. The threshold's null
    sample (`null_values`) smooths each cell's error rate with Jeffreys' prior (see the module doc).

    >>> rng = np.random.default_rng(0)
    >>> c = rng.uniform(0.5, 1.0, 4000)             # a calibrated binary model
    >>> wrong = rng.random(4000) > c
    >>> test = ConfidenceWeightedErrors(wrong, c)
    >>> test.size, round(test.reference_value, 4)   # 20 bins x (right, wrong)
    (40, 0.2996)
    >>> late = rng.uniform(0.5, 1.0, 500)
    >>> calm, flipped = rng.random(500) > late, (rng.random(500) > late) ^ (rng.random(500) < 0.3)
    >>> round(test.statistic(test.counts(calm, None, late)), 4), round(test.threshold(500, 1e-6), 4)
    (0.3006, 0.4412)
    >>> round(test.statistic(test.counts(flipped, None, late)), 4)   # 30% of labels flipped
    0.5777
    """

    name = "weighted_errors"

    def __init__(
        self, wrong: ArrayLike, confidences: ArrayLike | None = None, bins: int = 20
    ) -> None:
        wrong = np.asarray(wrong, dtype=bool)
        if wrong.ndim != 1 or len(wrong) < 2:
            raise ValueError(f"reference errors must be (m,) with m >= 2, got {wrong.shape}")
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.m = len(wrong)
        if confidences is None:
            self.edges = np.empty(0)
            self.weights = np.ones(1)
        else:
            confidences = np.asarray(confidences, np.float64)
            if confidences.shape != wrong.shape or not np.all(np.isfinite(confidences)):
                raise ValueError(
                    f"reference confidences must be (m,) and finite, like the errors {wrong.shape}"
                )
            self.edges = _quantile_edges(confidences, bins)
            cell, size = self._cell(confidences), len(self.edges) + 1
            count = np.maximum(np.bincount(cell, minlength=size), 1)
            mean = np.bincount(cell, weights=confidences, minlength=size) / count
            self.weights = -np.log1p(-np.clip(mean, 0.0, 1.0 - 0.5 / self.m))
        self.size = 2 * len(self.weights)
        cells = np.zeros(self.m, np.int64) if confidences is None else self._cell(confidences)
        values = np.where(wrong, self.weights[cells], 0.0)
        if not values.any():
            # A reference without a single error: half an error at the mean weight, as the
            # error-rate test floors its rate at 0.5 / m, so the null is not degenerate.
            values = np.append(values, 0.5 * float(self.weights.mean()))
        self.values = values
        self._reference = float(values.mean())
        # The null's sample: each cell's error rate with Jeffreys' prior, (e_k + 1/2) / (m_k + 1):
        # every reference row twice, plus one error and one right answer per cell. Why: a reference
        # that happens to hold few errors in its confident cells makes both its mean and its spread
        # small, so the plug-in null (the reference's own values) alarms 1.2-2x alpha at 1e-3..1e-6
        # against references drawn from the population (1,274 rows, affairs), 4x with 600 rows.
        # Half an error per cell is the most in the cells where the reference knows the least;
        # measured 0.3-0.6x alpha from 1e-2 to 1e-6 (bench/CONCEPT_RESULTS.md, "Calibration").
        self.null_values = np.concatenate(
            (values, values, self.weights, np.zeros(len(self.weights)))
        )
        self._thresholds: dict[tuple[int, float], float] = {}

    def _cell(self, confidences: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, confidences, side="right")

    @property
    def reference_value(self) -> float:
        """The reference's mean weighted error: the statistic's no-drift centre."""
        return self._reference

    def bin_index(
        self, predictions: ArrayLike, labels: ArrayLike | None, confidences: ArrayLike | None = None
    ) -> np.ndarray:
        """Bin 2k + e of each joined record, (k,) int64. predictions and labels (k,) class texts, or
        predictions alone as (k,) bool "misclassified" and labels None; confidences (k,) floats."""
        wrong = (
            np.asarray(predictions, dtype=bool)
            if labels is None
            else np.asarray(predictions, dtype=object) != np.asarray(labels, dtype=object)
        )
        if confidences is None or not len(self.edges):
            cell = np.zeros(len(wrong), np.int64)
        else:
            cell = self._cell(np.asarray(confidences, np.float64))
        return 2 * cell + wrong.astype(np.int64)

    def statistic(self, counts: np.ndarray) -> float:
        counts = np.asarray(counts)
        n = counts.sum()
        if n == 0:
            return math.nan
        return float(np.dot(counts[1::2], self.weights) / n)

    def threshold(self, n: int, alpha: float) -> float:
        """The upper alpha quantile of the mean of en = n*m/(n+m) draws from the null's sample (the
        reference's values, each cell's error rate smoothed: `null_values`), by the saddlepoint, on
        the conservative grid of `_grid`; cached per instance."""
        key = _grid(n, alpha)
        if key not in self._thresholds:
            size, level = key
            effective = size * self.m / (size + self.m)
            self._thresholds[key] = stats.mean_upper_quantile(self.null_values, effective, level)
        return self._thresholds[key]


def from_reference(
    task: str, predictions: ArrayLike, labels: ArrayLike, confidences: ArrayLike | None = None
) -> ErrorTest:
    """The error test for a model: `ResidualKS` for a regression, `ConfidenceWeightedErrors` for a
    classifier (predictions and labels as class texts; confidences when the messages carry
    probabilities, see `confidence`)."""
    if task == "regression":
        return ResidualKS(predictions, labels)
    if task == "classification":
        wrong = np.asarray(predictions, dtype=object) != np.asarray(labels, dtype=object)
        return ConfidenceWeightedErrors(wrong, confidences)
    raise ValueError(f"task must be regression or classification, got {task!r}")
