"""The monitor end to end on seeded streams resampled from the held-out rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor import stats
from monitor.columns import column_tests
from monitor.drift import DriftMonitor, DriftResult
from monitor.reference import Reference
from monitor.windows import CountWindow, PredictionBatch, TimeWindow
from tests.support import first_alarm, wait_until

ROOT = Path(__file__).resolve().parents[2]
NUMERIC = ("carat", "depth", "table")
CATEGORICAL = ("cut", "color", "clarity")
CORE_MODULES = (
    "monitor",
    "monitor.reference",
    "monitor.stats",
    "monitor.windows",
    "monitor.join",
    "monitor.calibration",
    "monitor.exact",
    "monitor.columns",
    "monitor.drift",
)
ONSET = 5000
DELAYS = [500] * 9  # carat-shift delays of seeds 100..108 (750 with the whole window only)


@pytest.fixture(scope="module")
def frame(model_dir):
    """The held-out reference rows, read and checked against the diamonds schema (pandas only here)."""
    from contract.artifacts import REFERENCE_FILE, read_reference
    from contract.schema import DEFAULT_SCHEMA
    from contract.schema_file import load_schema

    schema = load_schema(DEFAULT_SCHEMA)
    return schema, read_reference(model_dir / REFERENCE_FILE, schema)


@pytest.fixture(scope="module")
def heldout(frame) -> dict[str, np.ndarray]:
    _, rows = frame
    return {c: rows[c].to_numpy(str if c in CATEGORICAL else np.float64) for c in rows.columns}


@pytest.fixture(scope="module")
def reference(frame, heldout) -> Reference:
    built = Reference.from_schema(*frame)
    # the schema's reader gives the same profile as the arrays themselves
    arrays = Reference.from_arrays(
        {c: heldout[c] for c in NUMERIC},
        {c: heldout[c] for c in CATEGORICAL},
        heldout["prediction"],
        heldout["price"],
    )
    assert (
        built.layout == arrays.layout
        and built.mse == arrays.mse
        and built.features == NUMERIC + CATEGORICAL
    )
    return built


def stream(
    heldout: dict, n: int, seed: int, scenario: str | None = None, onset: int = ONSET
) -> dict[str, np.ndarray]:
    """n records resampled from the held-out rows; `scenario` changes records from `onset` on."""
    rng = np.random.default_rng(seed)
    m = len(heldout["price"])
    idx = rng.integers(0, m, n)
    if scenario == "cut_mix":  # Ideal halved, Fair and Good tripled, then renormalised
        weight = {"Ideal": 0.5, "Fair": 3.0, "Good": 3.0}
        p = np.array([weight.get(c, 1.0) for c in heldout["cut"]])
        idx[onset:] = rng.choice(m, n - onset, p=p / p.sum())
    cols = {c: heldout[c][idx].copy() for c in heldout}
    cols["id"] = np.array([f"{seed}-{i}" for i in range(n)], dtype=object)
    cols["ts"] = np.arange(n, dtype=np.int64) * 100  # 10 records per second
    if scenario == "carat_1.1":
        cols["carat"][onset:] *= 1.1
    elif scenario == "new_clarity":
        cols["clarity"] = cols["clarity"].astype("<U8")
        cols["clarity"][onset:][rng.random(n - onset) < 0.05] = "FL"
    elif scenario == "price_1.2":  # labels only: features and the model's predictions unchanged
        cols["price"][onset:] *= 1.2
    return cols


def feed(
    monitor: DriftMonitor, cols: dict, batch: int = 250, labels: bool = True
) -> list[DriftResult]:
    results = []
    for start in range(0, len(cols["id"]), batch):
        part = slice(start, start + batch)
        results += monitor.update(
            PredictionBatch(
                cols["id"][part],
                cols["ts"][part],
                cols["prediction"][part],
                {c: cols[c][part] for c in NUMERIC},
                {c: cols[c][part] for c in CATEGORICAL},
            )
        )
        if labels:
            monitor.update_labels(cols["id"][part], cols["ts"][part], cols["price"][part])
    return results


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_imports_no_io_libraries(module):
    code = (
        f"import sys; import {module}; "
        "bad = [m for m in ('pandas', 'confluent_kafka', 'prometheus_client', 'flask') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_alarm_on_200k_no_drift_records(heldout, reference):
    monitor = DriftMonitor(reference, CountWindow(reference))
    results = feed(monitor, stream(heldout, 200_000, seed=1))
    assert len(results) == 800
    assert not any(r.drift_detected for r in results)
    ready = [r for r in results if r.ready]
    assert len(ready) == 797  # the first three evaluations see < 1,000 records
    worst_ks = max(f.statistic / f.threshold for r in ready for f in r.features if f.test == "ks")
    worst_pred = max(r.prediction_drift / r.prediction_threshold for r in ready)
    worst_concept = max(r.concept_drift for r in ready)
    print(
        f"no-drift worst KS/threshold {worst_ks:.3f}, prediction {worst_pred:.3f}, MSE ratio {worst_concept:.3f}"
    )
    assert worst_ks < 1 and worst_pred < 1 and worst_concept < ready[0].concept_threshold


@pytest.mark.slow
def test_no_alarm_on_1m_no_drift_records(heldout, reference):
    monitor = DriftMonitor(reference, CountWindow(reference))
    results = feed(monitor, stream(heldout, 1_000_000, seed=2), batch=1000)
    assert len(results) == 4000 and not any(r.drift_detected for r in results)


@pytest.mark.parametrize(
    "scenario, after, flagged",
    [("carat_1.1", 500, {"carat"}), ("cut_mix", 250, {"cut"}), ("new_clarity", 250, {"clarity"})],
)
def test_feature_drift_flagged_within_one_window(heldout, reference, scenario, after, flagged):
    monitor = DriftMonitor(reference, CountWindow(reference))
    index, alarm = first_alarm(
        feed(monitor, stream(heldout, ONSET + 2000, seed=3, scenario=scenario)), ONSET
    )
    assert index == after <= 1000
    assert {f.name for f in alarm.features if f.detected} == flagged
    # flagged by the newest half window (500 records, all drifted), reported with its own threshold
    for f in alarm.features:
        if f.detected:
            assert f.scale == "recent" and f.records == 500 and f.statistic > f.threshold
    assert alarm.dataset_detected and alarm.share_detected == pytest.approx(1 / 6)
    assert not alarm.concept_detected


def test_abrupt_carat_shift_detected_within_500_records(heldout, reference):
    """carat x1.1 rounded to 2 decimals (the producer's carat-shift), 9 seeds: the newest half window
    is fully drifted 500 records after onset, where the whole window's D (~0.07) is still below its
    threshold; 750 records with the whole window alone."""
    delays = []
    for seed in range(100, 109):
        cols = stream(heldout, ONSET + 2000, seed=seed, scenario="carat_1.1")
        cols["carat"][ONSET:] = np.round(cols["carat"][ONSET:], 2)
        index, alarm = first_alarm(
            feed(DriftMonitor(reference, CountWindow(reference)), cols), ONSET
        )
        assert {f.name for f in alarm.features if f.detected} == {"carat"}
        delays.append(index)
    print("carat-shift delays", delays)
    assert delays == DELAYS and np.median(delays) <= 500


def test_scales_reported_coherently(heldout, reference):
    """Each column reports the scale with the larger statistic / threshold; data_drift stays on the
    whole window's distances."""
    monitor = DriftMonitor(reference, CountWindow(reference))
    assert monitor.calibration.recent and monitor.calibration.tests == 15
    results = [
        r
        for r in feed(monitor, stream(heldout, ONSET + 500, seed=3, scenario="carat_1.1"))
        if r.ready
    ]
    for r in results:
        for f in r.features:
            assert (f.scale, f.records) in (("window", 1000), ("recent", 500))
            assert f.detected == (f.statistic > f.threshold)
        assert r.prediction_scale in ("window", "recent")
    last = results[-1]
    carat = last.features[0]
    assert carat.scale == "recent" and carat.statistic > carat.threshold
    whole = monitor.window.aggregate(last.pane)
    d = stats.ks_statistic(
        reference.numeric["carat"].reference_cdf,
        whole.counts[monitor.window.layout.slices["carat"]],
    )
    # half drifted: the whole window alone would not flag it yet
    assert (
        carat.distance == carat.statistic > 0.12
        and 0.06 < d < monitor.calibration.ks(1000, last.alpha) < 0.09
    )
    assert last.data_drift > 0 and last.data_drift != pytest.approx(
        np.mean([f.distance for f in last.features])
    )
    # one-pane windows have no newest half: 8 tests, whole window only
    single = DriftMonitor(reference, CountWindow(reference, 1000, 1000))
    assert not single.calibration.recent and single.calibration.tests == 8
    assert all(
        f.scale == "window" for f in feed(single, stream(heldout, 2000, seed=3))[-1].features
    )


def test_new_category_counted_not_crashing(heldout, reference):
    monitor = DriftMonitor(reference, CountWindow(reference))
    last = feed(monitor, stream(heldout, ONSET + 2000, seed=4, scenario="new_clarity"))[-1]
    clarity = next(f for f in last.features if f.name == "clarity")
    assert monitor.window.panes[last.pane].unseen["clarity"]["FL"] > 0
    assert np.isfinite(clarity.statistic) and clarity.statistic > 1000 and clarity.p_value == 0.0
    assert 0.04 < clarity.distance < 0.07


@pytest.mark.parametrize("mode", ["calibrated", "fixed"])
def test_vectorised_tests_equal_the_per_column_statistics(heldout, reference, mode):
    """One evaluation tests all columns at both scales in a few numpy calls; each must equal
    `stats`' own function on that column's counts, unseen categories included."""
    monitor = DriftMonitor(reference, CountWindow(reference), mode=mode)
    last = feed(monitor, stream(heldout, ONSET + 1000, seed=5, scenario="new_clarity"))[-1]
    layout, calibration = monitor.window.layout, monitor.calibration
    panes = [
        monitor.window.aggregate(last.pane),
        monitor.window.aggregate(last.pane, 2),
        layout.empty(0),
    ]
    assert panes[0].unseen["clarity"]["FL"] > 0 and panes[1].records == 500
    alpha = last.alpha or 0.0
    tested = column_tests(layout, calibration, panes, alpha)
    assert tested.names == (*reference.features, "prediction") and tested.statistic.shape == (3, 7)
    for s, pane in enumerate(panes[:2]):
        n = pane.records
        for c, name in enumerate(tested.names):
            counts = pane.counts[layout.slices[name]]
            if name in reference.categorical:
                unseen = np.fromiter(pane.unseen.get(name, {}).values(), dtype=np.float64)
                profile = reference.categorical[name]
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
                assert tested.tests[c] == "chi2"
            else:
                bins = reference.prediction if name == "prediction" else reference.numeric[name]
                d = stats.ks_statistic(bins.reference_cdf, counts)
                expected = (d, d, stats.ks_pvalue(d, n, reference.size), calibration.ks(n, alpha))
                assert tested.tests[c] == "ks"
            got = (
                tested.statistic[s, c],
                tested.distance[s, c],
                tested.p_value[s, c],
                tested.threshold[s, c],
            )
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert (
        np.isnan(tested.statistic[2]).all() and np.isnan(tested.distance[2]).all()
    )  # an empty pane: NaN, never 0
    # the result reports, per column, the scale whose statistic / threshold is larger
    for f in last.features:
        assert f.records in (1000, 500) and f.detected == (
            (f.statistic if mode == "calibrated" else f.distance) > f.threshold
        )


def test_price_shift_is_concept_drift_only(heldout, reference):
    monitor = DriftMonitor(reference, CountWindow(reference))
    results = feed(monitor, stream(heldout, ONSET + 2000, seed=5, scenario="price_1.2"))
    index, alarm = first_alarm(results, ONSET)
    assert index == 500 <= 2000
    assert alarm.concept_detected and not alarm.dataset_detected and not alarm.prediction_detected
    # the batch's labels follow its predictions, so the pane just closed has none yet
    assert alarm.label_coverage == 0.75 and alarm.joined == 750
    assert not any(r.dataset_detected or r.prediction_detected for r in results if r.ready)
    assert results[-1].concept_drift > 3


def test_fixed_mode_uses_the_tutorials_thresholds(heldout, reference):
    monitor = DriftMonitor(reference, CountWindow(reference), mode="fixed")
    last = feed(monitor, stream(heldout, ONSET + 1000, seed=6, scenario="carat_1.1"))[-1]
    assert last.prediction_threshold == last.concept_threshold == 0.1 and last.alpha is None
    assert all(f.threshold == 0.1 for f in last.features)
    assert last.data_drift == pytest.approx(np.mean([f.distance for f in last.features]))
    assert last.dataset_detected == (last.data_drift > 0.1)
    # the tutorial's rules: whole window only, no recent scale
    assert not monitor.calibration.recent and last.prediction_scale == "window"
    assert all(f.scale == "window" and f.records == 1000 for f in last.features)


def test_window_not_full_reports_none_not_zero(heldout, reference):
    monitor = DriftMonitor(reference, CountWindow(reference), min_joined=100)
    cols = stream(heldout, 600, seed=7)
    results = feed(monitor, cols, labels=False)
    first = results[0]
    assert not first.ready and first.records == 250 and first.features == ()
    assert (
        first.data_drift is None
        and first.dataset_detected is None
        and first.prediction_drift is None
    )
    assert first.concept_drift is None and first.rolling_mse is None and first.label_coverage == 0.0
    monitor.update_labels(cols["id"][:300], cols["ts"][:300], cols["price"][:300])
    latest = monitor.result()
    assert (
        latest.pane == 1
        and latest.joined == 300
        and latest.rolling_mse is not None
        and not latest.ready
    )


def test_state_restored_mid_stream_gives_identical_results(heldout, reference):
    cols = stream(heldout, 4000, seed=8, scenario="price_1.2", onset=2000)
    whole = DriftMonitor(reference, CountWindow(reference))
    expected = feed(whole, cols)
    first = DriftMonitor(reference, CountWindow(reference))
    head = {k: v[:1750] for k, v in cols.items()}
    tail = {k: v[1750:] for k, v in cols.items()}
    got = feed(first, head)
    restarted = DriftMonitor(reference, CountWindow(reference))
    restarted.load_dict(json.loads(json.dumps(first.to_dict())))
    got += feed(restarted, tail)
    assert got == expected


def test_time_window_with_delayed_labels(heldout, reference):
    """10 records/s, 60 s window, 10 s step; labels arrive 20-30 s after their predictions."""
    monitor = DriftMonitor(
        reference,
        TimeWindow(reference, window_ms=60_000, step_ms=10_000),
        label_ttl_ms=120_000,
        min_records=500,
    )
    cols = stream(heldout, 3000, seed=9)  # ts = i * 100 ms: 300 s
    results = []
    for start in range(0, 3000, 100):  # 10 s of records per batch
        part = slice(start, start + 100)
        results += monitor.update(
            PredictionBatch(
                cols["id"][part],
                cols["ts"][part],
                cols["prediction"][part],
                {c: cols[c][part] for c in NUMERIC},
                {c: cols[c][part] for c in CATEGORICAL},
            )
        )
        late = slice(max(start - 300, 0), max(start - 200, 0))
        monitor.update_labels(cols["id"][late], cols["ts"][late] + 30_000, cols["price"][late])
    assert [r.pane for r in results] == list(range(29))
    assert [r.records for r in results[:7]] == [100, 200, 300, 400, 500, 600, 600]
    assert [r.ready for r in results[3:6]] == [False, True, True]
    # Labels have arrived for records 0..2699; the last closed window holds records 2300..2899,
    # 400 of them labelled. A time window's MSE covers its own labelled predictions.
    latest = monitor.result()
    assert latest.joined == 400 and latest.label_coverage == pytest.approx(2 / 3)
    in_window = slice(2300, 2700)
    errors = cols["prediction"][in_window] - cols["price"][in_window]
    assert latest.rolling_mse == pytest.approx(float(np.mean(errors**2)), rel=1e-12)
    assert not any(r.drift_detected for r in results)
    # half the 6 panes (3 x 10 s = 300 records) is the recent scale
    assert {f.records for r in results if r.ready for f in r.features} <= {300, 500, 600}
    assert monitor.counters["late_records"] == 0 and monitor.counters["expired_predictions"] == 0


def test_labels_slower_than_a_window_still_measure_concept_drift(heldout, reference):
    """Labels 3,000 records behind their predictions: three windows late, all still joined."""
    monitor = DriftMonitor(reference, CountWindow(reference), label_ttl_ms=10**9)
    cols = stream(heldout, 9000, seed=12, scenario="price_1.2", onset=4000)
    results = []
    for start in range(0, 9000, 250):
        part = slice(start, start + 250)
        results += monitor.update(
            PredictionBatch(
                cols["id"][part],
                cols["ts"][part],
                cols["prediction"][part],
                {c: cols[c][part] for c in NUMERIC},
                {c: cols[c][part] for c in CATEGORICAL},
            )
        )
        late = slice(max(start - 3000, 0), max(start - 2750, 0))
        monitor.update_labels(cols["id"][late], cols["ts"][late], cols["price"][late])
    assert (
        monitor.counters["joined"] == 6000 and monitor.counters["late_errors"] == 6000
    )  # all after their panes left
    concept = [
        (i, r.concept_detected) for i, r in enumerate(results) if r.concept_drift is not None
    ]
    assert concept and not any(flag for i, flag in concept if i < (4000 + 3000) // 250 - 1)
    first = next(i for i, flag in concept if flag)
    # The inflated labels (records >= 4000) arrive from record 7000 on: flagged 500 records later.
    assert (first + 1) * 250 == 7500


def test_labels_ahead_of_a_large_batch_count_only_at_their_own_step(heldout, reference):
    """Labels first, then 8,000 predictions in one batch: an evaluation must not see the errors
    of records after its own end (price inflation from 6,000 on)."""
    monitor = DriftMonitor(reference, CountWindow(reference))
    cols = stream(heldout, 8000, seed=13, scenario="price_1.2", onset=6000)
    monitor.update_labels(cols["id"], cols["ts"], cols["price"])
    results = monitor.update(
        PredictionBatch(
            cols["id"],
            cols["ts"],
            cols["prediction"],
            {c: cols[c] for c in NUMERIC},
            {c: cols[c] for c in CATEGORICAL},
        )
    )
    assert len(results) == 32
    flagged = [(i + 1) * 250 for i, r in enumerate(results) if r.concept_detected]
    assert flagged and min(flagged) == 6250  # none before the onset; one step after it


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ert": 0}, "ert"),
        ({"ert": -5}, "ert"),
        ({"mode": "strict"}, "mode"),
        ({"min_records": 0}, "min_records"),
        ({"label_ttl_ms": 0}, "label_ttl"),
    ],
)
def test_monitor_arguments_are_checked(reference, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DriftMonitor(reference, CountWindow(reference), **kwargs)


def test_a_time_window_has_its_next_steps_thresholds_computed_ahead_and_a_count_window_does_not(
    heldout, reference
):
    """The categorical thresholds of a window size not seen before are computed in the background
    (`exact.Background`) one step ahead: the window's size and its size with one more pane."""
    monitor = DriftMonitor(
        reference, TimeWindow(reference, window_ms=60_000, step_ms=10_000), min_records=100
    )
    cols = stream(heldout, 400, seed=11)  # ts = i * 100 ms: 100 records per 10 s pane
    for start in range(0, 400, 100):
        part = slice(start, start + 100)
        monitor.update(
            PredictionBatch(
                cols["id"][part],
                cols["ts"][part],
                cols["prediction"][part],
                {c: cols[c][part] for c in NUMERIC},
                {c: cols[c][part] for c in CATEGORICAL},
            )
        )
    calibration = monitor.calibration
    alpha = calibration_level(calibration, 100)
    # Panes 0-2 closed (the 4th batch's records close pane 2): the window holds 300 records, the next 400.
    wait_until(
        lambda: all(calibration.null(c).ready(400, alpha) for c in CATEGORICAL),
        60,
        interval=0.05,
        message="the next step's thresholds computed ahead",
    )
    counted = DriftMonitor(reference, CountWindow(reference, 1000, 250))
    assert not counted.calibration.prefetch
    feed(counted, stream(heldout, 1500, seed=12), labels=False)
    assert all(
        set(counted.calibration.null(c)._tails)
        == {
            (1000, calibration_level(counted.calibration, 250)),
            (500, calibration_level(counted.calibration, 250)),
        }
        for c in CATEGORICAL
    )


def calibration_level(calibration, new_records: int) -> float:
    from monitor.calibration import _alpha_grid

    return _alpha_grid(calibration.alpha(new_records))


def test_a_tumbling_window_reports_its_last_complete_window_labels_included(heldout, reference):
    """--window equal to --step: every evaluation's concept drift covers the last complete window,
    and the result between two steps still does (the filling window is not a reset to nothing)."""
    monitor = DriftMonitor(reference, CountWindow(reference, window=1000, step=1000))
    cols = stream(heldout, 3500, seed=3)
    results = feed(monitor, cols, batch=500)
    assert [r.pane for r in results] == [0, 1, 2]
    # each evaluation sees the labels fed by then: the first, half its window (labels follow each batch)
    assert [r.joined for r in results] == [500, 1000, 1000] and all(
        r.concept_drift is not None for r in results
    )
    latest = monitor.result()  # 500 records into the fourth window: the third's labels still count
    assert latest.pane == 2 and latest.joined == 1000 and latest.rolling_mse is not None
    errors = (cols["prediction"][2000:3000] - cols["price"][2000:3000]) ** 2
    assert latest.rolling_mse == pytest.approx(errors.mean(), rel=1e-12)
