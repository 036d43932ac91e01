"""The error tests on joined records (`monitor.errortest`): exact numbers on seeded data, the
realized false-alarm rate against references drawn independently of the windows, detection of a
concept change, insensitivity to an input shift, and panes that merge by addition."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, special

from monitor import errortest
from monitor.errortest import ConfidenceWeightedErrors, ResidualKS

ROOT = Path(__file__).resolve().parents[2]


def regression_population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels): prices with multiplicative errors, so big prices carry big errors,
    and the bias changes with the prediction (given a high prediction, the price tends to be
    lower)."""
    truth = rng.gamma(2.0, 1000.0, n)
    return truth * rng.lognormal(0.0, 0.1, n), truth


def classifier_population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(misclassified, confidence) of a calibrated binary model: wrong with probability 1 - c."""
    confidence = rng.uniform(0.5, 1.0, n)
    return rng.random(n) > confidence, confidence


def test_scales_per_window_size():
    assert errortest.scales(4) == (("window", 4), ("recent", 2), ("pane", 1))
    assert errortest.scales(5) == (("window", 5), ("recent", 2), ("pane", 1))
    assert errortest.scales(3) == (("window", 3), ("recent", 1))  # its newest half: the newest pane
    assert errortest.scales(1) == (("window", 1),)
    assert [errortest.tests(p) for p in (1, 2, 3, 4, 30)] == [1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="at least one pane"):
        errortest.scales(0)


def test_scale_counts_sum_the_newest_panes():
    panes = [np.array([1, 0, 2]), np.array([0, 3, 0]), np.array([4, 0, 0]), np.array([0, 0, 5])]
    counts = errortest.scale_counts(panes)
    assert {k: v.tolist() for k, v in counts.items()} == {
        "window": [5, 3, 7],
        "recent": [4, 0, 5],
        "pane": [0, 0, 5],
    }


def test_confidence_is_the_top_class_probability():
    assert errortest.confidence([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]]).tolist() == [0.5, 0.9]
    # a binary model whose messages carry one class's probability
    assert errortest.confidence([0.2, 0.7]).tolist() == [0.8, 0.7]


def test_residual_ks_exact_numbers():
    rng = np.random.default_rng(7)
    test = ResidualKS(*regression_population(rng, 3000), bins=50)
    assert (test.size, len(test.scale)) == (50, 6)  # 6 cells of 500 rows
    # the model's bias and spread change with its prediction: over-predicting its highest prices
    assert np.round(test.centre, 1).tolist() == [-9.3, -15.5, -17.5, -18.6, -1.0, 68.5]
    assert np.round(test.scale, 1).tolist() == [35.5, 69.4, 109.1, 150.5, 193.0, 355.3]
    bins = test.bin_index(np.array([100.0, 2000.0, 5000.0]), np.array([100.0, 1900.0, 5600.0]))
    assert bins.tolist() == [28, 36, 3]
    window = test.counts(*regression_population(rng, 1000))
    assert int(window.sum()) == 1000
    statistic = test.statistic(window)
    assert round(statistic, 4) == 0.031
    assert round(test.threshold(1000, 1e-6), 4) == 0.0979
    assert round(test.p_value(statistic, 1000), 4) == 0.4611
    assert np.isnan(test.statistic(np.zeros(test.size)))


def test_residual_ks_detects_labels_five_percent_higher():
    rng = np.random.default_rng(3)
    test = ResidualKS(*regression_population(rng, 5000))
    predictions, labels = regression_population(rng, 1000)
    calm = test.statistic(test.counts(predictions, labels))
    inflated = test.statistic(test.counts(predictions, labels * 1.05))
    threshold = test.threshold(1000, 1e-6)
    assert (round(calm, 4), round(inflated, 4), round(threshold, 4)) == (0.034, 0.203, 0.0929)
    assert calm < threshold < inflated


def test_residual_ks_is_about_the_label_given_the_prediction():
    """A window of only the highest (or lowest) predictions, the relation unchanged: the raw errors'
    distribution moves (big prices, big errors), the standardized one does not."""
    rng = np.random.default_rng(11)
    test = ResidualKS(*regression_population(rng, 10_000))
    predictions, labels = regression_population(rng, 30_000)
    threshold = test.threshold(1000, 1e-6)
    ratios = []
    high, low = np.quantile(predictions, [0.9, 1 / 3])
    for chosen in (predictions > high, predictions < low):
        counts = test.counts(predictions[chosen][:1000], labels[chosen][:1000])
        ratios.append(round(test.statistic(counts) / threshold, 2))
    assert ratios == [0.46, 0.37]
    # without cells (one level: the signed errors centred and scaled once) the top decile is flagged
    plain = ResidualKS(*regression_population(np.random.default_rng(11), 10_000), levels=1)
    top = predictions > high
    counts = plain.counts(predictions[top][:1000], labels[top][:1000])
    assert round(plain.statistic(counts) / plain.threshold(1000, 1e-6), 2) == 3.38


def test_weighted_errors_exact_numbers():
    rng = np.random.default_rng(7)
    test = ConfidenceWeightedErrors(*classifier_population(rng, 2000), bins=10)
    assert test.size == 20
    assert np.round(test.weights, 3).tolist() == [
        0.747,
        0.861,
        0.987,
        1.119,
        1.283,
        1.477,
        1.747,
        2.087,
        2.585,
        3.647,
    ]
    assert round(test.reference_value, 4) == 0.3091
    # bin 2k + e: (k=0, right), (k=9, wrong), (k=5, wrong)
    predicted, labels = np.array(["a", "b", "a"]), np.array(["a", "a", "b"])
    bins = test.bin_index(predicted, labels, np.array([0.55, 0.99, 0.75]))
    assert bins.tolist() == [0, 19, 11]
    # the null's sample smooths each cell's error rate (Jeffreys): 0.5129, 0.4578, 0.4226 without
    assert [round(test.threshold(n, 1e-6), 4) for n in (250, 500, 1000)] == [0.5171, 0.4615, 0.426]
    wrong, confidence = classifier_population(rng, 500)
    assert round(test.statistic(test.counts(wrong, None, confidence)), 4) == 0.3146


@pytest.mark.parametrize(
    "share, weighted_hits, plain_hits",  # weighted 7, 39, 49 with the plug-in null
    [(0.1, 4, 1), (0.15, 36, 3), (0.2, 49, 20)],
)
def test_weighted_errors_detect_flipped_labels_the_error_rate_misses(
    share, weighted_hits, plain_hits
):
    """A share of labels flipped in 50 windows of 500 records, alpha 1e-6: the weighted errors flag
    far more windows than the plain error rate (the same test with every weight 1). Flips turn
    right answers into errors where the model is confident: there errors are rare, weigh most."""
    rng = np.random.default_rng(5)
    wrong, confidence = classifier_population(rng, 2000)
    weighted, plain = ConfidenceWeightedErrors(wrong, confidence), ConfidenceWeightedErrors(wrong)
    hits = [0, 0]
    for _ in range(50):
        late_wrong, late_confidence = classifier_population(rng, 500)
        flipped = late_wrong ^ (rng.random(500) < share)
        weighted_counts = weighted.counts(flipped, None, late_confidence)
        hits[0] += weighted.statistic(weighted_counts) > weighted.threshold(500, 1e-6)
        hits[1] += plain.statistic(plain.counts(flipped, None)) > plain.threshold(500, 1e-6)
    assert hits == [weighted_hits, plain_hits]


def test_weighted_errors_without_confidence_is_the_error_rate():
    wrong = np.arange(1000) % 4 == 0
    test = ConfidenceWeightedErrors(wrong)
    assert (test.size, test.weights.tolist(), test.reference_value) == (2, [1.0], 0.25)
    window = test.counts(np.array(["a"] * 30 + ["b"] * 10), np.array(["a"] * 40))
    assert window.tolist() == [30, 10] and test.statistic(window) == 0.25


def test_a_reference_without_errors_keeps_a_finite_threshold():
    test = ConfidenceWeightedErrors(np.zeros(500, bool), np.linspace(0.5, 0.99, 500), bins=5)
    assert len(test.values) == 501  # half an error at the mean weight
    threshold = test.threshold(500, 1e-6)
    assert 0 < threshold < 1
    assert test.statistic(test.counts(np.zeros(100, bool), None, np.full(100, 0.9))) == 0.0


def test_thresholds_round_conservatively():
    rng = np.random.default_rng(1)
    test = ConfidenceWeightedErrors(*classifier_population(rng, 1500))
    assert test.threshold(1234, 1e-6) == test.threshold(1230, 1e-6)  # n on a grid, rounded down
    assert test.threshold(1230, 1e-6) >= test.threshold(1240, 1e-6)
    assert test.threshold(500, 1e-6) == test.threshold(500, 0.9e-6 + 0.1e-6)
    assert test.threshold(250, 1e-6) > test.threshold(500, 1e-6) > test.threshold(1000, 1e-6)
    assert test.threshold(500, 1e-7) > test.threshold(500, 1e-6)


def test_panes_merge_by_addition():
    """Three workers' counts of their shares of the joined records add up to one monitor's."""
    rng = np.random.default_rng(2)
    test = ResidualKS(*regression_population(rng, 3000))
    predictions, labels = regression_population(rng, 900)
    worker = rng.integers(0, 3, 900)
    merged = sum(test.counts(predictions[worker == w], labels[worker == w]) for w in range(3))
    assert merged.dtype == np.int64
    assert np.array_equal(merged, test.counts(predictions, labels))


def test_evaluate_reports_the_scale_with_the_largest_ratio():
    rng = np.random.default_rng(4)
    test = ResidualKS(*regression_population(rng, 5000))
    panes = [test.counts(*regression_population(rng, 250)) for _ in range(3)]
    predictions, labels = regression_population(rng, 250)
    panes.append(test.counts(predictions, labels * 1.1))  # the newest pane's labels 10% higher
    result = test.evaluate(errortest.scale_counts(panes), 1e-6)
    assert (result.scale, result.records, result.detected) == ("pane", 250, True)
    assert result.statistic > result.threshold
    assert (result.test, result.reference) == ("residual_ks", 0.0)
    assert test.evaluate({"window": panes[0]}, 1e-6, min_records=300) is None  # too few records


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_realized_false_alarm_rate_is_within_alpha(task):
    """References and windows drawn independently from one population, so the reference's own
    sampling error is in the check (a window resampled from the reference rows would have none):
    100 references x 4 windows of 250, 500 and 1,000 records, alpha 0.02 per test."""
    rng = np.random.default_rng(2026)
    alpha, alarms, evaluations = 0.02, 0, 0
    for _ in range(100):
        if task == "regression":
            test = ResidualKS(*regression_population(rng, 2000))
        else:
            wrong, confidence = classifier_population(rng, 1000)
            test = ConfidenceWeightedErrors(wrong, confidence)
        for _ in range(4):
            for n in (250, 500, 1000):
                if task == "regression":
                    counts = test.counts(*regression_population(rng, n))
                else:
                    wrong, confidence = classifier_population(rng, n)
                    counts = test.counts(wrong, None, confidence)
                alarms += test.statistic(counts) > test.threshold(n, alpha)
                evaluations += 1
    assert evaluations == 1200
    # classification: 15 with the plug-in null (the reference's own values), 5 smoothed
    assert alarms == {"regression": 21, "classification": 5}[task]
    assert alarms <= alpha * evaluations


def upper_tail(values: np.ndarray, n: int, t: float) -> float:
    """P(mean of n draws from `values` > t), t above their mean: the Lugannani-Rice saddlepoint tail,
    the forward twin of `stats.mean_upper_quantile`."""
    u, c = np.unique(values, return_counts=True)
    p = c / c.sum()
    if t >= u.max():
        return 0.0

    def cumulants(s: float) -> tuple[float, float, float]:
        w = p * np.exp(s * (u - u.max()))
        mean = float(w @ u / w.sum())
        return s * u.max() + math.log(w.sum()), mean, float(w @ (u - mean) ** 2 / w.sum())

    s = optimize.brentq(lambda s: cumulants(s)[1] - t, 1e-12, 1e3)
    k, _, var = cumulants(s)
    r, w = math.sqrt(2 * n * (s * t - k)), s * math.sqrt(n * var)
    return float(special.ndtr(-r) + math.exp(-r * r / 2) / math.sqrt(2 * math.pi) * (1 / w - 1 / r))


def test_the_smoothed_null_keeps_the_budget_when_the_reference_is_a_sample():
    """The expected false-alarm rate over references of 1,000 rows drawn from a population of
    20,000: the mean over 400 references of P(window statistic > that reference's threshold), the
    window's statistic a mean of n draws from the population under the reference's cells and
    weights, its tail computed (saddlepoint), so alpha down to 1e-5 is reachable without counting
    alarms. The plug-in null (the reference's own values) exceeds alpha; Jeffreys' smoothing of
    each cell's error rate keeps well under it."""
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.5, 1.0, 20_000)
    wrong = rng.random(20_000) > confidence
    rates: dict[tuple[str, float, int], float] = {}
    for _ in range(400):
        drawn = rng.integers(0, 20_000, 1000)
        smoothed = ConfidenceWeightedErrors(wrong[drawn], confidence[drawn])
        plug_in = ConfidenceWeightedErrors(wrong[drawn], confidence[drawn])
        plug_in.null_values = plug_in.values
        for name, test in (("smoothed", smoothed), ("plug-in", plug_in)):
            population = np.where(wrong, test.weights[test._cell(confidence)], 0.0)
            for alpha in (1e-3, 1e-5):
                for n in (250, 1000):
                    tail = upper_tail(population, n, test.threshold(n, alpha))
                    rates[name, alpha, n] = rates.get((name, alpha, n), 0.0) + tail / 400 / alpha
    assert {k: round(v, 2) for k, v in rates.items()} == {
        ("smoothed", 1e-3, 250): 0.36,
        ("smoothed", 1e-3, 1000): 0.17,
        ("smoothed", 1e-5, 250): 0.24,
        ("smoothed", 1e-5, 1000): 0.05,
        ("plug-in", 1e-3, 250): 1.28,
        ("plug-in", 1e-3, 1000): 1.35,
        ("plug-in", 1e-5, 250): 1.66,
        ("plug-in", 1e-5, 1000): 1.34,
    }


def test_from_reference_picks_the_test_for_the_task():
    rng = np.random.default_rng(0)
    regression = errortest.from_reference("regression", *regression_population(rng, 1000))
    assert isinstance(regression, ResidualKS)
    classes = rng.choice(["no", "yes"], 1000)
    labels = np.where(rng.random(1000) < 0.2, "no", classes)
    test = errortest.from_reference("classification", classes, labels, rng.uniform(0.5, 1.0, 1000))
    assert isinstance(test, ConfidenceWeightedErrors) and test.size == 40
    with pytest.raises(ValueError, match="task"):
        errortest.from_reference("ranking", classes, classes)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ResidualKS([1.0], [1.0]), "m >= 2"),
        (lambda: ResidualKS([1.0, np.nan], [1.0, 2.0]), "finite"),
        (lambda: ResidualKS([1.0, 2.0], [1.0, 2.0], bins=1), "bins"),
        (lambda: ConfidenceWeightedErrors([True]), "m >= 2"),
        (lambda: ConfidenceWeightedErrors([True, False], [0.9]), "confidences"),
        (lambda: ConfidenceWeightedErrors([True, False], bins=0), "bins"),
    ],
)
def test_bad_references_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_imports_no_io_libraries():
    code = (
        "import sys; import monitor.errortest; "
        "bad = [m for m in ('pandas', 'confluent_kafka', 'prometheus_client', 'flask') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
