"""Per-partition panes merged by one evaluator equal one monitor's time windows (monitor.panes)."""

import json
import random

import numpy as np
import pytest

from monitor.drift import DriftMonitor, evaluate_all
from monitor.panes import PaneMerger, PaneReport, PartitionPanes
from monitor.windows import Pane, PredictionBatch, TimeWindow
from tests.unit.test_monitor_drift import CATEGORICAL, NUMERIC, frame, heldout, reference, stream  # noqa: F401

WINDOW_MS, STEP_MS, PARTITIONS = (
    60_000,
    10_000,
    6,
)  # 10 records/s: 100 records a pane, 6 panes a window


def batch_of(cols, rows) -> PredictionBatch:
    return PredictionBatch(
        cols["id"][rows],
        cols["ts"][rows],
        cols["prediction"][rows],
        {c: cols[c][rows] for c in NUMERIC},
        {c: cols[c][rows] for c in CATEGORICAL},
    )


def single_monitor(reference, cols, error_test: bool = False):
    """One monitor over the whole stream in event-time order, labels after the predictions."""
    monitor = DriftMonitor(
        reference, TimeWindow(reference, WINDOW_MS, STEP_MS), error_test=error_test
    )
    results = []
    for start in range(0, len(cols["id"]), 50):
        results += monitor.update(
            batch_of(cols, np.arange(start, min(start + 50, len(cols["id"]))))
        )
    monitor.update_labels(cols["id"], cols["ts"], cols["price"])
    return monitor, results


def partition_reports(reference, cols, partition, owner=None, rows=None):
    """Reports of one partition's worker fed that partition's records (`rows`) in batches of 20."""
    owner = owner or PartitionPanes(partition, reference, WINDOW_MS, STEP_MS)
    rows = (
        np.flatnonzero(np.arange(len(cols["id"])) % PARTITIONS == partition)
        if rows is None
        else rows
    )
    reports = []
    for start in range(0, len(rows), 20):
        owner.add_predictions(batch_of(cols, rows[start : start + 20]))
        reports += owner.publishable()
    return owner, reports


def label_reports(owner, cols, partition):
    rows = np.flatnonzero(np.arange(len(cols["id"])) % PARTITIONS == partition)
    owner.add_labels(list(cols["id"][rows]), cols["ts"][rows], cols["price"][rows])
    return owner.publishable()


def interleave(streams, seed):
    """The reports of several producers on one topic: each producer's in order, the producers mixed."""
    rng, queues, out = random.Random(seed), [list(s) for s in streams if s], []
    while queues:
        queue = rng.choice(queues)
        out.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return out


def merged_results(monitor, merger, reports):
    """Feed reports (through JSON, as on the pane topic); evaluate what is due as it comes."""
    results = []
    for report in reports:
        merger.add(PaneReport.from_dict(json.loads(json.dumps(report.to_dict()))), now=0.0)
        due = merger.ready(now=0.0)
        results += evaluate_all(
            monitor.window.layout,
            monitor.calibration,
            [merger.evaluation(q, monitor.calibration.recent) for q in due],
            monitor.min_records,
        )
    return results


def latest(monitor, merger):
    return evaluate_all(
        monitor.window.layout,
        monitor.calibration,
        [merger.evaluation(merger.evaluated, monitor.calibration.recent)],
        monitor.min_records,
    )[0]


def assert_same(a, b):
    assert (a.pane, a.records, a.ready, a.joined) == (b.pane, b.records, b.ready, b.joined)
    for x, y in zip((*a.features, *a.outputs), (*b.features, *b.outputs)):
        assert (x.name, x.scale, x.records, x.detected) == (y.name, y.scale, y.records, y.detected)
        assert x.statistic == pytest.approx(y.statistic, rel=1e-9, abs=1e-12)
        assert x.threshold == pytest.approx(y.threshold, rel=1e-9)
    for field in (
        "data_drift",
        "prediction_drift",
        "rolling_mse",
        "concept_drift",
        "label_coverage",
    ):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9, abs=1e-12), field


def test_merged_partitions_equal_one_monitor(reference, heldout):
    cols = stream(heldout, 6000, seed=21, scenario="carat_1.1", onset=3000)
    monitor, expected = single_monitor(reference, cols)
    owners, streams = [], []
    for p in range(PARTITIONS):
        owner, reports = partition_reports(reference, cols, p)
        owners.append(owner)
        streams.append(reports)
    reports = interleave(streams, seed=1)
    reports[10:10] = reports[3:8]  # redelivered reports replace, they do not add
    merger = PaneMerger(
        monitor.window.layout, PARTITIONS, monitor.window.panes_per_window, grace_s=60
    )
    got = merged_results(monitor, merger, reports)
    assert [r.pane for r in got] == [r.pane for r in expected] and len(got) == 59
    for a, b in zip(got, expected):
        assert_same(a, b)
    assert any(r.dataset_detected for r in got[40:])  # the scenario is seen, the same way
    assert merger.stale == 5 and merger.late_records == 0
    merged_results(
        monitor,
        merger,
        interleave([label_reports(o, cols, p) for p, o in enumerate(owners)], seed=2),
    )
    final = latest(monitor, merger)
    assert final.joined == 600 and final.rolling_mse is not None
    assert_same(final, monitor.result())


def test_a_new_owner_replays_from_the_snapshot_and_outranks_the_old(reference, heldout):
    """Partition 2's worker dies after a snapshot; its next owner replays the rest under a higher epoch.
    The dead owner's reports after the snapshot (some arriving late, as a zombie's) change nothing."""
    cols = stream(heldout, 6000, seed=22)
    monitor, expected = single_monitor(reference, cols)
    streams = [partition_reports(reference, cols, p)[1] for p in range(PARTITIONS) if p != 2]
    rows = np.flatnonzero(np.arange(6000) % PARTITIONS == 2)
    old, before = partition_reports(reference, cols, 2, rows=rows[:400])
    snapshot = json.loads(json.dumps(old.to_dict()))
    _, after = partition_reports(reference, cols, 2, owner=old, rows=rows[400:700])  # then it dies
    heir = PartitionPanes(2, reference, WINDOW_MS, STEP_MS)
    heir.load_dict(snapshot)
    heir.take_ownership()
    _, replayed = partition_reports(reference, cols, 2, owner=heir, rows=rows[400:])
    zombie = after[len(after) // 2 :]
    reports = interleave([*streams, before + after[: len(after) // 2] + replayed], seed=3) + zombie
    merger = PaneMerger(
        monitor.window.layout, PARTITIONS, monitor.window.panes_per_window, grace_s=60
    )
    got = merged_results(monitor, merger, reports)
    assert len(got) == len(expected) == 59
    for a, b in zip(got, expected):
        assert_same(a, b)
    assert merger.stale >= len(zombie) > 0 and heir.epoch == old.epoch + 1


def test_grace_lets_a_silent_partition_be_late_and_counted(reference, heldout):
    cols = stream(heldout, 3000, seed=23)
    monitor = DriftMonitor(reference, TimeWindow(reference, WINDOW_MS, STEP_MS))
    merger = PaneMerger(
        monitor.window.layout, PARTITIONS, monitor.window.panes_per_window, grace_s=5
    )
    streams = [partition_reports(reference, cols, p)[1] for p in range(PARTITIONS)]
    for report in interleave(streams[:5], seed=4):
        merger.add(report, now=100.0)
    assert merger.ready(now=104.9) == []  # partition 5 has said nothing: wait out the grace
    due = merger.ready(now=105.0)
    assert due == list(range(29)) and merger.evaluated == 28
    assert (
        merger.evaluation(28, True).window.records == 500
    )  # 5 of the 6 partitions' 100 records a pane
    for report in streams[5]:
        merger.add(report, now=106.0)
    # Partition 5's panes 23..28 are still in the window ending at 28: merged, and counted late;
    # its panes 0..22 had left every window: counted as dropped.
    assert merger.evaluation(28, True).window.records == 600
    silent = np.arange(3000) % PARTITIONS == 5
    pane = cols["ts"] // STEP_MS
    assert (
        merger.late_panes == 6
        and merger.late_records == int((silent & (pane >= 23) & (pane <= 28)).sum()) == 100
    )
    assert merger.dropped_records == int((silent & (pane < 23)).sum()) == 383


def test_merger_state_round_trips(reference, heldout):
    cols = stream(heldout, 2000, seed=24)
    monitor = DriftMonitor(reference, TimeWindow(reference, WINDOW_MS, STEP_MS))
    merger = PaneMerger(
        monitor.window.layout, PARTITIONS, monitor.window.panes_per_window, grace_s=5
    )
    reports = interleave(
        [partition_reports(reference, cols, p)[1] for p in range(PARTITIONS)], seed=5
    )
    half = len(reports) // 2
    merged_results(monitor, merger, reports[:half])
    restored = PaneMerger(
        monitor.window.layout, PARTITIONS, monitor.window.panes_per_window, grace_s=5
    )
    restored.load_dict(json.loads(json.dumps(merger.to_dict())), now=0.0)
    tail_a, tail_b = (
        merged_results(monitor, merger, reports[half:]),
        merged_results(monitor, restored, reports[half:]),
    )
    assert len(tail_a) == len(tail_b) > 0
    for a, b in zip(tail_a, tail_b):
        assert_same(a, b)
    assert restored.counters == merger.counters


ERROR_FIELDS = (
    "error_test",
    "error_scale",
    "error_records",
    "error_detected",
    "error_statistic",
    "error_threshold",
    "error_pvalue",
)


def test_merged_partitions_equal_one_monitor_in_the_error_test(reference, heldout):
    """The error test's counts are integers: the partitions' panes add up to one monitor's exactly,
    so its statistic, threshold and verdict are the same numbers. Labels 20% higher from record
    3,000; a pane report from a worker that kept no error counts merges as zeros."""
    cols = stream(heldout, 6000, seed=25, scenario="price_1.2", onset=3000)
    monitor, _ = single_monitor(reference, cols, error_test=True)
    assert monitor.calibration.tests == 18
    owners, streams = zip(*(partition_reports(reference, cols, p) for p in range(PARTITIONS)))
    merger = PaneMerger(
        monitor.window.layout, PARTITIONS, monitor.window.panes_per_window, grace_s=60
    )
    merged_results(monitor, merger, interleave(streams, seed=5))
    merged_results(
        monitor,
        merger,
        interleave([label_reports(o, cols, p) for p, o in enumerate(owners)], seed=6),
    )
    final, single = latest(monitor, merger), monitor.result()
    assert final.pane == single.pane == 58
    assert (
        final.error_detected
        and final.error_records == {"window": 600, "recent": 300, "pane": 100}[final.error_scale]
    )
    assert [getattr(final, f) for f in ERROR_FIELDS] == [getattr(single, f) for f in ERROR_FIELDS]
    q = merger.evaluated
    for name, counts in monitor.window.scale_counts(q).items():
        assert np.array_equal(merger.scale_counts(q)[name], counts), name
    # a worker of the version before the error counts: its pane adds none, the others' still count
    old = json.loads(json.dumps(merger.reports[q][0].to_dict()))
    del old["error_counts"]
    merger.reports[q][0] = Pane.from_dict(old)
    assert merger.scale_counts(q)["pane"].sum() == 100 - old["joined"] == 83
    assert merger.aggregate(q).error_counts.sum() == 600 - old["joined"]
