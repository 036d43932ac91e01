"""The exact categorical null (`monitor.exact`) against plain simulation of the same null."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import special

from monitor import exact
from monitor.exact import PearsonNull, grid_n
from monitor.stats import chi2_statistic
from tests.support import wait_until

CUT = np.array([4292, 2775, 2382, 1004, 335])  # the diamonds reference's cut counts


def fifty(m: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    rare = np.linspace(0.0005, 0.0018, 10)
    shares = np.concatenate([rare, rng.dirichlet(np.full(40, 2.0)) * (1 - rare.sum())])
    return np.maximum(np.round(shares * m), 1).astype(np.int64)


def simulated(counts: np.ndarray, n: int, draws: int, seed: int = 1) -> np.ndarray:
    """Plain simulation of the two-sample null: window and reference both drawn from the frequencies,
    scored with the monitor's statistic (smoothed Pearson x m/(n+m))."""
    rng = np.random.default_rng(seed)
    m, p, out = int(counts.sum()), counts / counts.sum(), []
    for done in range(0, draws, 200_000):
        size = min(200_000, draws - done)
        windows, references = rng.multinomial(n, p, size=size), rng.multinomial(m, p, size=size)
        expected = n * (references + 0.5) / (m + 0.5 * len(p))
        out.append((((windows - expected) ** 2) / expected).sum(axis=1) * m / (n + m))
    return np.concatenate(out)


@pytest.mark.parametrize(
    "counts, n",
    [(CUT, 500), (CUT, 1000), (fifty(200_000), 500), (fifty(5_000), 1000)],
    ids=["cut at 500", "cut at 1,000", "50 categories at 500", "50 categories, 5,000 rows"],
)
def test_threshold_keeps_alpha_against_plain_simulation(counts, n):
    """At alpha 1e-3 (plain simulation of 800,000 draws sees ~800 crossings) the realised rate is
    within [0.5, 1.0] x alpha (3 s.d. of the simulated count allowed), where the chi-square law's
    quantile lets through 1.5 x alpha or more once expected counts are under 1."""
    alpha, draws = 1e-3, 800_000
    threshold = PearsonNull(counts, 0.5).threshold(n, alpha)
    statistics = simulated(counts, n, draws)
    rate = (statistics > threshold).mean()
    law = (statistics > special.chdtri(len(counts) - 1, alpha)).mean()
    slack = 3 * np.sqrt(alpha * draws) / draws
    print(
        f"threshold {threshold:.2f}: rate {rate / alpha:.2f} x alpha; chi-square law's {law / alpha:.2f} x alpha"
    )
    assert 0.5 * alpha - slack <= rate <= alpha + slack
    if (n * counts / counts.sum()).min() < 1:
        assert law > 1.5 * alpha


def test_p_values_agree_with_the_threshold_and_the_statistic():
    null = PearsonNull(CUT, 0.5)
    t = null.threshold(1000, 1e-4)
    assert null.p_value(1000, 1e-4, t) > 1e-4 >= null.p_value(1000, 1e-4, t + 1e-9)
    assert null.p_value(1000, 1e-4, 0.0) == 1.0 and null.p_value(1000, 1e-4, 1e6) == 0.0
    # a window exactly at the reference frequencies: the statistic is near 0, its p-value near 1
    window = np.round(1000 * CUT / CUT.sum())
    statistic, _ = chi2_statistic(CUT, window, np.empty(0))
    assert null.p_value(1000, 1e-4, statistic) > 0.99


def test_seeded_and_cached():
    a, b = PearsonNull(CUT, 0.5), PearsonNull(CUT, 0.5)
    assert a.threshold(500, 1e-5) == b.threshold(
        500, 1e-5
    )  # the same reference: the same threshold at every start
    assert a.threshold(543, 1e-5) == a.threshold(500, 1e-5)  # n on the grid


def test_grid_rounds_down_and_keeps_count_windows_exact():
    assert [grid_n(n) for n in (7, 13, 99, 100, 119, 120, 499, 500, 999, 1000, 1234, 312_345)] == [
        7,
        12,
        90,
        100,
        100,
        120,
        400,
        500,
        900,
        1000,
        1200,
        300_000,
    ]
    assert all(grid_n(n) <= n for n in range(1, 20_000, 7))


def test_one_category_never_alarms_on_its_own_values():
    null = PearsonNull(np.array([50]), 0.5)
    assert null.threshold(1000, 1e-6) == 0.0 and null.p_value(1000, 1e-6, 0.0) == 1.0
    assert null.p_value(1000, 1e-6, 0.5) == 0.0  # any other category is a statistic above 0
    with pytest.raises(ValueError, match="categories"):
        PearsonNull(np.array([3, 0]), 0.5)


class Counting(PearsonNull):
    """A null that counts its tail computations; `gate` holds the background thread inside one."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.computed: list[tuple[int, float, str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def _tail_uncached(self, n, alpha):
        where = threading.current_thread().name
        if where == "exact-nulls":
            self.gate.wait(30)
        self.computed.append((n, alpha, where))
        return super()._tail_uncached(n, alpha)


def test_a_prefetched_tail_is_the_one_computed_on_demand_and_is_computed_once():
    fresh = PearsonNull(CUT, 0.5).threshold(1_000, 1e-5)
    null = Counting(CUT, 0.5)
    null.prefetch(1_000, 1e-5)
    null.prefetch(1_099, 1e-5)  # the same grid point: not queued again
    wait_until(
        lambda: null.ready(1_000, 1e-5),
        30,
        interval=0.01,
        message="the background thread computing the prefetched tail",
    )
    assert null.threshold(1_000, 1e-5) == fresh  # seeded: the same wherever it is computed
    assert null.computed == [(1_000, 1e-5, "exact-nulls")]


def test_the_loop_takes_back_a_queued_tail_instead_of_waiting_behind_the_queue():
    null = Counting(CUT, 0.5)
    null.gate.clear()
    null.prefetch(500, 1e-5)
    wait_until(
        lambda: null._tails[(500, 1e-5)].running(),
        30,
        interval=0.01,
        message="the background thread taking the first job",
    )
    null.prefetch(2_000, 1e-5)  # queued behind a job that cannot finish yet
    threshold = null.threshold(2_000, 1e-5)  # returns: computed here, not waited for
    null.gate.set()
    assert threshold == PearsonNull(CUT, 0.5).threshold(2_000, 1e-5)
    wait_until(lambda: null.ready(500, 1e-5), 30, interval=0.01, message="the held job finishing")
    assert sorted(null.computed) == [(500, 1e-5, "exact-nulls"), (2_000, 1e-5, "MainThread")]


def test_at_most_kept_tails_curves_are_kept(monkeypatch):
    monkeypatch.setattr(exact, "KEPT_TAILS", 3)
    null = PearsonNull(CUT, 0.5, samples=2_000)
    for n in (100, 200, 300, 400, 500):
        null.threshold(n, 1e-3)
    assert list(null._tails) == [(300, 1e-3), (400, 1e-3), (500, 1e-3)]  # the oldest went first
    assert null.threshold(100, 1e-3) == PearsonNull(CUT, 0.5, samples=2_000).threshold(100, 1e-3)
