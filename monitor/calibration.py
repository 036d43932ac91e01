"""Thresholds from a false-alarm budget: `ert`, the expected records between false alarms.

An evaluation that follows r new records (r = step for count windows, the closed pane's records
for time windows) gets the false-alarm probability r / ert, so on a no-drift stream the expected
number of alarms per record is 1 / ert whatever the rate (evaluations per ert = ert / step). That
budget is split evenly (Bonferroni) across the tests run at each evaluation. Calibrated mode tests
every feature and every model output (the prediction; a classifier's class probabilities too) at
two scales (see "Two scales" below), plus the concept test once: 2 x (6 + 1) + 1 = 15 tests for
the diamonds model (8 with `recent=False` or a one-pane window); a classifier with 4 features,
3 classes and probabilities has 2 x (4 + 1 + 3) + 1 = 17. Defaults (window 1000, step 250, ert
1e7) give alpha = 250 / 1e7 / 15 = 1.67e-6 per test for diamonds.

With the error test on the joined records (`monitor.errortest`, `error_panes` > 0: the panes of
the window it sees), each of its scales is one more test: the whole window, its newest half and
its newest pane, 3 at the defaults, so diamonds has 18 tests (alpha 1.39e-6) and the affairs
classifier 26 (9.62e-7). The monitor's own `DriftMonitor(error_test=True)` turns it on.

Two scales (multi-scale detection, ADWIN's idea with fixed, calibrated cut points): besides the
whole window, each evaluation tests its newest half (the last `panes // 2` panes: 500 of 1,000
records at the defaults, half the panes of a time window) against the reference, with that
scale's own threshold for its own n. An abrupt change fills the newest half twice as fast as the
window, so it is detected up to half a window sooner; a small, persistent change still gains from
the whole window's larger n. A column is flagged when either scale exceeds its threshold; the
result reports, per column, the scale with the larger statistic / threshold ratio. Both scales'
tests count in the Bonferroni split (their strong positive correlation makes that conservative).
At the defaults the whole window's KS threshold rises from 0.0851 to 0.0871 (MSE ratio from 0.911
to 0.938) and the newest half's KS threshold is 0.1203 at n = 500; cut's is 35.31 at 1,000
records and 36.23 at 500.

Each threshold is the (1 - alpha) quantile of its statistic's null distribution (see `stats`):
KS from Kolmogorov's law at effective size n*m/(n+m); a categorical column's from the exact
distribution of its statistic on windows of n records drawn from the reference frequencies
(`exact`, by importance sampling: the chi-square law underestimates the far tail when expected
counts are small, 1.6x alpha for cut at 500 records); the MSE ratio from the saddlepoint tail of
resampled held-out squared errors.

Classification's concept test is the rolling error rate r (share of joined records whose label is
not the predicted class) against the held-out error rate p; `concept_drift` stays the tutorial's
relative score (r - p) / p. Its null is exact, the way the MSE ratio's is the resampling tail:
the errors among en = floor(n*m/(n+m)) joined records (the effective size again, rounded down:
conservative) are Binomial(en, p), whose upper alpha quantile x (scipy's binom.isf: P(errors > x)
<= alpha, discreteness only lowering the realised rate) gives the threshold (x / en - p) / p.
A reference without a single error would make p = 0: it is floored at 0.5 / m.

Why the realised false-alarm rate is at most the budget:
- consecutive windows overlap (window/step = 4 panes share records), so alarms cluster: the
  expected *number of evaluations* that alarm is r/ert per evaluation, but alarms come in runs,
  so the expected number of distinct alarm episodes is lower;
- Bonferroni ignores the correlation between tests (prediction and carat move together);
- KS on discrete columns (carat, depth, table) is conservative (see `stats`), and so is the
  categorical tests' discreteness (a threshold between two attainable statistics);
- a window drawn from the held-out rows themselves has no reference sampling noise, while the
  effective sizes budget for it.
The false-alarm *rate per record* is what is calibrated, not the episode rate.

`mode="fixed"` keeps the tutorial's rule for comparison: a feature drifts when its distance (KS or
total variation) exceeds 0.1, the dataset when the mean distance exceeds 0.1, concept drift when
the relative MSE (or error rate) exceeds 0.1. Those thresholds ignore window size and are not calibrated.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from monitor import errortest, stats
from monitor.exact import Background, PearsonNull
from monitor.reference import Reference

MODES = ("calibrated", "fixed")


def _alpha_grid(alpha: float, steps: int = 8) -> float:
    """alpha rounded down to a 2**(1/steps) grid: a lower level, a higher threshold (conservative),
    and time windows (whose alpha follows each pane's records) reuse a few cached thresholds."""
    return 2.0 ** (math.floor(math.log2(alpha) * steps) / steps)


def _grid(joined: int, alpha: float) -> tuple[int, float]:
    """The cache grid of the concept thresholds: `joined` above 1,000 rounded down to 3 significant
    digits, from 100 to 1,000 to a multiple of 10, and alpha down to a 2**(1/4) grid, all of which
    can only raise the threshold. (A count window's latest joined records fill in steps, so `joined`
    moves by a few records between evaluations; uncached, each new value cost a ~40 ms saddlepoint
    search, a third of the monitor's CPU at 1,000 records/s.)"""
    if joined > 1000:
        unit = 10 ** (int(math.log10(joined)) - 2)
        joined = joined // unit * unit
    elif joined >= 100:
        joined = joined // 10 * 10
    return joined, _alpha_grid(alpha, 4)


class Calibration:
    """Per-test thresholds for a reference and a budget; `alpha(r)` is the per-test level.

    A classifier's reference (2,000 rows, 10% misclassified), evaluated every 250 records:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> predicted = rng.choice(["no", "yes"], 2000)
    >>> labels = np.where(np.arange(2000) % 10 == 0, np.where(predicted == "no", "yes", "no"), predicted)
    >>> reference = Reference.from_arrays({"x": rng.normal(0, 1, 2000)}, {}, predicted, labels,
    ...                                   task="classification", classes=("no", "yes"))
    >>> calibration = Calibration(reference, ert=1e6)
    >>> calibration.tests, calibration.alpha(250)  # 2 scales x (x, prediction) + the error rate
    (5, 5e-05)
    >>> t = calibration.thresholds(window=1000, step=250)
    >>> round(t["x"], 4), round(t["prediction"], 2), round(t["error_rate_ratio"], 3)
    (0.0887, 17.29, 0.486)

    The error-rate threshold is Binomial(en, 0.1)'s upper quantile (en = 1000*2000 // 3000 = 666)
    at alpha 5e-5 rounded down to the cache grid (4.3e-5): an alarm when the rate exceeds 99 / 666
    = 14.9%, 48.6% above 10%.
    """

    def __init__(
        self,
        reference: Reference,
        ert: float = 10_000_000,
        mode: str = "calibrated",
        fixed_threshold: float = 0.1,
        pseudo_count: float = 0.5,
        recent: bool = True,
        prefetch: bool = False,
        estimated: bool = False,
        error_panes: int = 0,
    ) -> None:
        if not ert > 0 or not math.isfinite(ert):
            raise ValueError(
                f"ert (records between false alarms) must be a positive number, got {ert}"
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not fixed_threshold > 0:
            raise ValueError(f"fixed_threshold must be > 0, got {fixed_threshold}")
        if not pseudo_count > 0:
            raise ValueError(
                f"pseudo_count must be > 0 (it keeps unseen categories finite), got {pseudo_count}"
            )
        self.reference = reference
        self.ert, self.mode = float(ert), mode
        self.fixed_threshold, self.pseudo_count = fixed_threshold, pseudo_count
        # Calibrated mode also tests the newest half window (see "Two scales"); fixed mode never does.
        self.recent = bool(recent) and mode == "calibrated"
        scales = 2 if self.recent else 1
        # features and outputs (prediction, class probabilities) and the estimated performance (when
        # the window has an estimator) per scale, + the concept test
        self.estimated = estimated
        # The error test on the joined records, one test per scale of its window of `error_panes`
        # panes (`errortest.tests`); calibrated mode with a reference that has one only.
        on = error_panes > 0 and mode == "calibrated" and reference.error_test is not None
        self.error_test = reference.error_test if on else None
        self.error_scales = errortest.tests(error_panes) if on else 0
        self.tests = (
            scales * (len(reference.features) + len(reference.outputs) + int(estimated))
            + 1
            + self.error_scales
        )
        self._mse_ratio = lru_cache(maxsize=4096)(self._mse_ratio_uncached)
        self._nulls: dict[
            str, PearsonNull
        ] = {}  # categorical column -> its exact null, built on first use
        # A time window's sizes and levels move: it has the next ones computed ahead (`prefetch_chi2`),
        # on a thread of this calibration's own.
        self.prefetch = prefetch
        self._background = Background() if prefetch else None
        self._ks = lru_cache(maxsize=4096)(self._ks_uncached)
        self._error_rate_ratio = lru_cache(maxsize=4096)(self._error_rate_ratio_uncached)
        # A reference that never misclassified would make every error an infinite relative change:
        # the rate is floored at half an error in m rows (0.5 / m), the usual continuity correction,
        # which keeps concept_drift finite and the binomial null non-degenerate.
        error_rate = reference.error_rate
        self.baseline_error_rate = (
            None if error_rate is None else max(error_rate, 0.5 / reference.size)
        )

    @property
    def calibrated(self) -> bool:
        return self.mode == "calibrated"

    def alpha(self, new_records: int) -> float:
        """Per-test false-alarm probability of an evaluation following `new_records` records."""
        return min(max(new_records, 1) / self.ert, 0.5) / self.tests

    def ks(self, n: int, alpha: float) -> float:
        """KS threshold on D for a window of n records (cached: every evaluation asks)."""
        if not self.calibrated:
            return self.fixed_threshold
        return self._ks(n, alpha)

    def _ks_uncached(self, n: int, alpha: float) -> float:
        return stats.ks_threshold(alpha, n, self.reference.size)

    def chi2(self, column: str, n: int, alpha: float) -> float:
        """Threshold on a categorical column's statistic for a window of n records (fixed mode: on
        the total variation distance): the exact null's upper alpha quantile (see `exact`), alpha
        rounded down to a 2**(1/8) grid and n to `exact.grid_n`'s (both conservative).

        The first threshold of a new (n, alpha) costs 0.1-0.7 s per column; a time window, whose n
        and alpha move with its records, has the next step's computed ahead (`prefetch_chi2`)."""
        if not self.calibrated:
            return self.fixed_threshold
        return self.null(column).threshold(n, _alpha_grid(alpha))

    def prefetch_chi2(self, n: int, alpha: float) -> None:
        """Start computing every categorical column's threshold for (n, alpha) in the background
        (`exact.Background`), unless known or under way; with `prefetch` only."""
        if self.prefetch and self.calibrated:
            for column in self.reference.chi2_columns:
                self.null(column).prefetch(n, _alpha_grid(alpha))

    def chi2_p_value(self, column: str, n: int, alpha: float, statistic: float) -> float:
        """The statistic's p-value under the same exact null (statistic > chi2(...) exactly when
        p <= alpha, on the same grid). Calibrated mode only (fixed mode has no alpha)."""
        return self.null(column).p_value(n, _alpha_grid(alpha), statistic)

    def null(self, column: str) -> PearsonNull:
        """The exact no-drift null of a categorical column (a feature, or a classifier's predicted class)."""
        if column not in self._nulls:
            self._nulls[column] = PearsonNull(
                self.reference.chi2_columns[column].counts,
                self.pseudo_count,
                background=self._background,
            )
        return self._nulls[column]

    def mse_ratio(self, joined: int, alpha: float) -> float:
        """Threshold on (rolling MSE - reference MSE) / reference MSE over `joined` records.

        Cached; `joined` is rounded down (`_grid`: 3 significant digits above 1,000, a multiple of 10
        below) and alpha down to a 2**(1/4) grid, all of which can only raise the threshold (conservative)."""
        if not self.calibrated:
            return self.fixed_threshold
        return self._mse_ratio(*_grid(joined, alpha))

    def _mse_ratio_uncached(self, joined: int, alpha: float) -> float:
        m = self.reference.size
        effective = joined * m / (joined + m)
        quantile = stats.mean_upper_quantile(self.reference.squared_errors, effective, alpha)
        return quantile / self.reference.mse - 1.0

    def error_rate_ratio(self, joined: int, alpha: float) -> float:
        """Threshold on (rolling error rate - reference error rate) / reference error rate over
        `joined` records (classification). Cached, on the same conservative grid as `mse_ratio`.

        The null is exact: the errors among en = joined*m/(joined+m) records (rounded down) are
        Binomial(en, p_ref), p_ref the (floored) reference error rate; the threshold is its upper
        alpha quantile x (P(errors > x) <= alpha) as a rate x / en, turned into the relative score."""
        if not self.calibrated:
            return self.fixed_threshold
        return self._error_rate_ratio(*_grid(joined, alpha))

    def _error_rate_ratio_uncached(self, joined: int, alpha: float) -> float:
        m = self.reference.size
        effective = (
            joined * m // (joined + m)
        )  # rounded down: a smaller n spreads the rate more (conservative)
        p = self.baseline_error_rate
        if p is None:
            raise ValueError("the error-rate test is for a classification reference")
        return (stats.binomial_upper_quantile(alpha, effective, p) / effective - p) / p

    def concept(self, joined: int, alpha: float) -> float:
        """The concept test's threshold: the MSE ratio (regression) or the error-rate ratio."""
        if self.reference.classification:
            return self.error_rate_ratio(joined, alpha)
        return self.mse_ratio(joined, alpha)

    def thresholds(self, window: int, step: int) -> dict[str, Any]:
        """Thresholds of a full count window of `window` records evaluated every `step`.

        With the recent scale, out["recent"] holds the thresholds of the newest half window
        (out["recent_records"] = step * (window // step // 2) records)."""
        alpha = self.alpha(step)
        out: dict[str, Any] = {"alpha_per_test": alpha, "tests": self.tests}
        out.update(self._scale(window, alpha))
        out["error_rate_ratio" if self.reference.classification else "mse_ratio"] = self.concept(
            window, alpha
        )
        half = step * (window // step // 2)
        if self.recent and half > 0:
            out["recent_records"] = half
            out["recent"] = self._scale(half, alpha)
        return out

    def _scale(self, n: int, alpha: float) -> dict[str, float]:
        # chi-square dof: the reference's categories - 1 (unseen ones in a window add one each)
        out = {name: self.ks(n, alpha) for name in self.reference.ks_columns}
        out.update({name: self.chi2(name, n, alpha) for name in self.reference.chi2_columns})
        return {name: out[name] for name in (*self.reference.features, *self.reference.outputs)}
