"""Performance estimates without labels (`monitor.estimate`, fitted by `monitor.nanny`): exact numbers
on seeded references, the calibration rule, the confusion matrix, determinism, the null's false-alarm
rate, a detected drop, and the pane contract (sums, JSON, layout, support)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # no conftest: make monitor importable

from monitor import estimate, nanny  # noqa: E402
from monitor.estimate import ConfidenceEstimator, EstimateNull, LossEstimator  # noqa: E402
from monitor.nanny import fit_estimator  # noqa: E402
from monitor.reference import Reference  # noqa: E402
from monitor.windows import PaneLayout, PredictionBatch  # noqa: E402


def regression_rows(m: int, seed: int, low: float = 0.0) -> dict[str, np.ndarray]:
    """A model whose error grows with x and is twice as large for category b: x in [low, 10]
    (steps of 0.1), c in a/b/c, prediction 2x + 1, label = prediction + noise (sd (1 + x), x2 for b)."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(low, 10.0, m), 1)
    c = rng.choice(np.array(["a", "b", "c"], dtype=object), m, p=[0.5, 0.3, 0.2])
    prediction = 2 * x + 1
    noise = rng.normal(0.0, 1.0, m) * (1 + x) * np.where(c == "b", 2.0, 1.0)
    return {"x": x, "c": c, "prediction": prediction, "label": prediction + noise}


def regression_batch(rows: dict[str, np.ndarray]) -> PredictionBatch:
    n = len(rows["x"])
    return PredictionBatch(
        np.array([str(i) for i in range(n)], dtype=object),
        np.zeros(n, np.int64),
        rows["prediction"],
        {"x": rows["x"]},
        {"c": rows["c"]},
    )


@pytest.fixture(scope="module")
def regression():
    rows = regression_rows(3000, seed=0)
    reference = Reference.from_arrays(
        {"x": rows["x"]}, {"c": rows["c"]}, rows["prediction"], rows["label"]
    )
    fitted = fit_estimator(reference, regression_batch(rows), rows["label"], seed=0)
    return rows, reference, fitted


def binary_rows(m: int, seed: int, calibrated: bool) -> dict[str, np.ndarray]:
    """A binary model's probability of "yes" p ~ U(0, 1), predicted yes when p > 0.5; the labels drawn
    with probability p (calibrated) or 0.5 + (p - 0.5) / 2 (overconfident)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, m)
    truth = p if calibrated else 0.5 + (p - 0.5) / 2
    return {
        "x": rng.normal(0.0, 1.0, m),
        "p": p,
        "predicted": np.where(p > 0.5, "yes", "no").astype(object),
        "label": np.where(rng.random(m) < truth, "yes", "no").astype(object),
    }


def binary_fit(rows: dict[str, np.ndarray], probabilities: bool = True, seed: int = 0):
    m = len(rows["p"])
    given = {"no": 1 - rows["p"], "yes": rows["p"]} if probabilities else {}
    reference = Reference.from_arrays(
        {"x": rows["x"]},
        {},
        rows["predicted"],
        rows["label"],
        task="classification",
        probabilities=given,
        classes=("no", "yes"),
    )
    batch = PredictionBatch(
        np.array([str(i) for i in range(m)], dtype=object),
        np.zeros(m, np.int64),
        rows["predicted"],
        {"x": rows["x"]},
        {},
        given,
    )
    return reference, batch, fit_estimator(reference, batch, rows["label"], seed=seed)


# -- regression: the additive nanny ---------------------------------------------------------------
def test_regression_estimator_exact_numbers(regression):
    rows, reference, fitted = regression
    estimator = fitted.estimator
    assert isinstance(estimator, LossEstimator) and estimator.names == (
        "squared",
        "absolute",
        "outside",
    )
    assert round(estimator.realized_reference, 3) == round(reference.mse, 3) == 89.964
    assert round(estimator.reference_value, 3) == 90.214  # mean out-of-fold estimate
    assert round(fitted.details["mean_in_sample"], 3) == 89.972
    assert round(estimator.threshold(1000, 1e-6), 4) == 0.226
    assert round(estimator.threshold(500, 1e-6), 4) == 0.3037
    values = estimator.per_record(None, PaneLayout(reference).encode(regression_batch(rows)))
    assert rows["x"][:3].tolist() == [6.4, 2.7, 0.4] and rows["c"][:3].tolist() == ["a", "b", "a"]
    # expected squared errors (1 + x)^2, x4 for b: 54.8, 54.8, 1.96
    assert values[:3].round(2).tolist() == [
        [50.47, 5.87, 0.0],
        [59.35, 6.77, 0.0],
        [2.84, 1.32, 0.0],
    ]


def test_tables_reproduce_the_additive_nanny_exactly(regression):
    """The lookup over pane bins is the boosted model itself, not an approximation of it: no tree
    mixes two columns, so each column's function read off the bins sums to the model's output."""
    rows, reference, _ = regression
    layout = PaneLayout(reference)
    encoded = layout.encode(regression_batch(rows))
    X, categorical = nanny._bin_features(layout, encoded)
    squared = (rows["prediction"] - rows["label"]) ** 2
    with threadpool_limits(
        limits=1, user_api="openmp"
    ):  # on every core, a busy machine takes a minute here
        model = nanny._nanny(categorical, 0, len(X)).fit(X, squared)
    table, intercept = nanny._additive_table(model, layout, encoded)
    np.testing.assert_allclose(
        np.exp(intercept + table[encoded.flat].sum(axis=1)), model.predict(X), rtol=1e-9
    )


def test_cross_fitting_is_deterministic():
    rows = regression_rows(1000, seed=2)
    reference = Reference.from_arrays(
        {"x": rows["x"]}, {"c": rows["c"]}, rows["prediction"], rows["label"]
    )
    first, again, other = (
        fit_estimator(reference, regression_batch(rows), rows["label"], seed=seed).estimator
        for seed in (0, 0, 1)
    )
    assert again.fingerprint() == first.fingerprint()
    np.testing.assert_array_equal(again.null.out_of_fold, first.null.out_of_fold)
    np.testing.assert_array_equal(again.tables, first.tables)
    assert other.fingerprint() != first.fingerprint()  # other folds, other out-of-fold estimates


def test_null_false_alarm_rate_is_at_most_alpha(regression):
    """At a loose alpha (1%) and 100-record windows: windows replayed from the reference rows (what
    the simulator sends: the estimator's in-sample values) and windows of new no-drift rows."""
    rows, reference, fitted = regression
    estimator, alpha, n, windows = fitted.estimator, 0.01, 100, 4000
    layout = PaneLayout(reference)
    threshold = estimator.threshold(n, alpha)
    replayed = estimator.per_record(None, layout.encode(regression_batch(rows)))[:, 0]
    fresh = estimator.per_record(
        None, layout.encode(regression_batch(regression_rows(20_000, seed=5)))
    )[:, 0]
    rng = np.random.default_rng(3)
    alarms = []
    for values in (replayed, fresh):
        means = values[rng.integers(0, len(values), (windows, n))].mean(axis=1)
        alarms.append(int((means / estimator.reference_value - 1 > threshold).sum()))
    assert alarms == [30, 29]  # of 4,000 windows: 0.75% and 0.73%, under the 1% budgeted
    assert max(alarms) <= alpha * windows


def test_a_harmful_shift_is_detected_and_a_harmless_one_is_not(regression):
    """New rows with x in [5, 10] (larger errors: realized MSE x1.5) raise the estimate past the
    threshold at 1,000 records; a calm window of new rows does not."""
    rows, reference, fitted = regression
    estimator = fitted.estimator
    layout = PaneLayout(reference)
    results = {}
    for name, low in (("calm", 0.0), ("shifted", 5.0)):
        window = regression_rows(1000, seed=7, low=low)
        sums = estimator.per_record(None, layout.encode(regression_batch(window))).sum(axis=0)
        realized = float(np.mean((window["prediction"] - window["label"]) ** 2))
        results[name] = (estimator.evaluate(sums, 1000, alpha=1e-6), realized)
    calm, shifted = results["calm"][0], results["shifted"][0]
    assert (round(calm.score, 3), calm.detected) == (-0.062, False)
    assert (round(shifted.score, 3), round(shifted.threshold, 4), shifted.detected) == (
        0.59,
        0.226,
        True,
    )
    assert round(shifted.estimate / results["shifted"][1], 3) == 1.063  # estimate / realized MSE
    assert round(results["shifted"][1] / reference.mse, 2) == 1.5


def test_support_flag_and_unseen_categories(regression):
    """Outside the reference's support: x above its maximum, a category it never held. An unseen
    category contributes the reference's average (0 on the log scale) and is flagged."""
    _, reference, fitted = regression
    estimator = fitted.estimator
    rows = {
        "x": np.array([5.0, 20.0, 5.0, 5.0]),
        "c": np.array(["a", "a", "zzz", "b"], dtype=object),
        "prediction": np.array([11.0, 11.0, 11.0, 11.0]),
    }
    values = estimator.per_record(None, PaneLayout(reference).encode(regression_batch(rows)))
    assert values[:, 2].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert values[:, 0].round(2).tolist() == [
        53.73,
        111.14,
        83.49,
        218.66,
    ]  # unseen: between a and b


def test_pane_sums_add_and_survive_json(regression):
    rows, reference, fitted = regression
    estimator = fitted.estimator
    encoded = PaneLayout(reference).encode(regression_batch(rows))
    whole = estimator.per_record(None, encoded).sum(axis=0)
    parts = sum(
        estimator.per_record(None, encoded.rows(a, b)).sum(axis=0)
        for a, b in ((0, 1234), (1234, 3000))
    )
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    restored = estimate.from_dict(json.loads(json.dumps(estimator.to_dict())))
    assert restored.fingerprint() == estimator.fingerprint()
    np.testing.assert_array_equal(
        restored.per_record(None, encoded), estimator.per_record(None, encoded)
    )
    assert restored.threshold(1000, 1e-6) == estimator.threshold(1000, 1e-6)


def test_layout_of_another_reference_is_refused(regression):
    _, reference, fitted = regression
    fitted.estimator.check_layout(PaneLayout(reference).sizes)
    other_rows = regression_rows(500, seed=9, low=5.0)
    other = Reference.from_arrays(
        {"x": other_rows["x"]},
        {"c": other_rows["c"]},
        other_rows["prediction"],
        other_rows["label"],
    )
    with pytest.raises(ValueError, match="another reference"):
        fitted.estimator.check_layout(PaneLayout(other).sizes)


# -- classification: calibrated confidence -------------------------------------------------------
def test_calibration_kept_when_it_lowers_the_held_out_error():
    reference, batch, fitted = binary_fit(binary_rows(4000, seed=1, calibrated=False))
    details = fitted.details["classes"]
    assert details["no"]["calibrated"] and details["yes"]["calibrated"]
    assert (round(details["yes"]["brier_raw"], 4), round(details["yes"]["brier_isotonic"], 4)) == (
        0.2521,
        0.2314,
    )
    # the overconfident model's own probabilities say 24.9% errors; calibrated, the estimate is the realized rate
    raw_error = float(
        np.mean(1 - np.maximum(batch.probabilities["yes"], batch.probabilities["no"]))
    )
    assert (
        round(raw_error, 4),
        round(fitted.estimator.reference_value, 4),
        round(reference.error_rate, 4),
    ) == (0.249, 0.3746, 0.3745)


def test_calibration_rejected_when_the_probabilities_are_already_calibrated():
    reference, _, fitted = binary_fit(binary_rows(4000, seed=1, calibrated=True))
    details = fitted.details["classes"]
    assert not details["no"]["calibrated"] and not details["yes"]["calibrated"]
    assert details["yes"]["brier_isotonic"] > details["yes"]["brier_raw"]
    assert all(np.array_equal(x, y) for x, y in fitted.estimator.knots)  # the raw probabilities
    assert (round(fitted.estimator.reference_value, 4), round(reference.error_rate, 4)) == (
        0.249,
        0.2555,
    )


def test_binary_confusion_matrix_sums():
    rows = binary_rows(4000, seed=1, calibrated=True)
    reference, batch, fitted = binary_fit(rows)
    estimator = fitted.estimator
    assert isinstance(estimator, ConfidenceEstimator)
    assert estimator.names == ("error", "tp", "fp", "fn", "outside")
    values = estimator.per_record(batch, PaneLayout(reference).encode(batch))
    positive = rows["predicted"] == "yes"
    # raw probabilities: a record predicted yes adds p to TP and 1 - p to FP; predicted no, 1 - p to FN
    np.testing.assert_allclose(values[positive, 1], rows["p"][positive])
    np.testing.assert_allclose(values[positive, 2], 1 - rows["p"][positive])
    np.testing.assert_allclose(values[~positive, 3], rows["p"][~positive])
    np.testing.assert_allclose(values[:, 0], values[:, 2] + values[:, 3])
    window = estimator.evaluate(values.sum(axis=0), len(values))
    tp, fp, fn = values[:, 1:4].sum(axis=0)
    assert (round(tp, 2), round(fp, 2), round(fn, 2)) == (1489.11, 495.89, 499.93)
    assert (round(window.precision, 4), round(window.recall, 4), round(window.f1, 4)) == (
        0.7502,
        0.7487,
        0.7494,
    )
    assert round(window.accuracy, 4) == 0.751 and window.outside_share == 0.0
    # the realized confusion matrix of the same rows
    actual = rows["label"] == "yes"
    assert (
        int((positive & actual).sum()),
        int((positive & ~actual).sum()),
        int((~positive & actual).sum()),
    ) == (1484, 501, 521)


def test_a_binary_model_carrying_one_probability_gets_the_same_estimate():
    rows = binary_rows(1000, seed=2, calibrated=True)
    reference, batch, fitted = binary_fit(rows)
    encoded = PaneLayout(reference).encode(batch)
    only_yes = PredictionBatch(
        batch.ids, batch.ts, batch.predictions, batch.numeric, {}, {"yes": rows["p"]}
    )
    np.testing.assert_allclose(
        fitted.estimator.per_record(only_yes, encoded)[:, :4],
        fitted.estimator.per_record(batch, encoded)[:, :4],
    )


def test_multiclass_top_label():
    rng = np.random.default_rng(4)
    m, classes = 3000, ("a", "b", "c")
    probabilities = rng.dirichlet([1.0, 1.0, 1.0], m)
    predicted = np.array(classes, dtype=object)[probabilities.argmax(axis=1)]
    labels = np.array(classes, dtype=object)[[rng.choice(3, p=p) for p in probabilities]]
    given = {c: probabilities[:, k] for k, c in enumerate(classes)}
    reference = Reference.from_arrays(
        {"x": rng.normal(0.0, 1.0, m)},
        {},
        predicted,
        labels,
        task="classification",
        probabilities=given,
        classes=classes,
    )
    batch = PredictionBatch(
        np.array([str(i) for i in range(m)], dtype=object),
        np.zeros(m, np.int64),
        predicted,
        {"x": rng.normal(0.0, 1.0, m)},
        {},
        given,
    )
    estimator = fit_estimator(reference, batch, labels, seed=0).estimator
    assert estimator.names == ("error", "outside") and estimator.positive is None
    window = estimator.evaluate(
        estimator.per_record(batch, PaneLayout(reference).encode(batch)).sum(axis=0), m
    )
    assert (round(window.estimate, 4), round(reference.error_rate, 4), window.precision) == (
        0.3841,
        0.383,
        None,
    )


def test_a_classifier_without_probabilities_gets_no_estimator():
    rows = binary_rows(500, seed=3, calibrated=True)
    _, _, fitted = binary_fit(rows, probabilities=False)
    assert fitted.estimator is None
    assert "carry no class probabilities" in fitted.reason


def test_null_is_one_sided_and_conservative_on_its_grid():
    values = np.random.default_rng(0).gamma(0.5, 2.0, 5000)
    null = EstimateNull(values)
    # n and alpha are rounded down on the grid: a threshold at least as high as the exact one
    assert null.threshold(1234, 1.8e-6) == null.threshold(1230, 1.7e-6)
    assert null.threshold(1234, 1.8e-6) > null.threshold(1234, 1e-3) > null.threshold(5000, 1e-3)
    with pytest.raises(ValueError, match="alpha"):
        null.threshold(1000, 0.7)
    with pytest.raises(ValueError, match="not all equal"):
        EstimateNull(np.ones(10))


def test_estimate_is_pure():
    code = (
        "import sys; import monitor.estimate; "
        "bad = [m for m in ('pandas', 'sklearn', 'confluent_kafka', 'prometheus_client') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
