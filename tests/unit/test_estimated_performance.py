"""The estimated performance inside the monitor: per-record estimates summed in panes, merged by
addition, saved with the window, tested as one more calibrated column. Seeded streams from the
simulator's own draws (`producer.simulate.generate_chunks`) on the diamonds reference, no labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract.artifacts import REFERENCE_FILE, read_reference
from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema
from monitor.drift import DriftMonitor
from monitor.nanny import fit_from_schema
from monitor.reference import Reference
from monitor.windows import CountWindow, PredictionBatch, TimeWindow

ONSET = 5000


@pytest.fixture(scope="module")
def diamonds(model_dir):
    schema = load_schema(DEFAULT_SCHEMA)
    frame = read_reference(model_dir / REFERENCE_FILE, schema)
    reference = Reference.from_schema(schema, frame)
    return schema, frame, reference, fit_from_schema(schema, frame, reference).estimator


def stream(diamonds, scenario: str, count: int, seed: int) -> PredictionBatch:
    """`count` records as the simulator draws them (resampling scenarios: real rows with their own
    predictions), as one batch; no labels."""
    from producer.grammar import parse_scenario
    from producer.simulate import SimulateConfig, generate_chunks, source_columns

    schema, frame, _, _ = diamonds
    source = source_columns(frame, schema)
    source["prediction"] = frame["prediction"].to_numpy(np.float64)
    config = SimulateConfig(
        count=count, scenario=parse_scenario(scenario, schema, source), onset=ONSET, seed=seed
    )
    parts = [chunk for _, chunk, _ in generate_chunks(source, config)]
    cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    return PredictionBatch(
        np.array([f"{seed}-{i}" for i in range(count)], dtype=object),
        np.arange(count) * 100,
        cols["prediction"],
        {c: cols[c].astype(np.float64) for c in schema.numeric},
        {c: cols[c].astype(object) for c in schema.categorical},
    )


def first_estimated_drop(monitor: DriftMonitor, batch: PredictionBatch) -> int | None:
    """Records after the onset when the estimated performance first alarmed, in 250-record batches."""
    for start in range(0, len(batch), 250):
        for result in monitor.update(batch.rows(start, start + 250)):
            if result.estimate_detected:
                return (result.pane + 1) * 250 - ONSET
    return None


def test_the_estimate_counts_as_one_more_test_per_scale(diamonds):
    _, _, reference, estimator = diamonds
    plain = DriftMonitor(reference, CountWindow(reference))
    estimated = DriftMonitor(reference, CountWindow(reference, estimator=estimator))
    assert (plain.calibration.tests, estimated.calibration.tests) == (
        15,
        17,
    )  # 2 x (6 + 1 [+ 1]) + 1


@pytest.mark.parametrize(
    "scenario, alarms", [("tilt:carat:1.2", True), ("carat-shift", False), ("none", False)]
)
def test_a_harmful_shift_drops_the_estimate_before_any_label(diamonds, scenario, alarms):
    """tilt:carat:1.2 (more big stones: MSE x1.65) alarms within a window; carat-shift (fewer: MSE
    x0.48) and a calm stream never do, though carat itself drifts under carat-shift."""
    _, _, reference, estimator = diamonds
    monitor = DriftMonitor(reference, CountWindow(reference, estimator=estimator))
    delay = first_estimated_drop(monitor, stream(diamonds, scenario, ONSET + 10_000, seed=11))
    if alarms:
        assert delay is not None and delay <= 1000, delay
    else:
        assert delay is None, delay
    latest = monitor.result()
    assert (
        latest.joined == 0 and latest.rolling_mse is None
    )  # no label: the estimate is all there is
    assert latest.estimate.records == {"window": 1000, "recent": 500}[latest.estimate_scale]
    assert latest.estimate.metric == "mse"
    direction = {"tilt:carat:1.2": 1, "carat-shift": -1}.get(scenario)
    if direction:  # the estimated MSE moves the way the realized one does
        assert np.sign(latest.estimate.score) == direction


def test_panes_sum_the_per_record_estimates_and_merge_by_addition(diamonds):
    _, _, reference, estimator = diamonds
    batch = stream(diamonds, "none", 3000, seed=5)
    window = TimeWindow(reference, window_ms=300_000, step_ms=100_000, estimator=estimator)
    window.update(batch)
    per_record = estimator.per_record(batch, window.layout.encode(batch))
    for pane_id, pane in window.panes.items():
        rows = batch.ts // 100_000 == pane_id
        assert pane.estimated == pane.records == int(rows.sum())
        np.testing.assert_allclose(pane.estimates, per_record[rows].sum(axis=0), rtol=1e-12)
    whole = window.aggregate(2)
    np.testing.assert_allclose(whole.estimates, per_record.sum(axis=0), rtol=1e-12)
    # two halves of the stream, in two windows, add up to the whole
    halves = [
        TimeWindow(reference, window_ms=300_000, step_ms=100_000, estimator=estimator)
        for _ in range(2)
    ]
    halves[0].update(batch.rows(0, 1500))
    halves[1].update(batch.rows(1500, 3000))
    merged = halves[0].aggregate(2).merge(halves[1].aggregate(2))
    np.testing.assert_allclose(merged.estimates, whole.estimates, rtol=1e-12)
    assert merged.estimated == whole.estimated == 3000


def test_the_estimates_survive_a_restart_and_another_estimator_is_not_merged_in(diamonds):
    _, _, reference, estimator = diamonds
    monitor = DriftMonitor(reference, CountWindow(reference, estimator=estimator))
    monitor.update(stream(diamonds, "tilt:carat:1.2", 6000, seed=2))
    state = json.loads(json.dumps(monitor.to_dict()))
    restored = DriftMonitor(reference, CountWindow(reference, estimator=estimator))
    restored.load_dict(state)
    assert not restored.window.estimates_dropped
    assert restored.result().estimate == monitor.result().estimate
    # a window saved without an estimator: its panes keep their records, none of them is estimated
    plain = DriftMonitor(reference, CountWindow(reference))
    plain.update(stream(diamonds, "none", 1000, seed=3))
    upgraded = DriftMonitor(reference, CountWindow(reference, estimator=estimator))
    upgraded.load_dict(json.loads(json.dumps(plain.to_dict())))
    assert upgraded.window.estimates_dropped and upgraded.result().records == 1000
    assert upgraded.result().estimate is None  # nothing estimated yet: not a reassuring number
    upgraded.update(stream(diamonds, "none", 250, seed=4))
    assert upgraded.result().estimate.records == 250  # only the records estimated since
