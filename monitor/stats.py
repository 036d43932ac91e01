"""Test statistics on binned counts, their null distributions, and the concept-drift tail models.

Why these tests:
- Numeric columns and predictions: two-sample Kolmogorov-Smirnov, the tutorial's statistic. It is
  computed from cumulative bin counts (see `reference`), so an evaluation costs one cumsum per
  column. The null distribution is Kolmogorov's asymptotic law with the effective size
  en = n*m/(n+m) and Stephens' finite-size correction sqrt(en) + 0.12 + 0.11/sqrt(en); p-value and
  threshold come from the same formula (scipy.special.kolmogorov / kolmogi, ~1 us each), so
  "statistic > threshold" and "p-value < alpha" always agree. Assumption: continuous data. With
  ties (carat, depth and table take few values) the true null distribution of D is stochastically
  smaller, so the test is conservative: fewer false alarms than budgeted, never more.
- Categorical columns: Pearson chi-square of the window counts against the reference frequencies,
  smoothed by `pseudo_count` per category so a category the reference never saw has a tiny but
  non-zero expectation: an unseen value gives a huge, finite statistic, never inf/nan. The
  statistic is multiplied by m/(n+m), which makes its null mean that of the two-sample
  (2 x C contingency) test, so the reference's own sampling noise is accounted for as for KS.
  Degrees of freedom: categories compared - 1 (unseen names seen in the window add one each).
  The [0, 1] distance reported alongside is total variation, 0.5 * sum |p_window - p_reference|.
  The monitor's thresholds and p-values for this statistic come from its exact null (`exact`),
  not from the chi-square law (`chi2_pvalue`/`chi2_threshold`, kept for fixed mode and benches),
  whose far tail is too light when expected counts are small.
- Concept drift: the window's mean squared error over the reference MSE. Its no-drift spread is
  that of the mean of n draws from the held-out squared errors (the resampling/bootstrap
  distribution). Plain bootstrap cannot reach the 1 - 1e-6 quantiles a 10M-record false-alarm
  budget needs, so the tail of that same resampling distribution is computed analytically with
  the Lugannani-Rice saddlepoint approximation (Davison & Hinkley 1988), which is accurate far
  into the tail of means of i.i.d. draws. Assumption: the held-out errors represent the
  population's, including its largest errors; the bootstrap (and so this tail) cannot exceed the
  largest held-out error, so a heavier real tail would raise false alarms. The size used is
  en = n*m/(n+m) (the reference MSE is itself a mean of m errors), which is conservative when the
  stream is drawn from the held-out rows themselves.
- Concept drift of a classifier: each joined record is wrong or right, so with the held-out error
  rate p the number wrong among en records is exactly Binomial(en, p): its quantile needs no
  approximation (`binomial_upper_quantile`; see `calibration`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special
from scipy import stats as sps


def ks_statistic(reference_cdf: np.ndarray, counts: np.ndarray) -> float:
    """Binned two-sample KS: max |F_ref - F_window| over bin boundaries; counts (2K+1,) int.

    >>> ks_statistic(np.array([0.0, 0.5, 1.0]), np.array([0, 3, 1]))  # window CDF 0, 0.75, 1
    0.25
    >>> round(ks_threshold(0.01, 1000, 10000), 4)  # D a 1,000-record window exceeds with probability 1%
    0.0538
    """
    cumulative = np.cumsum(counts)
    n = cumulative[-1]
    if n == 0:
        return math.nan
    return float(np.abs(cumulative / n - reference_cdf).max())


def ks_scale(n: int, m: int) -> float:
    """Kolmogorov's law argument per unit of D: sqrt(n*m/(n+m)) with Stephens' correction."""
    en = n * m / (n + m)
    root = math.sqrt(en)
    return root + 0.12 + 0.11 / root


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS p-value with effective size n*m/(n+m) (Stephens' correction)."""
    return float(special.kolmogorov(ks_scale(n, m) * statistic))


def ks_threshold(alpha: float, n: int, m: int) -> float:
    """The D such that ks_pvalue(D, n, m) == alpha."""
    return float(special.kolmogi(alpha)) / ks_scale(n, m)


def total_variation(reference_counts: np.ndarray, counts: np.ndarray, unseen: int) -> float:
    """0.5 * sum |p_window - p_ref| over known categories plus the unseen mass (in [0, 1])."""
    n = counts.sum() + unseen
    if n == 0:
        return math.nan
    p_ref = reference_counts / reference_counts.sum()
    return float(0.5 * (np.abs(counts / n - p_ref).sum() + unseen / n))


def chi2_statistic(
    reference_counts: np.ndarray, counts: np.ndarray, unseen: np.ndarray, pseudo_count: float = 0.5
) -> tuple[float, int]:
    """Smoothed Pearson chi-square (statistic, dof) of window counts vs reference frequencies.

    reference_counts (C,), counts (C,) window counts of known categories, unseen (U,) window counts
    of categories absent from the reference. Each of the C + U categories gets `pseudo_count` added
    to its reference count before normalising.
    """
    n = counts.sum() + (unseen.sum() if len(unseen) else 0.0)
    if n == 0:
        return math.nan, 0
    m = reference_counts.sum()
    total = m + pseudo_count * (len(reference_counts) + len(unseen))
    expected = n * (reference_counts + pseudo_count) / total
    x2 = ((counts - expected) ** 2 / expected).sum()
    if len(unseen):
        expected_unseen = n * pseudo_count / total
        x2 += ((unseen - expected_unseen) ** 2).sum() / expected_unseen
    return float(x2 * m / (n + m)), len(reference_counts) + len(unseen) - 1


def chi2_pvalue(statistic: float, dof: int) -> float:
    return float(special.chdtrc(dof, statistic))


def chi2_threshold(alpha: float, dof: int) -> float:
    return float(special.chdtri(dof, alpha))


def binomial_upper_quantile(alpha: float, n: int, p: float) -> float:
    """The smallest count x with P(X > x) <= alpha for X ~ Binomial(n, p): the exact null of the
    number of misclassified records among n when each is wrong with probability p."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n < 1 or not 0.0 < p <= 1.0:
        raise ValueError(f"need n >= 1 and 0 < p <= 1, got n={n}, p={p}")
    return float(sps.binom.isf(alpha, n, p))


def mean_upper_quantile(values: np.ndarray, n: float, alpha: float) -> float:
    """x with P(mean of n i.i.d. draws from `values` > x) = alpha (Lugannani-Rice saddlepoint).

    values (m,) non-negative; returned in the units of `values`. Exact-tail cost: one root search
    over the saddlepoint s, each step one pass over `values`.
    """
    scale = float(np.mean(values))
    y = np.asarray(values, dtype=np.float64) / scale  # mean 1: keeps exp() in range
    log_m = math.log(y.size)

    def tail(s: float) -> float:
        # K(s) = log mean exp(s y); K' and K'' are the mean and variance of y tilted by exp(s y).
        z = s * y
        top = z.max()
        w = np.exp(z - top)
        total = w.sum()
        k = top + math.log(total) - log_m
        mean = float(np.dot(w, y) / total)
        var = float(np.dot(w, (y - mean) ** 2) / total)
        r = math.copysign(math.sqrt(max(2.0 * n * (s * mean - k), 0.0)), s)
        u = s * math.sqrt(n * var)
        if abs(r) < 1e-8 or abs(u) < 1e-8:
            return 0.5, mean
        return float(
            special.ndtr(-r) + math.exp(-0.5 * r * r) / math.sqrt(2 * math.pi) * (1 / u - 1 / r)
        ), mean

    def excess(s: float) -> float:
        return math.log(max(tail(s)[0], 1e-300)) - math.log(alpha)

    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    upper = 1.0 / y.std() / math.sqrt(n)
    while excess(upper) > 0:
        upper *= 2.0
        if upper > 1e6:
            return float(y.max() * scale)
    s = optimize.brentq(excess, 1e-9, upper, xtol=1e-12, rtol=1e-10)
    return tail(s)[1] * scale
