"""The error test inside the monitor core (issue 20, "the realized side"): each joined record's bin
from the join (a classifier's confidence kept from prediction time), error counts in the panes
(merged by addition, saved, restored from snapshots without them), a count window's complete
concept panes, the evaluation's error_* fields and gauges, and the delays at the defaults on the
simulator's own streams."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from contract.rules import category_text
from monitor import errortest, stats
from monitor.drift import DriftMonitor
from monitor.errortest import ConfidenceWeightedErrors, ResidualKS
from monitor.join import ErrorWindow, LabelJoin
from monitor.reference import Reference
from monitor.windows import CountWindow, Pane, PredictionBatch, TimeWindow
from tests.unit.test_monitor_drift import feed, frame, heldout, reference, stream  # noqa: F401

ONSET = 5000


def regression(seed: int = 0, m: int = 2000) -> Reference:
    """Prices with multiplicative errors (as `test_errortest`), one feature of each kind."""
    rng = np.random.default_rng(seed)
    truth = rng.gamma(2.0, 1000.0, m)
    return Reference.from_arrays(
        {"x": rng.normal(0, 1, m)},
        {"c": rng.choice(["u", "v"], m)},
        truth * rng.lognormal(0.0, 0.1, m),
        truth,
    )


def classifier(seed: int = 1, m: int = 2000, one_column: bool = False) -> Reference:
    """A calibrated binary model: wrong with probability 1 - its confidence."""
    rng = np.random.default_rng(seed)
    p_yes = rng.uniform(0, 1, m)
    predicted = np.where(p_yes > 0.5, "yes", "no")
    wrong = rng.random(m) > np.maximum(p_yes, 1 - p_yes)
    labels = np.where(wrong, np.where(predicted == "yes", "no", "yes"), predicted)
    probabilities = {"yes": p_yes} if one_column else {"no": 1 - p_yes, "yes": p_yes}
    return Reference.from_arrays(
        {"x": rng.normal(0, 1, m)},
        {},
        predicted,
        labels,
        task="classification",
        probabilities=probabilities,
        classes=("no", "yes"),
    )


def texts(values) -> np.ndarray:
    return np.array(values, dtype=object)


# -- the reference and the join ---------------------------------------------------------------------


def test_the_reference_holds_the_error_test_of_its_task():
    assert isinstance(regression().error_test, ResidualKS) and regression().error_test.size == 100
    two, one = classifier(), classifier(one_column=True)
    assert isinstance(two.error_test, ConfidenceWeightedErrors)
    assert two.error_test.size == one.error_test.size == 40  # 20 confidence cells x (right, wrong)
    # the same confidences whether the messages carry both classes' probabilities or the positive one's
    assert np.array_equal(two.error_test.weights, one.error_test.weights)
    assert two.confidences({"no": np.array([0.2, 0.6]), "yes": np.array([0.8, 0.4])}).tolist() == [
        0.8,
        0.6,
    ]
    assert one.confidences({"yes": np.array([0.2, 0.7])}).tolist() == [0.8, 0.7]
    assert two.confidences({}) is None and regression().confidences({}) is None
    rng = np.random.default_rng(2)
    plain = Reference.from_arrays(
        {"x": rng.normal(0, 1, 100)},
        {},
        texts(["a"] * 100),
        texts(["a"] * 90 + ["b"] * 10),
        task="classification",
    )
    assert plain.error_test.size == 2 and plain.error_test.reference_value == 0.1  # the error rate


def test_the_join_bins_each_joined_record_whichever_side_comes_first():
    test = regression().error_test
    join = LabelJoin(ttl_ms=60_000, error_test=test)
    predictions, labels = np.array([1000.0, 2000.0, 3000.0]), np.array([1000.0, 1800.0, 3300.0])
    assert len(join.add_predictions(["a", "b"], [0, 0], predictions[:2], [0, 0])) == 0
    join.add_labels(["c"], [0], labels[2:])  # c's label first
    early = join.add_labels(["b", "a"], [1, 1], labels[1::-1])
    late = join.add_predictions(["c"], [2], predictions[2:], [1])
    assert early.bins.tolist() == [83, 52] and late.bins.tolist() == [16]
    order = [1, 0, 2]
    assert (
        early.bins.tolist() + late.bins.tolist()
        == test.bin_index(predictions[order], labels[order]).tolist()
    )
    assert early.bins.dtype == np.int64
    assert LabelJoin().add_labels(["z"], [0], [1.0]).bins.tolist() == []  # nothing joined
    # without a test every joined record is in bin 0
    bare = LabelJoin()
    bare.add_predictions(["a"], [0], [1.0], [0])
    assert bare.add_labels(["a"], [0], [2.0]).bins.tolist() == [0]


def test_a_classifier_keeps_each_confidence_until_its_label_comes():
    """Bins 2k + wrong, k the confidence cell; the confidence is saved with a pending prediction, and
    a snapshot written before it was kept restores 0.0: the least confident cell, the least weight."""
    test = classifier().error_test
    join = LabelJoin(ttl_ms=60_000, classification=True, error_test=test)
    join.add_predictions(
        ["a", "b", "c"],
        [0, 0, 0],
        texts(["yes", "no", "yes"]),
        [0, 0, 1],
        confidences=[0.55, 0.7, 0.99],
    )
    state = json.loads(json.dumps(join.to_dict()))
    assert state["predictions"]["confidence"] == [0.55, 0.7, 0.99]
    restored = LabelJoin(ttl_ms=60_000, classification=True, error_test=test)
    restored.load_dict(state)
    assert restored.to_dict() == state
    joined = restored.add_labels(["a", "b", "c"], [1, 1, 1], texts(["yes", "yes", "no"]))
    assert joined.bins.tolist() == [4, 17, 39]  # right in cell 2, wrong in cells 8 and 19
    assert joined.squared.tolist() == [0.0, 1.0, 1.0]
    older = {
        **state,
        "predictions": {k: v for k, v in state["predictions"].items() if k != "confidence"},
    }
    old = LabelJoin(ttl_ms=60_000, classification=True, error_test=test)
    old.load_dict(older)
    assert old.add_labels(
        ["a", "b", "c"], [1, 1, 1], texts(["yes", "yes", "no"])
    ).bins.tolist() == [0, 1, 1]
    assert test.weights[0] == test.weights.min()
    # a regression join saves no confidence column (its snapshots keep their layout)
    assert "confidence" not in LabelJoin().to_dict()["predictions"]


# -- panes ------------------------------------------------------------------------------------------


def batch(n: int, start: int = 0, step_ms: int = 1000) -> PredictionBatch:
    rng = np.random.default_rng(start)
    ids = np.array([f"r{i}" for i in range(start, start + n)], dtype=object)
    return PredictionBatch(
        ids,
        (start + np.arange(n)) * step_ms,
        rng.gamma(2.0, 1000.0, n),
        {"x": rng.normal(0, 1, n)},
        {"c": rng.choice(["u", "v"], n).astype(object)},
    )


def test_panes_count_error_bins_merge_them_and_restore_older_ones():
    reference = regression()
    window = TimeWindow(reference, window_ms=4000, step_ms=1000)  # 4 panes of 1 s
    window.update(batch(6))  # one record a second: panes 0..5
    assert window.layout.errors == 100 and window.panes[3].error_counts.tolist() == [0] * 100
    window.add_errors([2, 3, 3, 5, 5, 5], np.ones(6), np.ones(6), [7, 7, 9, 1, 1, 99])
    assert (
        window.panes[3].error_counts[[7, 9]].tolist() == [1, 1]
        and window.panes[5].error_counts.sum() == 3
    )
    counts = window.scale_counts(
        5
    )  # the window ending at pane 5: panes 2..5, newest half 4..5, newest 5
    assert {name: np.flatnonzero(c).tolist() for name, c in counts.items()} == {
        "window": [1, 7, 9, 99],
        "recent": [1, 99],
        "pane": [1, 99],
    }
    assert np.array_equal(counts["window"], window.aggregate(5).error_counts)
    assert np.array_equal(counts["recent"], window.aggregate(5, 2).error_counts)
    assert np.array_equal(counts["pane"], window.aggregate(5, 1).error_counts)
    assert counts["window"][1] == 2 and counts["window"].dtype == np.int64
    # to and from JSON; a pane saved before the counts were kept holds none and merges as zeros
    pane = window.panes[5]
    saved = json.loads(json.dumps(pane.to_dict()))
    assert np.array_equal(Pane.from_dict(saved).error_counts, pane.error_counts)
    old = {k: v for k, v in pane.to_dict().items() if k != "error_counts"}
    assert Pane.from_dict(old).error_counts.size == 0
    assert np.array_equal(Pane.from_dict(old).merge(pane).error_counts, pane.error_counts)
    assert np.array_equal(pane.merge(Pane.from_dict(old)).error_counts, pane.error_counts)
    with pytest.raises(ValueError, match="do not add"):
        pane.merge(Pane(5, pane.counts, error_counts=np.zeros(3, np.int64)))
    # a window restored from a snapshot without counts: every pane counts zeros, of the right size
    state = json.loads(json.dumps(window.to_dict()))
    for saved in state["panes"]:
        del saved["error_counts"]
    restored = TimeWindow(reference, window_ms=4000, step_ms=1000)
    restored.load_dict(state)
    assert all(p.error_counts.tolist() == [0] * 100 for p in restored.panes.values())
    assert restored.aggregate(5).sse == window.aggregate(5).sse  # the rest as saved


def as_lists(counts: dict) -> dict:
    return {name: c.tolist() for name, c in counts.items()}


def test_the_count_windows_error_test_sees_complete_concept_panes():
    window = ErrorWindow(size=6, step=2, bins=3)
    window.add(np.arange(7.0) ** 2, np.arange(7.0), np.array([0, 1, 2, 2, 1, 1, 0]))
    assert window.totals() == (
        5,
        90.0,
        20.0,
    )  # the rolling MSE: panes [2, 3] [4, 5] and the filling [6]
    # complete panes only: [0, 1] [2, 2] [1, 1]
    assert as_lists(window.scale_counts()) == {"window": [1, 3, 2], "recent": [0, 2, 0]}
    window.add(np.ones(1), np.ones(1), np.array([2]))  # [0, 2] completes; [0, 1] leaves the window
    assert as_lists(window.scale_counts()) == {"window": [1, 2, 3], "recent": [1, 0, 1]}
    state = json.loads(json.dumps(window.to_dict()))
    assert len(state["panes"]) == len(state["counts"]) == 4  # 3 complete + the filling one
    restored = ErrorWindow(size=6, step=2, bins=3)
    restored.load_dict(state)
    assert restored.totals() == window.totals()
    assert as_lists(restored.scale_counts()) == {"window": [1, 2, 3], "recent": [1, 0, 1]}
    # a snapshot from before the counts: its panes count none, its sums as saved
    older = ErrorWindow(size=6, step=2, bins=3)
    older.load_dict({k: v for k, v in state.items() if k != "counts"})
    assert older.totals() == window.totals() and older.scale_counts()["window"].tolist() == [
        0,
        0,
        0,
    ]
    # fewer complete panes than the window holds: the missing ones are empty
    young = ErrorWindow(size=1000, step=250, bins=2)
    young.add(np.zeros(600), np.zeros(600), np.zeros(600, np.int64))
    assert {k: int(v.sum()) for k, v in young.scale_counts().items()} == {
        "window": 500,
        "recent": 500,
        "pane": 250,
    }
    # a tumbling window: its last complete pane, as its rolling MSE
    tumbling = ErrorWindow(size=4, step=4, bins=2)
    tumbling.add(np.ones(6), np.ones(6), np.array([0, 1, 1, 1, 0, 0]))
    assert tumbling.totals() == (4, 4.0, 4.0)
    assert as_lists(tumbling.scale_counts()) == {"window": [1, 3]}


# -- evaluation -------------------------------------------------------------------------------------


def test_the_evaluation_reports_the_error_test(heldout, reference):  # noqa: F811
    """Labels 20% higher from record 2,000: the first concept pane of drifted labels is flagged by the
    KS of the standardized errors (at the per-test alpha of 18 tests) at the first evaluation that
    holds it: the one at record 2,500, since a step's labels join after its predictions."""
    off = DriftMonitor(reference, CountWindow(reference))
    on = DriftMonitor(reference, CountWindow(reference), error_test=True)
    assert (off.calibration.tests, on.calibration.tests) == (15, 18)
    assert on.calibration.alpha(250) == 250 / 1e7 / 18
    cols = stream(heldout, 3000, seed=6, scenario="price_1.2", onset=2000)
    results = feed(on, cols)
    calm, first = results[6], results[9]  # windows ending at records 1,750 and 2,500
    assert (
        calm.error_detected is False and calm.error_scale == "recent" and calm.error_records == 500
    )
    assert (first.error_test, first.error_scale, first.error_records, first.error_detected) == (
        "residual_ks",
        "pane",
        250,
        True,
    )
    assert first.drift_detected and first.error_statistic > 2 * first.error_threshold
    assert round(first.error_statistic, 4) == 0.6859 and round(first.error_threshold, 4) == 0.169
    assert first.error_threshold == stats.ks_threshold(first.alpha, 250, reference.size)
    assert first.error_pvalue == stats.ks_pvalue(first.error_statistic, 250, reference.size)
    assert first.error_pvalue < first.alpha
    counts = on.errors.scale_counts()
    assert int(counts["window"].sum()) == 1000 and int(counts["pane"].sum()) == 250
    # the monitor without the test: the same panes, no error fields, its thresholds as they were
    assert all(r.error_test is None and r.error_detected is None for r in feed(off, cols))
    # fixed mode runs no error test
    fixed = DriftMonitor(reference, CountWindow(reference), mode="fixed", error_test=True)
    assert (
        fixed.calibration.error_test is None and fixed.calibration.tests == 8
    )  # whole windows only
    assert feed(fixed, cols)[-1].error_statistic is None


def test_no_error_test_before_min_joined_records(heldout, reference):  # noqa: F811
    monitor = DriftMonitor(reference, CountWindow(reference), error_test=True, min_joined=300)
    cols = stream(heldout, 1000, seed=7)
    feed(monitor, cols, labels=False)
    monitor.update_labels(cols["id"][:250], cols["ts"][:250], cols["price"][:250])
    assert monitor.result().error_statistic is None  # 250 joined: no scale holds 300
    monitor.update_labels(cols["id"][250:500], cols["ts"][250:500], cols["price"][250:500])
    latest = monitor.result()
    assert (latest.error_scale, latest.error_records, latest.error_detected) == (
        "window",
        500,
        False,
    )


def test_a_time_window_tests_the_errors_of_its_own_predictions(heldout, reference):  # noqa: F811
    monitor = DriftMonitor(reference, TimeWindow(reference, 60_000, 10_000), error_test=True)
    assert monitor.calibration.error_scales == 3 and monitor.calibration.tests == 18
    cols = stream(heldout, 1200, seed=8)  # 10 records a second: 100 a pane, 600 a window
    feed(monitor, cols)
    latest = monitor.result()
    q = monitor.window.last_closed
    assert latest.error_records == {"window": 600, "recent": 300, "pane": 100}[latest.error_scale]
    expected = errortest.scale_counts(
        [monitor.window.panes[p].error_counts for p in range(q - 5, q + 1)]
    )
    assert all(np.array_equal(monitor.window.scale_counts(q)[k], v) for k, v in expected.items())
    assert latest.error_detected is False


def test_the_gauges_follow_the_error_test(heldout, reference):  # noqa: F811
    from prometheus_client import CollectorRegistry

    from monitor.metrics import MonitorMetrics

    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry, reference, {"predictions": "p"}, model="diamonds")
    get = registry.get_sample_value
    model = {"model": "diamonds"}
    assert math.isnan(get("concept_error_statistic", {**model, "test": "residual_ks"}))
    for name in ("threshold", "pvalue", "detected", "records"):
        assert math.isnan(get(f"concept_error_{name}", model)), name
    assert get("concept_error_detections_total", model) == 0
    monitor = DriftMonitor(reference, CountWindow(reference), error_test=True)
    results = feed(monitor, stream(heldout, 2500, seed=6, scenario="price_1.2", onset=2000))
    metrics.count(results)
    latest = monitor.result()
    metrics.show(latest)
    metrics.count_concept(latest)  # the latest window again: counted once
    assert (
        get("concept_error_statistic", {**model, "test": "residual_ks"}) == latest.error_statistic
    )
    assert get("concept_error_threshold", model) == latest.error_threshold
    assert get("concept_error_pvalue", model) == latest.error_pvalue
    assert (get("concept_error_detected", model), get("concept_error_records", model)) == (
        1.0,
        500.0,
    )
    assert (
        get("concept_error_detections_total", model)
        == sum(bool(r.error_detected) for r in results)
        == 1
    )
    metrics.show(None)
    assert math.isnan(get("concept_error_threshold", model))


def test_a_classifiers_gauge_has_no_pvalue():
    from prometheus_client import CollectorRegistry

    from monitor.metrics import MonitorMetrics

    reference = classifier()
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry, reference, {"predictions": "p"}, model="toy")
    monitor = DriftMonitor(reference, CountWindow(reference, 500, 250), error_test=True)
    rng = np.random.default_rng(3)
    p_yes = rng.uniform(0, 1, 750)
    predicted = texts(np.where(p_yes > 0.5, "yes", "no"))
    ids = texts([f"r{i}" for i in range(750)])
    monitor.update(
        PredictionBatch(
            ids,
            np.arange(750),
            predicted,
            {"x": rng.normal(0, 1, 750)},
            {},
            {"no": 1 - p_yes, "yes": p_yes},
        )
    )
    monitor.update_labels(ids, np.arange(750), predicted)  # every label right
    latest = monitor.result()
    metrics.show(latest)
    assert (latest.error_test, latest.error_statistic, latest.error_pvalue) == (
        "weighted_errors",
        0.0,
        None,
    )
    assert (
        get_value(registry, "concept_error_statistic", model="toy", test="weighted_errors") == 0.0
    )
    assert math.isnan(get_value(registry, "concept_error_pvalue", model="toy"))


def get_value(registry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels)


# -- delays at the defaults, on the simulator's streams ---------------------------------------------


def simulated(
    schema, frame, scenario: str, count: int, seed: int
) -> tuple[PredictionBatch, np.ndarray]:
    """What `producer simulate --scenario SCENARIO --onset 5000 --seed SEED` sends (rows drawn from
    the reference with their own predictions and probabilities), as one batch and its labels."""
    from producer.grammar import parse_scenario
    from producer.simulate import SimulateConfig, generate_chunks, source_columns

    source = source_columns(frame, schema)
    for column in (schema.prediction, *schema.probability_columns):
        source[column] = frame[column].to_numpy()
    scenario = parse_scenario(scenario, schema, source)
    config = SimulateConfig(count=count, scenario=scenario, onset=ONSET, seed=seed)
    parts = [chunk for _, chunk, _ in generate_chunks(source, config)]
    cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}

    def as_text(values) -> np.ndarray:
        return texts([category_text(v) for v in np.asarray(values).tolist()])

    kind = as_text if schema.classification else (lambda v: np.asarray(v, np.float64))
    probabilities = dict(zip(schema.probability_classes, schema.probability_columns))
    batch = PredictionBatch(
        texts([f"{seed}-{i}" for i in range(count)]),
        np.arange(count) * 100,
        kind(cols[schema.prediction]),
        {c: cols[c].astype(np.float64) for c in schema.numeric},
        {c: as_text(cols[c]) for c in schema.categorical},
        {text: cols[c].astype(np.float64) for text, c in probabilities.items()},
    )
    return batch, kind(cols[schema.target])


def alarms(monitor: DriftMonitor, batch: PredictionBatch, labels: np.ndarray) -> list:
    """Feed 250 records at a time, their labels right after; the latest result after each step."""
    out = []
    for start in range(0, len(batch), 250):
        monitor.update(batch.rows(start, start + 250))
        rows = slice(start, start + 250)
        monitor.update_labels(batch.ids[rows], batch.ts[rows], labels[rows])
        out.append(monitor.result())
    return out


def delay(results: list) -> int | None:
    """Records after the onset to the first result that flags concept drift (either test)."""
    return next(
        (
            (i + 1) * 250 - ONSET
            for i, r in enumerate(results)
            if (i + 1) * 250 > ONSET and (r.error_detected or r.concept_detected)
        ),
        None,
    )


def example(directory):
    from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference

    schema = load_model_schema(directory)
    frame = read_reference(directory / REFERENCE_FILE, schema)
    return schema, frame, Reference.from_schema(schema, frame)


@pytest.fixture(scope="module")
def diamonds(model_dir):
    return example(model_dir)


@pytest.fixture(scope="module")
def affairs(affairs_dir):
    return example(affairs_dir)


def test_price_inflation_is_flagged_within_250_records(diamonds):
    """Labels x1.2 (`price-inflation`): the first evaluation after the onset, by the error test's
    newest pane; the MSE ratio alone takes 250-500."""
    schema, frame, reference = diamonds
    found, concept_only = [], []
    for seed in range(3):
        batch, labels = simulated(schema, frame, "price-inflation", ONSET + 1000, seed)
        results = alarms(
            DriftMonitor(reference, CountWindow(reference), error_test=True), batch, labels
        )
        found.append((delay(results), results[ONSET // 250].error_scale))
        concept_only.append(
            next(
                (i + 1) * 250 - ONSET
                for i, r in enumerate(results)
                if (i + 1) * 250 > ONSET and r.concept_detected
            )
        )
    assert found == [(250, "pane")] * 3
    assert concept_only == [250, 500, 250]


def test_flipped_labels_are_flagged_within_500_records(affairs):
    """A classifier's labels flipped for 30% of the records (`labels:flip:0.3`)."""
    schema, frame, reference = affairs
    delays = []
    for seed in range(3):
        batch, labels = simulated(schema, frame, "labels:flip:0.3", ONSET + 1000, seed)
        monitor = DriftMonitor(reference, CountWindow(reference), error_test=True)
        assert (
            monitor.calibration.error_test.name == "weighted_errors"
            and monitor.calibration.tests == 26
        )
        delays.append(delay(alarms(monitor, batch, labels)))
    assert delays == [250, 250, 250]


@pytest.mark.parametrize("name", ["diamonds", "affairs"])
def test_a_calm_stream_is_never_flagged(name, diamonds, affairs):
    schema, frame, reference = {"diamonds": diamonds, "affairs": affairs}[name]
    batch, labels = simulated(schema, frame, "none", 12_000, seed=7)
    monitor = DriftMonitor(reference, CountWindow(reference), error_test=True)
    results = alarms(monitor, batch, labels)
    tested = [r for r in results if r.error_statistic is not None]
    assert len(tested) == 48 and not any(r.drift_detected for r in results)
    worst = max(r.error_statistic / r.error_threshold for r in tested)
    assert worst < 1
