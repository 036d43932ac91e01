"""The exact no-drift distribution of a categorical column's statistic, by importance sampling.

Pearson's statistic follows the chi-square law only approximately: with small expected counts its
far tail is heavier (measured: 1.6x the budget for `cut` at 500 records, far more for rarer
categories), and the thresholds sit at a per-test level near 1e-6. `PearsonNull` computes the
tail of the monitor's own statistic (smoothed Pearson scaled by m/(n+m), `stats.chi2_statistic`)
under the two-sample null: a window of n records and a reference of m rows drawn from the same
category frequencies (the reference's own; its m rows are a sample too, which is what the
scaling accounted for to first order and what this null counts exactly, rare categories
included). A window resampled from the reference rows themselves (the simulator, the soak) has no
reference noise, so its rate is lower still.

Why importance sampling: plain simulation needs ~1e8 windows to see a 1e-6 tail; exact
enumeration of multinomial outcomes is out of reach at n = 1,000; the chi-square law is what is
wrong. (window, reference) pairs are drawn from a mixture of proposals that make large statistics
common, and each is weighted by its likelihood ratio (the balance heuristic), which keeps the
estimate unbiased:
- the null itself (a defensive share: every weight is at most 1 / that share);
- Dirichlet-multinomial windows that spread every category's count by a factor, so the
  statistic's bulk reaches the threshold (large expected counts: a sphere of directions);
- for each category, a window with that category's share raised or lowered until its own term
  alone reaches the threshold, and for a category with few reference rows, references with
  fewer of them still (small expected counts: one category's burst, or a reference that
  under-counts it, is how the statistic gets large).
50,000 weighted draws estimate a 1e-6 tail to a few percent (tests/unit/test_exact.py compares
with plain simulation); the threshold is where the estimate plus two standard errors is alpha, so
the sampling error can only lower the realised rate. Seeded: the same reference gives the same
thresholds at every start. Cost: 0.1-0.3 s per column and window size for diamonds' columns,
1-3 s for 50 categories, once (cached per n, on a grid, and per alpha).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
from scipy import special

SAMPLES = 50_000
DEFENSIVE_SHARE = 0.1
SPREADS = (
    0.6,
    1.0,
    1.6,
)  # Dirichlet-multinomial spread factors, relative to the one reaching the threshold
MARGIN_SE = 2.0  # standard errors added to the tail estimate before it is compared with alpha
FEW_REFERENCE_ROWS = 400  # a category with fewer reference rows gets proposals with fewer still:
REFERENCE_SHARES = (1.0, 0.5, 0.2)  # its reference count x these

GRID = (
    1.0,
    1.2,
    1.5,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    6.0,
    7.0,
    8.0,
    9.0,
)  # n's grid per decade: steps of at most 25%
KEPT_TAILS = 256  # per column: a tail curve holds up to 2 x 50,000 floats (800 kB)


class Background:
    """One daemon thread computing what a monitor will soon ask for; its owner (the monitor's
    `Calibration`) shares it between its columns' nulls, so two monitors in one process never
    share one by accident. The thread starts with the first job.

    A window whose size or level moves to a new grid point would otherwise compute that point's
    null on the monitor's loop (0.1-0.7 s per column): its gauges would come that much later. The
    results are the same wherever they are computed (seeded), so only when they are ready depends
    on timing, never what they are."""

    def __init__(self) -> None:
        # Newest first: the grid points around the latest window are the likeliest next ones.
        self._jobs: queue.LifoQueue[tuple[Callable[[], object], Future]] = queue.LifoQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> Future:
        future: Future = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="exact-nulls", daemon=True)
                self._thread.start()
        self._jobs.put((job, future))
        return future

    def _work(self) -> None:
        # At the process's own priority: the loop may be waiting for the job running here.
        while True:
            job, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
                future.set_exception(exc)


def grid_n(n: int) -> int:
    """n rounded down to the grid 10, 12, 15, 20, 25, 30, 40, ..., 90, 100, 120, 150, 200, ...:
    the threshold of fewer records is higher (a smaller window's small-count tail is heavier, and
    both its and the reference's noise weigh more), so rounding down is conservative, and time
    windows, whose n varies, reuse a few cached nulls. Count windows' n (1,000, 500) are on it."""
    if n < 10:
        return n
    decade = 10 ** int(math.log10(n))
    return int(max(d for d in GRID if d * decade <= n + 1e-9) * decade)


class PearsonNull:
    """The no-drift tail of one categorical column's smoothed Pearson statistic.

    counts: the reference's count per category (all > 0); pseudo_count as the monitor's. The
    threshold and p-values are on the monitor's statistic (scaled by m/(n+m)).

    Two categories, 90% / 10% in a reference of 1,000 rows, windows of 100 records, 1% per test:

    >>> null = PearsonNull(np.array([900, 100]), pseudo_count=0.5)
    >>> t = null.threshold(100, 0.01)
    >>> round(t, 2)  # the chi-square law's quantile is 6.63
    6.82
    >>> null.p_value(100, 0.01, t + 1e-9) <= 0.01 < null.p_value(100, 0.01, t)
    True
    """

    def __init__(
        self,
        counts: np.ndarray,
        pseudo_count: float,
        samples: int = SAMPLES,
        seed: int = 0,
        background: Background | None = None,
    ) -> None:
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or not len(counts) or not (counts > 0).all():
            raise ValueError("a categorical null needs categories, each seen in the reference")
        self.m = int(counts.sum())
        self.p = counts / self.m
        self.pseudo_count = pseudo_count
        self.smoothed = (counts + pseudo_count) / (self.m + pseudo_count * len(counts))
        self.samples, self.seed = samples, seed
        self._tails: dict[
            tuple[int, float], Future
        ] = {}  # (grid n, alpha) -> its tail curve, computed once
        self._tails_lock = threading.Lock()
        self.background = (
            background  # where `prefetch` computes; one of its own on first use if None
        )

    @property
    def categories(self) -> int:
        return len(self.p)

    def threshold(self, n: int, alpha: float) -> float:
        """The smallest statistic t with P(statistic > t) <= alpha for a window of n records (n on
        the `grid_n` grid), the estimate's sampling error counted against it."""
        return _smallest_within(*self._tail(grid_n(n), alpha), alpha)

    def p_value(self, n: int, alpha: float, statistic: float) -> float:
        """P(statistic' >= statistic) under the null (upper estimate), from the samples drawn for
        (n, alpha): consistent with `threshold` (statistic > threshold exactly when p <= alpha)."""
        sampled, upper = self._tail(grid_n(n), alpha)
        at_least = np.searchsorted(
            -sampled, -statistic, side="right"
        )  # distinct sampled values >= statistic
        return 1.0 if at_least == len(sampled) else float(upper[at_least])

    def prefetch(self, n: int, alpha: float) -> None:
        """Compute (n, alpha)'s tail in the background (`Background`), unless it is known or coming."""
        key = (grid_n(n), alpha)
        with self._tails_lock:
            if key not in self._tails:
                if self.background is None:
                    self.background = Background()
                self._tails[key] = self.background.submit(lambda: self._tail_uncached(*key))
                self._forget_oldest()

    def ready(self, n: int, alpha: float) -> bool:
        """True when (n, alpha)'s tail is computed: `threshold` and `p_value` return at once."""
        future = self._tails.get((grid_n(n), alpha))
        return future is not None and future.done()

    def _tail(self, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """The tail curve for (n, alpha): computed here, unless it is computed or being computed in
        the background (then it is waited for; one still queued there is taken back and computed
        here, rather than waiting behind the rest of the queue)."""
        key = (n, alpha)
        with self._tails_lock:
            future = self._tails.get(key)
            mine = future is None or future.cancel()
            if mine:
                future = self._tails[key] = Future()
                self._forget_oldest()
        if mine:
            try:
                future.set_result(self._tail_uncached(n, alpha))
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def _forget_oldest(self) -> None:
        """Keep at most KEPT_TAILS curves, dropping the oldest finished ones (as the lru_cache it replaces)."""
        finished = (key for key, future in self._tails.items() if future.done())
        for key in [next(finished, None) for _ in range(len(self._tails) - KEPT_TAILS)]:
            if key is not None:
                del self._tails[key]

    def _tail_uncached(self, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(distinct sampled statistics descending, upper estimate of P(statistic > each)): the tail curve."""
        if (
            self.categories == 1
        ):  # every no-drift window is all one category: a single statistic, never exceeded
            return np.array([0.0]), np.array([0.0])
        start = float(special.chdtri(self.categories - 1, alpha))
        statistic, upper = self._sample(n, start)
        estimate = _smallest_within(statistic, upper, alpha)
        if not 0.8 < estimate / start < 1.25:  # aim the proposals at the tail actually found
            statistic, upper = self._sample(n, estimate)
        return statistic, upper

    def _sample(self, n: int, target: float) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        p, C, m, pseudo = self.p, self.categories, self.m, self.pseudo_count
        scale = m / (n + m)  # the monitor's statistic is Pearson's x m/(n+m) (see `stats`)
        plain = target / scale
        # A proposal: (window law, reference law). The window's is ("dm", concentration) or ("mn",
        # probabilities); the reference's is probabilities, or None for the null's own.
        proposals: list[tuple[tuple[str, object], np.ndarray | None]] = []
        # The statistic's mean is about (C - 1) x (the window's count spread + n/m, the
        # reference's) x scale: spreads around the one at which it reaches `target`.
        spread = plain / (C - 1) - n / m
        for factor in SPREADS:
            inflation = max(spread * factor, 1.05)
            if inflation < n:
                proposals.append(
                    (("dm", (n - inflation) / (inflation - 1)), None)
                )  # Var x (n+a)/(1+a)
        for k in range(C):
            # One category's term alone reaching the threshold: its window count raised or lowered;
            # for a category with few reference rows also with fewer of them in the reference (its
            # expected count then shrinks, and the reference's noise is what makes the tail).
            for reference_share in REFERENCE_SHARES if m * p[k] < FEW_REFERENCE_ROWS else (1.0,):
                rows = m * p[k] * reference_share
                expected = n * (rows + pseudo) / (m + pseudo * C)
                for sign in (1.0, -1.0) if reference_share == 1.0 else (1.0,):
                    count = expected + sign * math.sqrt(plain * expected)
                    if 0 < count < n:
                        proposals.append(
                            (
                                ("mn", _with_share(p, k, count / n)),
                                None if reference_share == 1.0 else _with_share(p, k, rows / m),
                            )
                        )
        share = np.full(len(proposals) + 1, (1 - DEFENSIVE_SHARE) / max(len(proposals), 1))
        share[0] = DEFENSIVE_SHARE if proposals else 1.0
        drawn = rng.multinomial(self.samples, share)
        windows, references = (
            [rng.multinomial(n, p, size=drawn[0])],
            [rng.multinomial(m, p, size=drawn[0])],
        )
        for ((kind, parameter), reference_law), size in zip(proposals, drawn[1:]):
            if kind == "dm":
                windows.append(
                    rng.multinomial(n, rng.dirichlet(parameter * p, size=size))
                    if size
                    else np.empty((0, C))
                )
            else:
                windows.append(rng.multinomial(n, parameter, size=size))
            references.append(
                rng.multinomial(m, p if reference_law is None else reference_law, size=size)
            )
        w = np.concatenate(windows).astype(np.float64)
        r = np.concatenate(references).astype(np.float64)
        # log(proposal density / null density) of every (window, reference) under every proposal
        log_ratio = np.zeros((len(w), len(proposals) + 1))
        log_p = np.log(p)
        for j, ((kind, parameter), reference_law) in enumerate(proposals, 1):
            if kind == "mn":
                log_ratio[:, j] = w @ (np.log(parameter) - log_p)
            else:
                a = parameter * p
                log_ratio[:, j] = (
                    special.gammaln(parameter)
                    - special.gammaln(n + parameter)
                    + (special.gammaln(w + a) - special.gammaln(a)).sum(axis=1)
                    - w @ log_p
                )
            if reference_law is not None:
                log_ratio[:, j] += r @ (np.log(reference_law) - log_p)
        weight = np.exp(-special.logsumexp(log_ratio + np.log(share), axis=1))
        # Each window is scored against a reference of m rows drawn from the same frequencies (the
        # two-sample null: a real reference is itself a sample), as the monitor scores it.
        expected = n * (r + pseudo) / (m + pseudo * C)
        statistic = (((w - expected) ** 2) / expected).sum(axis=1) * scale
        order = np.argsort(-statistic, kind="stable")
        statistic, weight = statistic[order], weight[order]
        # tail above each distinct value: sums over the samples strictly greater than it
        first = np.concatenate(([True], np.diff(statistic) != 0))
        values = statistic[first]
        cumulative = (
            np.concatenate(([0.0], np.cumsum(weight)))[np.flatnonzero(first)] / self.samples
        )
        squares = (
            np.concatenate(([0.0], np.cumsum(weight**2)))[np.flatnonzero(first)] / self.samples
        )
        error = np.sqrt(np.maximum(squares - cumulative**2, 0.0) / self.samples)
        upper = np.maximum.accumulate(np.minimum(cumulative + MARGIN_SE * error, 1.0))
        return values, upper


def _with_share(p: np.ndarray, k: int, share: float) -> np.ndarray:
    """p with category k's share set to `share`, the others scaled to keep the sum 1."""
    q = p * (1 - share) / (1 - p[k])
    q[k] = share
    return q


def _smallest_within(statistic: np.ndarray, upper: np.ndarray, alpha: float) -> float:
    """The smallest sampled statistic whose estimated tail (upper[i] = P(> statistic[i]),
    non-decreasing as statistic descends) is at most alpha."""
    return float(statistic[np.searchsorted(upper, alpha, side="right") - 1])
