"""Panes and windows on a small synthetic reference: sliding, lateness, merging, persistence; the join."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # no conftest: make monitor importable

from monitor.join import LabelJoin  # noqa: E402
from monitor.reference import Reference  # noqa: E402
from monitor.windows import UNSEEN_OVERFLOW, CountWindow, PredictionBatch, TimeWindow  # noqa: E402


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(0)
    m = 2000
    return Reference.from_arrays(
        {"x": rng.integers(0, 20, m) / 2.0},
        {"c": rng.choice(["a", "b", "c"], m)},
        predictions=rng.normal(100, 10, m),
        labels=rng.normal(100, 10, m),
    )


def batch(n: int, seed: int, ts=None, start: int = 0) -> PredictionBatch:
    rng = np.random.default_rng(seed)
    return PredictionBatch(
        ids=np.array([f"r{start + i}" for i in range(n)], dtype=object),
        ts=np.asarray(ts if ts is not None else np.arange(start, start + n) * 1000, dtype=np.int64),
        predictions=rng.normal(100, 10, n),
        numeric={"x": rng.integers(0, 22, n) / 2.0},
        categorical={"c": rng.choice(["a", "b", "c", "new"], n, p=[0.3, 0.3, 0.3, 0.1])},
    )


def test_count_window_slides_every_step(reference):
    window = CountWindow(reference, window=100, step=25)
    pane_ids, closed = window.update(batch(60, 1))
    assert closed == [0, 1]
    assert pane_ids.tolist() == [0] * 25 + [1] * 25 + [2] * 10
    pane_ids, closed = window.update(batch(90, 2, start=60))
    assert closed == [2, 3, 4, 5]
    assert pane_ids[0] == 2 and pane_ids[-1] == 5
    assert window.aggregate(5).records == 100  # panes 2..5
    assert window.aggregate(3).records == 100  # panes 0..3
    window.expire()
    assert sorted(window.panes) == [1, 2, 3, 4, 5]  # memory: window/step panes + the newest
    assert window.last_closed == 5


def test_time_window_assigns_by_floor_and_drops_late(reference):
    window = TimeWindow(reference, window_ms=30_000, step_ms=10_000)
    pane_ids, closed = window.update(batch(3, 1, ts=[5_000, 12_000, 19_999]))
    assert pane_ids.tolist() == [0, 1, 1] and closed == [0]
    # pane 4 arrives: panes 1..3 close; the record at 1_000 (pane 0) is still within the window
    # before pane 4 is seen, the one at 2_000 (pane 0) is late once pane 4 is the watermark (the
    # window ending at the last closed pane 3 holds panes 1..3).
    pane_ids, closed = window.update(batch(3, 2, ts=[1_000, 40_000, 2_000]))
    assert pane_ids.tolist() == [0, 4, -1]
    assert closed == [1, 2, 3]
    assert window.late_records == 1
    assert window.aggregate(4).records == 1  # panes 2..4
    assert window.aggregate(2).records == 4  # panes 0..2
    window.expire()
    assert sorted(window.panes) == [1, 4]


def test_panes_merge_to_the_window_over_the_union(reference):
    # two instances each consume one partition; their panes added equal one window over both
    left, right, union = (CountWindow(reference, 100, 50) for _ in range(3))
    a, b = batch(50, 1), batch(50, 2, start=50)
    left.update(a)
    right.update(b)
    union.update(a)
    union._add(np.zeros(50, dtype=np.int64), b, np.ones(50, dtype=bool))
    merged = left.panes[0].merge(right.panes[0])
    assert np.array_equal(merged.counts, union.panes[0].counts)
    assert merged.unseen == union.panes[0].unseen and merged.records == 100
    assert merged.unseen["c"]["new"] == union.panes[0].unseen["c"]["new"] > 0


def test_window_state_round_trips_through_json(reference):
    window = CountWindow(reference, 100, 25)
    window.update(batch(130, 3))
    window.add_errors([4, 4, 0], [1.0, 4.0, 9.0], [1.0, 2.0, 3.0])
    state = json.loads(json.dumps(window.to_dict()))
    restored = CountWindow(reference, 100, 25)
    restored.load_dict(state)
    for q in (3, 4, 5):
        a, b = window.aggregate(q), restored.aggregate(q)
        assert np.array_equal(a.counts, b.counts) and a.unseen == b.unseen
        assert (a.records, a.joined, a.sse, a.sae) == (b.records, b.joined, b.sse, b.sae)
    assert restored.aggregate(4).joined == 2
    assert restored.late_errors == 1  # pane 0 had left the window ending at the newest pane 5
    with pytest.raises(ValueError, match="TimeWindow"):
        TimeWindow(reference).load_dict(state)


def test_unseen_names_are_bounded_per_pane(reference):
    window = CountWindow(reference, 10, 10, max_unseen=2)
    b = batch(10, 4)
    b.categorical["c"][:] = [f"z{i}" for i in range(10)]
    window.update(b)
    assert window.panes[0].unseen["c"] == {"z0": 1, "z1": 1, UNSEEN_OVERFLOW: 8}


@pytest.mark.parametrize(
    "kwargs, message",
    [({"window": 100, "step": 200}, "smaller than step"), ({"window": 100, "step": 30}, "multiple of step"),
     ({"window": 100, "step": 0}, "step must be > 0"), ({"window": 100.0, "step": 25}, "integers")],
)
def test_window_arguments_are_checked(reference, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CountWindow(reference, **kwargs)


def test_join_in_both_orders():
    join = LabelJoin(ttl_ms=10_000)
    got = join.add_predictions(["a", "b"], [0, 0], [10.0, 20.0], [0, 0])
    assert len(got) == 0
    got = join.add_labels(["b", "c"], [1, 1], [23.0, 5.0])  # b joins, c waits for its prediction
    assert got.squared.tolist() == [9.0] and got.absolute.tolist() == [3.0] and got.pane_ids.tolist() == [0]
    got = join.add_predictions(["c"], [2], [7.0], [1])
    assert got.squared.tolist() == [4.0] and got.pane_ids.tolist() == [1]
    assert join.joined == 2 and join.pending == 1  # "a" still waits


def test_join_expires_by_ttl_and_by_count():
    join = LabelJoin(ttl_ms=10_000, max_pending=3)
    join.add_predictions(["a", "b"], [0, 5_000], [1.0, 1.0], [0, 0])
    join.add_labels(["x"], [12_000], [1.0])  # watermark 12s: "a" (0s) is older than the 10s TTL
    assert join.expired_predictions == 1 and list(join.predictions) == ["b"]
    assert len(join.add_labels(["a"], [12_500], [1.0])) == 0  # too late to join: waits as a label
    join.add_predictions(["p", "q", "r"], [13_000] * 3, [1.0] * 3, [1] * 3)
    assert len(join.predictions) == 3 and join.expired_predictions == 2  # "b" evicted by count
    join.add_labels(["y"], [30_000], [1.0])
    assert join.pending == 1 and join.expired_labels == 2 and join.expired_predictions == 5
    restored = LabelJoin(ttl_ms=10_000, max_pending=3)
    restored.load_dict(json.loads(json.dumps(join.to_dict())))
    assert restored.to_dict() == join.to_dict()


def test_join_skips_predictions_dropped_as_late():
    join = LabelJoin()
    join.add_predictions(["a", "b"], [0, 0], [1.0, 2.0], [-1, 3])
    assert list(join.predictions) == ["b"]
    with pytest.raises(ValueError, match="label_ttl"):
        LabelJoin(ttl_ms=0)


def test_batch_from_prediction_messages(reference):
    messages = [
        {"id": 7, "ts": 1000, "scored_at": 1001, "model_version": "v", "prediction": 101.5,
         "features": {"x": 2.5, "c": "b"}},
        {"id": "8", "ts": 2000, "scored_at": 2001, "model_version": "v", "prediction": 99.0,
         "features": {"x": 3.0, "c": "zz"}},
    ]
    b = PredictionBatch.from_messages(messages, ["x"], ["c"])
    assert b.ids.tolist() == ["7", "8"] and b.ts.tolist() == [1000, 2000]
    window = CountWindow(reference, 2, 2)
    assert window.update(b)[1] == [0]
    assert window.panes[0].unseen == {"c": {"zz": 1}}
    with pytest.raises(ValueError, match="rows"):
        PredictionBatch(b.ids, b.ts[:1], b.predictions, b.numeric, b.categorical)
