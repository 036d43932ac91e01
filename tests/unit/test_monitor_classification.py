"""A classifier's monitor on a generated reference: prediction, probability and concept drift, no broker.

The reference is a made-up three-class model (classes a, b and rare: 2% of predictions, 8% of
labels) on two numeric features (x1 continuous, x2 ten integer values) and one categorical
feature (color, one rare category), with class probabilities. Streams are resampled from its rows,
so a calm stream is the reference itself; scenarios change one thing from record ONSET on.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from monitor import stats
from monitor.calibration import Calibration
from monitor.columns import column_tests
from monitor.drift import DriftMonitor, DriftResult
from monitor.reference import Reference
from monitor.windows import CountWindow, PredictionBatch
from tests.support import first_alarm

CLASSES = ("a", "b", "rare")
COLORS = np.array(["red", "green", "blue", "violet"], dtype=object)
NUMERIC, CATEGORICAL = ("x1", "x2"), ("color",)
M = 6000
ONSET = 5000


def generate(m: int, seed: int) -> dict[str, np.ndarray]:
    """m rows of the made-up model: features, class probabilities (a softmax of scores), the
    predicted class (the most probable) and a label drawn from the probabilities."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, m)
    x2 = rng.integers(0, 10, m).astype(np.float64)
    color = COLORS[rng.choice(4, m, p=[0.5, 0.3, 0.18, 0.02])]
    scores = np.stack(
        [
            1.5 * x1,
            -1.5 * x1 + 0.1 * x2,
            0.5 * x2 - 4.0 + 4.0 * (color == "violet") + 1.5 * (x1 > 1.8),
        ],
        axis=1,
    )
    proba = np.exp(scores - scores.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    classes = np.array(CLASSES, dtype=object)
    label = classes[(rng.random(m)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)]
    return {
        "x1": x1,
        "x2": x2,
        "color": color,
        "prediction": classes[proba.argmax(axis=1)],
        "label": label,
        **{c: proba[:, i] for i, c in enumerate(CLASSES)},
    }


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    return generate(M, seed=0)


@pytest.fixture(scope="module")
def reference(rows) -> Reference:
    return Reference.from_arrays(
        {c: rows[c] for c in NUMERIC},
        {c: rows[c] for c in CATEGORICAL},
        rows["prediction"],
        rows["label"],
        task="classification",
        probabilities={c: rows[c] for c in CLASSES},
        classes=CLASSES,
    )


def stream(
    rows: dict, n: int, seed: int, scenario: str | None = None, onset: int = ONSET
) -> dict[str, np.ndarray]:
    """n records resampled from the reference rows; `scenario` changes records from `onset` on."""
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, M, n)
    cols = {c: v[picked].copy() for c, v in rows.items()}
    cols["id"] = np.array([f"{seed}-{i}" for i in range(n)], dtype=object)
    cols["ts"] = np.arange(n, dtype=np.int64) * 100
    after = slice(onset, None)
    if (
        scenario == "label_flip"
    ):  # 20% of labels replaced by another class: the model is now wrong more often
        flip = np.flatnonzero(rng.random(n - onset) < 0.2) + onset
        shift = rng.integers(1, 3, len(flip))
        cols["label"][flip] = np.array(CLASSES, dtype=object)[
            (np.searchsorted(CLASSES, cols["label"][flip].astype(str)) + shift) % 3
        ]
    elif scenario == "x1_shift":  # one feature moves; the model's outputs are left as they were
        cols["x1"][after] += 0.4
    elif scenario == "class_mix":  # a third of the "a" predictions become "b" (features unchanged)
        moved = (cols["prediction"] == "a") & (rng.random(n) < 1 / 3)
        moved[:onset] = False
        cols["prediction"][moved] = "b"
    elif scenario == "proba_b":  # the model grows more confident in b: p(b) -> p(b) ** 0.6
        cols["b"][after] = cols["b"][after] ** 0.6
    elif (
        scenario == "unseen"
    ):  # 5% of predictions and 5% of labels name a class the model does not know
        cols["prediction"][onset:][rng.random(n - onset) < 0.05] = "zzz"
        cols["label"][onset:][rng.random(n - onset) < 0.05] = "unknown"
    return cols


def batch_of(cols: dict, part: slice) -> PredictionBatch:
    return PredictionBatch(
        cols["id"][part],
        cols["ts"][part],
        cols["prediction"][part],
        {c: cols[c][part] for c in NUMERIC},
        {c: cols[c][part] for c in CATEGORICAL},
        {c: cols[c][part] for c in CLASSES},
    )


def feed(
    monitor: DriftMonitor, cols: dict, batch: int = 250, labels: bool = True
) -> list[DriftResult]:
    results = []
    for start in range(0, len(cols["id"]), batch):
        part = slice(start, start + batch)
        results += monitor.update(batch_of(cols, part))
        if labels:
            monitor.update_labels(cols["id"][part], cols["ts"][part], cols["label"][part])
    return results


def flagged(result: DriftResult) -> set[str]:
    return {f.name for f in (*result.features, *result.outputs) if f.detected}


def test_reference_profiles_the_outputs(rows, reference):
    assert reference.classification and reference.classes == CLASSES
    assert reference.features == ("x1", "x2", "color")
    assert reference.outputs == ("prediction", "p(a)", "p(b)", "p(rare)")
    assert reference.prediction.categories.tolist() == ["a", "b", "rare"]
    assert reference.prediction.counts.tolist() == [2551, 3319, 130]  # rare: 2.2% of predictions
    assert (
        reference.error_rate == pytest.approx(1279 / 6000) and reference.mse == reference.error_rate
    )
    # KS columns then chi-square columns: numeric features, probabilities | categorical, predicted class
    assert list(reference.layout) == ["x1", "x2", "p(a)", "p(b)", "p(rare)", "color", "prediction"]
    assert reference.numeric["x2"].exact and not reference.probabilities["b"].exact
    with pytest.raises(ValueError, match="output column"):
        Reference.from_arrays(
            {"prediction": rows["x1"]}, {}, rows["prediction"], rows["label"], task="classification"
        )
    with pytest.raises(ValueError, match="classification"):
        Reference.from_arrays(
            {"x1": rows["x1"]}, {}, rows["x1"], rows["x1"], probabilities={"a": rows["a"]}
        )


def test_calm_stream_flags_nothing(rows, reference):
    monitor = DriftMonitor(reference, CountWindow(reference))
    assert monitor.calibration.tests == 2 * (3 + 4) + 1
    results = feed(monitor, stream(rows, 100_000, seed=1), batch=500)
    assert len(results) == 400 and not any(r.drift_detected for r in results)
    ready = [r for r in results if r.ready]
    assert len(ready) == 397
    last = ready[-1]
    assert [(o.name, o.test) for o in last.outputs] == [
        ("prediction", "chi2"),
        ("p(a)", "ks"),
        ("p(b)", "ks"),
        ("p(rare)", "ks"),
    ]
    assert [f.name for f in last.features] == ["x1", "x2", "color"]
    worst_feature = max(f.statistic / f.threshold for r in ready for f in r.features)
    worst_output = max(o.statistic / o.threshold for r in ready for o in r.outputs)
    worst_concept = max(r.concept_drift / r.concept_threshold for r in ready)
    print(
        f"calm worst feature/threshold {worst_feature:.3f}, output {worst_output:.3f}, concept {worst_concept:.3f}"
    )
    assert worst_feature < 1 and worst_output < 1 and worst_concept < 1
    assert last.rolling_error_rate == pytest.approx(last.reference_error_rate, abs=0.05)
    assert last.rolling_mse is None and last.reference_mse is None  # regression's fields stay empty


def test_label_flips_flag_concept_drift_and_no_feature(rows, reference):
    monitor = DriftMonitor(reference, CountWindow(reference))
    results = feed(monitor, stream(rows, ONSET + 3000, seed=2, scenario="label_flip"))
    index, alarm = first_alarm(results, ONSET)
    assert index == 750  # the rolling error rate covers the latest 750-1,000 joined records
    assert alarm.concept_detected and flagged(alarm) == set()
    assert not any(r.dataset_detected or r.prediction_detected for r in results if r.ready)
    last = results[-1]
    # 20% flipped: a right prediction turns wrong, a wrong one right only when flipped to the prediction
    assert last.rolling_error_rate == pytest.approx(
        0.2132 + 0.2 * (1 - 0.2132) - 0.2 * 0.2132 / 2, abs=0.04
    )
    assert last.concept_drift > last.concept_threshold > 0


@pytest.mark.parametrize(
    "scenario, after, columns",
    [("x1_shift", 500, {"x1"}), ("class_mix", 500, {"prediction"}), ("proba_b", 500, {"p(b)"})],
)
def test_one_change_flags_its_column_only(rows, reference, scenario, after, columns):
    monitor = DriftMonitor(reference, CountWindow(reference))
    index, alarm = first_alarm(
        feed(monitor, stream(rows, ONSET + 2000, seed=3, scenario=scenario)), ONSET
    )
    assert index == after and flagged(alarm) == columns
    assert not alarm.concept_detected
    assert alarm.dataset_detected == (columns == {"x1"})
    assert alarm.prediction_detected == (
        columns != {"x1"}
    )  # the prediction OR a probability column
    prediction = alarm.outputs[0]
    assert (alarm.prediction_drift, alarm.prediction_threshold) == (
        prediction.statistic,
        prediction.threshold,
    )
    if columns == {
        "p(b)"
    }:  # a probability flagged: prediction_detected, the prediction column itself calm
        assert not prediction.detected and alarm.prediction_drift < alarm.prediction_threshold
    if columns != {"x1"}:  # features-only fields never include the outputs
        assert alarm.share_detected == 0 and not alarm.dataset_detected


def test_unseen_predicted_class_and_label_are_counted(rows, reference):
    monitor = DriftMonitor(reference, CountWindow(reference))
    cols = stream(rows, ONSET + 2000, seed=4, scenario="unseen")
    results = feed(monitor, cols)
    last = results[-1]
    assert monitor.window.panes[last.pane].unseen["prediction"]["zzz"] > 0
    prediction = last.outputs[0]
    assert (
        math.isfinite(prediction.statistic) and prediction.statistic > 100 and prediction.detected
    )
    assert monitor.counters["unseen_labels"] == int((cols["label"] == "unknown").sum()) == 98
    assert not any(f.detected for f in last.features)
    # a label the model cannot predict joins as a misclassification
    assert monitor.counters["joined"] == len(cols["id"])
    state = json.loads(json.dumps(monitor.to_dict()))
    restored = DriftMonitor(reference, CountWindow(reference))
    restored.load_dict(state)
    assert restored.counters == monitor.counters and restored.result() == monitor.result()


def test_error_rate_threshold_is_the_binomial_quantile(reference):
    calibration = Calibration(reference)
    m, p = reference.size, reference.error_rate
    for joined, alpha in (
        (1000, 2.0**-20),
        (400, 2.0**-8),
        (250, 0.25),
    ):  # alphas on the cache grid
        en = joined * m // (joined + m)
        x = sps.binom.isf(alpha, en, p)
        assert sps.binom.sf(x, en, p) <= alpha < sps.binom.sf(x - 1, en, p)
        assert calibration.error_rate_ratio(joined, alpha) == (x / en - p) / p
    # at the defaults: alpha = 250 / 1e7 / 15 = 1.67e-6, cached at the grid point below it
    # (2**-19.25 = 1.60e-6); joined = 1000, en = 857: an alarm above 240 errors in 857, 28.0%
    t = calibration.thresholds(1000, 250)
    grid = 2.0 ** (math.floor(math.log2(250 / 1e7 / 15) * 4) / 4)
    assert t["tests"] == 15 and grid == 2.0**-19.25 and sps.binom.isf(grid, 857, p) == 240
    assert t["error_rate_ratio"] == (240 / 857 - p) / p == pytest.approx(0.31375, abs=1e-5)
    # the predicted class's thresholds: its exact null at each scale's n (monitor.exact)
    alpha = t["alpha_per_test"]
    assert (t["prediction"], t["recent"]["prediction"]) == (
        calibration.chi2("prediction", 1000, alpha),
        calibration.chi2("prediction", 500, alpha),
    )
    # off the grid, joined and alpha round down: the threshold can only rise
    assert (
        calibration.error_rate_ratio(1234, 3e-6)
        >= (sps.binom.isf(3e-6, 1234 * m // (1234 + m), p) / (1234 * m // (1234 + m)) - p) / p
        - 1e-12
    )


def test_reference_without_errors_is_floored_not_divided_by_zero(rows):
    perfect = Reference.from_arrays(
        {"x1": rows["x1"]},
        {},
        rows["prediction"],
        rows["prediction"],
        task="classification",
        classes=CLASSES,
    )
    assert perfect.error_rate == 0.0
    monitor = DriftMonitor(perfect, CountWindow(perfect))
    assert monitor.calibration.baseline_error_rate == 0.5 / M
    cols = stream(rows, 2000, seed=5)
    results = feed(monitor, cols)
    last = results[-1]
    assert last.reference_error_rate == 0.0 and last.rolling_error_rate > 0.15
    assert (
        math.isfinite(last.concept_drift)
        and math.isfinite(last.concept_threshold)
        and last.concept_detected
    )
    assert last.concept_drift == pytest.approx(last.rolling_error_rate / (0.5 / M) - 1)


def test_concept_false_alarm_rate_at_most_alpha(rows, reference):
    """Independent 1,000-record windows resampled from the reference rows at alpha = 2**-5 (a loose
    budget, alarms countable): the exact binomial threshold at en = n*m/(n+m) must not alarm more
    than alpha; nor the monitor on a calm stream at ert = 600 (alpha(250) = 250 / 600 / 15)."""
    calibration = Calibration(reference)
    errors = reference.squared_errors  # 0/1 per reference row
    rng = np.random.default_rng(6)
    alpha = 2.0**-5
    rates = errors[rng.integers(0, M, (4000, 1000))].mean(axis=1)
    threshold = calibration.error_rate_ratio(1000, alpha)
    realised = float(((rates - reference.error_rate) / reference.error_rate > threshold).mean())
    print("error-rate false-alarm rate", realised, "alpha", alpha)
    assert 0 < realised <= alpha

    monitor = DriftMonitor(reference, CountWindow(reference), ert=600)
    budget = monitor.calibration.alpha(250)
    assert budget == pytest.approx(250 / 600 / 15)
    judged = [
        r
        for r in feed(monitor, stream(rows, 200_000, seed=7), batch=1000)
        if r.concept_detected is not None
    ]
    alarms = sum(r.concept_detected for r in judged)
    print("monitor concept false alarms", alarms, "of", len(judged), "alpha", budget)
    assert (
        len(judged) == 796 and 0 < alarms / len(judged) <= budget
    )  # the first 4: no label joined yet


@pytest.mark.parametrize("mode", ["calibrated", "fixed"])
def test_vectorised_tests_equal_the_per_column_statistics(rows, reference, mode):
    monitor = DriftMonitor(reference, CountWindow(reference), mode=mode)
    last = feed(monitor, stream(rows, ONSET + 1000, seed=8, scenario="unseen"))[-1]
    layout, calibration = monitor.window.layout, monitor.calibration
    panes = [
        monitor.window.aggregate(last.pane),
        monitor.window.aggregate(last.pane, 2),
        layout.empty(0),
    ]
    assert panes[0].unseen["prediction"]["zzz"] > 0
    alpha = last.alpha or 0.0
    tested = column_tests(layout, calibration, panes, alpha)
    assert tested.names == (*reference.features, *reference.outputs) and tested.statistic.shape == (
        3,
        7,
    )
    assert tested.tests == ("ks", "ks", "chi2", "chi2", "ks", "ks", "ks")
    for s, pane in enumerate(panes[:2]):
        for c, name in enumerate(tested.names):
            counts = pane.counts[layout.slices[name]]
            if tested.tests[c] == "chi2":
                profile = layout.chi2_columns[name]
                unseen = np.fromiter(pane.unseen.get(name, {}).values(), dtype=np.float64)
                x2, dof = stats.chi2_statistic(
                    profile.counts, counts, unseen, calibration.pseudo_count
                )
                tv = stats.total_variation(profile.counts, counts, int(unseen.sum()))
                expected = (
                    (
                        x2,
                        tv,
                        calibration.chi2_p_value(name, pane.records, alpha, x2),
                        calibration.chi2(name, pane.records, alpha),
                    )
                    if calibration.calibrated
                    else (x2, tv, stats.chi2_pvalue(x2, dof), calibration.fixed_threshold)
                )
            else:
                bins = layout.ks_columns[name]
                d = stats.ks_statistic(bins.reference_cdf, counts)
                expected = (
                    d,
                    d,
                    stats.ks_pvalue(d, pane.records, reference.size),
                    calibration.ks(pane.records, alpha),
                )
            got = (
                tested.statistic[s, c],
                tested.distance[s, c],
                tested.p_value[s, c],
                tested.threshold[s, c],
            )
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert np.isnan(tested.statistic[2]).all()


def test_state_restored_mid_stream_gives_identical_results(rows, reference):
    cols = stream(rows, 4000, seed=9, scenario="label_flip", onset=2000)
    expected = feed(DriftMonitor(reference, CountWindow(reference)), cols)
    first = DriftMonitor(reference, CountWindow(reference))
    head = {k: v[:1750] for k, v in cols.items()}
    tail = {k: v[1750:] for k, v in cols.items()}
    got = feed(first, head, labels=False)
    first.update_labels(
        cols["id"][:1500], cols["ts"][:1500], cols["label"][:1500]
    )  # 250 predictions still wait
    assert first.counters["pending"] == 250
    restarted = DriftMonitor(reference, CountWindow(reference))
    restarted.load_dict(json.loads(json.dumps(first.to_dict())))
    restarted.update_labels(cols["id"][1500:1750], cols["ts"][1500:1750], cols["label"][1500:1750])
    got += feed(restarted, tail)
    assert [r.pane for r in got] == [r.pane for r in expected]
    assert [(r.concept_detected, r.joined) for r in got[-4:]] == [
        (r.concept_detected, r.joined) for r in expected[-4:]
    ]
    assert got[-1] == expected[-1]


def test_reference_from_schema_reads_native_kinds():
    """Integer classes and boolean categories, as `contract.artifacts.read_reference` returns them,
    are counted as text ("0", "true"), the way the decoders' messages are."""
    pd = pytest.importorskip("pandas")
    from contract.schema_file import parse_schema

    schema = parse_schema(
        {
            "name": "toy",
            "task": "classification",
            "target": "y",
            "classes": [0, 1],
            "prediction": "yhat",
            "features": [
                {"name": "x", "type": "numeric"},
                {"name": "flag", "type": "categorical", "categories": [True, False]},
            ],
            "messages": {
                "id": "id",
                "timestamp": "ts",
                "prediction": "yhat",
                "probabilities": "proba",
                "features": "features",
            },
            "labels": {"id": "id", "timestamp": "ts", "target": "y"},
        }
    )
    assert schema.probability_columns == ("proba_0", "proba_1")
    rng = np.random.default_rng(10)
    yhat = rng.integers(0, 2, 500)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 500),
            "flag": (rng.random(500) < 0.3).astype(object),
            "y": np.where(rng.random(500) < 0.1, 1 - yhat, yhat).astype(object),
            "yhat": yhat.astype(object),
            "proba_0": 1 - yhat * 0.8,
            "proba_1": yhat * 0.8,
        }
    )
    reference = Reference.from_schema(schema, frame)
    assert reference.classes == ("0", "1") and reference.categorical[
        "flag"
    ].categories.tolist() == ["false", "true"]
    assert reference.outputs == ("prediction", "p(0)", "p(1)")
    assert reference.error_rate == pytest.approx(float((frame["y"] != frame["yhat"]).mean()))


def test_metrics_carry_the_model_and_the_classifier_gauges(rows, reference):
    from prometheus_client import CollectorRegistry

    from monitor.metrics import MonitorMetrics

    registry = CollectorRegistry()
    metrics = MonitorMetrics(
        registry, reference, {"predictions": "toy.predictions", "labels": "toy.labels"}, model="toy"
    )
    get = registry.get_sample_value
    assert get("drift_model_info", {"model": "toy", "task": "classification"}) == 1
    assert get("reference_error_rate", {"model": "toy"}) == reference.error_rate
    assert (
        get("rolling_mse", {"model": "toy"}) is None
        and get("reference_mse", {"model": "toy"}) is None
    )
    assert math.isnan(get("rolling_error_rate", {"model": "toy"}))
    assert math.isnan(get("drift_probability_statistic", {"model": "toy", "class": "rare"}))
    assert (
        get(
            "monitor_invalid_records_total",
            {"model": "toy", "topic": "toy.labels", "reason": "not_json"},
        )
        == 0
    )
    metrics.reject("toy.labels", "wrong_type", 3)
    assert (
        get(
            "monitor_invalid_records_total",
            {"model": "toy", "topic": "toy.labels", "reason": "wrong_type"},
        )
        == 3
    )

    monitor = DriftMonitor(reference, CountWindow(reference))
    metrics.follow(monitor.counters)
    results = feed(monitor, stream(rows, ONSET + 2000, seed=3, scenario="proba_b"))
    metrics.count(results)
    metrics.show(monitor.result())
    metrics.follow(monitor.counters)
    last = monitor.result()
    assert get("prediction_drift_statistic", {"model": "toy"}) == last.prediction_drift
    assert get("prediction_drift_detected", {"model": "toy"}) == 1.0  # p(b) flagged
    assert get("drift_probability_detected", {"model": "toy", "class": "b"}) == 1.0
    assert get("drift_probability_detected", {"model": "toy", "class": "a"}) == 0.0
    assert (
        get("drift_probability_statistic", {"model": "toy", "class": "b"})
        == last.outputs[2].statistic
    )
    assert get("rolling_error_rate", {"model": "toy"}) == last.rolling_error_rate
    assert get("monitor_evaluations_total", {"model": "toy"}) == len(results) == 28
    assert (
        get("prediction_drift_detections_total", {"model": "toy"})
        == sum(bool(r.prediction_detected) for r in results)
        > 0
    )
    assert get("drift_feature_detections_total", {"model": "toy", "feature": "x1"}) == 0
    assert get("monitor_unseen_labels_total", {"model": "toy"}) == 0
    monitor.update_labels(["u1", "u2"], [0, 0], np.array(["nope", "a"], dtype=object))
    metrics.follow(monitor.counters)
    assert get("monitor_unseen_labels_total", {"model": "toy"}) == 1


def test_regression_metrics_keep_their_names():
    from prometheus_client import CollectorRegistry

    from monitor.metrics import MonitorMetrics

    rng = np.random.default_rng(11)
    reference = Reference.from_arrays(
        {"x": rng.normal(0, 1, 500)},
        {"c": rng.choice(["u", "v"], 500)},
        rng.normal(10, 1, 500),
        rng.normal(10, 1, 500),
    )
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry, reference, {"predictions": "p"})
    get = registry.get_sample_value
    assert get("drift_model_info", {"model": "diamonds", "task": "regression"}) == 1
    assert get("reference_mse", {"model": "diamonds"}) == reference.mse
    assert (
        math.isnan(get("rolling_mse", {"model": "diamonds"}))
        and get("rolling_error_rate", {"model": "diamonds"}) is None
    )
    assert math.isnan(
        get("drift_feature_statistic", {"model": "diamonds", "feature": "c", "test": "chi2"})
    )
    assert get("monitor_records_consumed_total", {"model": "diamonds", "topic": "p"}) == 0
    metrics.consume("p", 5)
    metrics.state_writes.inc()
    assert get("monitor_records_consumed_total", {"model": "diamonds", "topic": "p"}) == 5
    assert get("monitor_state_writes_total", {"model": "diamonds"}) == 1
