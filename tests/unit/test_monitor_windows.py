"""Panes and windows on a small synthetic reference: sliding, lateness, merging, persistence; the join."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.join import LabelJoin
from monitor.reference import Reference
from monitor.windows import UNSEEN_OVERFLOW, CountWindow, PredictionBatch, TimeWindow


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
    [
        ({"window": 100, "step": 200}, "smaller than step"),
        ({"window": 100, "step": 30}, "multiple of step"),
        ({"window": 100, "step": 0}, "step must be > 0"),
        ({"window": 100.0, "step": 25}, "integers"),
    ],
)
def test_window_arguments_are_checked(reference, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CountWindow(reference, **kwargs)


def test_join_in_both_orders():
    join = LabelJoin(ttl_ms=10_000)
    got = join.add_predictions(["a", "b"], [0, 0], [10.0, 20.0], [0, 0])
    assert len(got) == 0
    got = join.add_labels(["b", "c"], [1, 1], [23.0, 5.0])  # b joins, c waits for its prediction
    assert (
        got.squared.tolist() == [9.0]
        and got.absolute.tolist() == [3.0]
        and got.pane_ids.tolist() == [0]
    )
    got = join.add_predictions(["c"], [2], [7.0], [1])
    assert got.squared.tolist() == [4.0] and got.pane_ids.tolist() == [1]
    assert join.joined == 2 and join.pending == 1  # "a" still waits


def test_join_expires_by_ttl_and_by_count():
    join = LabelJoin(ttl_ms=10_000, max_pending=3)
    join.add_predictions(["a", "b"], [0, 5_000], [1.0, 1.0], [0, 0])
    join.add_labels(
        ["x"], [12_000], [1.0]
    )  # the labels' watermark 12s: "a" (0s) is older than the 10s TTL
    assert join.expired_predictions == 1 and list(join.predictions) == ["b"]
    assert len(join.add_labels(["a"], [12_500], [1.0])) == 0  # too late to join: waits as a label
    join.add_predictions(["p", "q", "r"], [13_000] * 3, [1.0] * 3, [1] * 3)
    assert len(join.predictions) == 3 and join.expired_predictions == 2  # "b" evicted by count
    join.add_predictions(
        ["s"], [30_000], [1.0], [2]
    )  # the predictions' watermark 30s: labels x, a expire
    assert join.expired_labels == 2 and join.expired_predictions == 3  # and "p" by count
    join.add_labels(["y"], [30_000], [1.0])  # the labels' watermark 30s: q, r (13s) expire; s waits
    assert join.pending == 2 and join.expired_predictions == 5 and list(join.predictions) == ["s"]
    restored = LabelJoin(ttl_ms=10_000, max_pending=3)
    restored.load_dict(json.loads(json.dumps(join.to_dict())))
    assert restored.to_dict() == join.to_dict()


def test_labels_published_after_their_predictions_join_whatever_the_event_time_spacing():
    """Predictions minutes apart in event time, read in batches before their labels (the newcomer's
    log): the predictions' clock runs days ahead, the labels' does not, so every label joins."""
    join = LabelJoin(ttl_ms=3_600_000)
    ids = [f"r{i}" for i in range(5000)]
    ts = np.arange(5000) * 450_000  # 7.5 minutes apart: 26 days of event time
    for start in range(0, 5000, 1000):
        part = slice(start, start + 1000)
        join.add_predictions(ids[part], ts[part], np.ones(1000), np.zeros(1000, np.int64))
        join.add_labels(ids[part], ts[part], np.ones(1000))
    assert (join.joined, join.expired_predictions, join.expired_labels, join.pending) == (
        5000,
        0,
        0,
        0,
    )


def test_a_partition_read_ahead_expires_nothing_of_the_others():
    """A consumer reads runs of one partition: partition 0's labels a day ahead must not expire the
    predictions whose labels wait on partition 1; the watermark is the slowest partition's."""
    join = LabelJoin(ttl_ms=60_000, partitions=(2, 2))
    join.add_predictions(["a", "b"], [0, 0], [1.0, 1.0], [0, 0], partition=np.array([0, 1]))
    join.add_labels(
        ["c"], [86_400_000], [1.0], partition=0
    )  # partition 1 has delivered no label yet
    assert join.expired_predictions == 0
    join.add_labels(["b"], [10], [1.0], partition=1)  # b joins; the labels' watermark is now 10 ms
    assert join.expired_predictions == 0 and list(join.predictions) == ["a"]
    join.add_labels(["d"], [120_000], [1.0], partition=1)  # both partitions past a + TTL: a expires
    assert (
        join.expired_predictions == 1 and join.pending == 2
    )  # labels c and d wait for predictions


def test_expiry_watch_speaks_when_a_large_share_expires():
    from monitor.join import ExpiryWatch

    watch = ExpiryWatch(share=0.1, at_least=100, every_s=60)
    counters = {"joined": 0, "expired_predictions": 0, "expired_labels": 0}
    assert watch.check(counters, 0.0) is None
    assert (
        watch.check({**counters, "joined": 1000, "expired_predictions": 99}, 1.0) is None
    )  # under 100
    said = watch.check(
        {**counters, "joined": 1000, "expired_predictions": 120, "expired_labels": 3}, 2.0
    )
    assert (
        said
        == "120 of 1120 predictions waiting for a label expired without it (and 3 labels without their prediction)"
    )
    assert (
        watch.check({**counters, "joined": 1000, "expired_predictions": 900}, 30.0) is None
    )  # once a minute
    assert (
        watch.check({**counters, "joined": 9000, "expired_predictions": 200}, 70.0) is None
    )  # 1% since it spoke


def test_join_skips_predictions_dropped_as_late():
    join = LabelJoin()
    join.add_predictions(["a", "b"], [0, 0], [1.0, 2.0], [-1, 3])
    assert list(join.predictions) == ["b"]
    with pytest.raises(ValueError, match="label_ttl"):
        LabelJoin(ttl_ms=0)


def test_batch_from_prediction_messages(reference):
    messages = [
        {
            "id": 7,
            "ts": 1000,
            "scored_at": 1001,
            "model_version": "v",
            "prediction": 101.5,
            "features": {"x": 2.5, "c": "b"},
        },
        {
            "id": "8",
            "ts": 2000,
            "scored_at": 2001,
            "model_version": "v",
            "prediction": 99.0,
            "features": {"x": 3.0, "c": "zz"},
        },
    ]
    b = PredictionBatch.from_messages(messages, ["x"], ["c"])
    assert b.ids.tolist() == ["7", "8"] and b.ts.tolist() == [1000, 2000]
    window = CountWindow(reference, 2, 2)
    assert window.update(b)[1] == [0]
    assert window.panes[0].unseen == {"c": {"zz": 1}}
    with pytest.raises(ValueError, match="rows"):
        PredictionBatch(b.ids, b.ts[:1], b.predictions, b.numeric, b.categorical)


class _NaiveJoin:
    """The join's rules one record at a time, in plain dicts: the specification LabelJoin must match."""

    def __init__(self, ttl_ms: int, max_pending: int) -> None:
        self.ttl_ms, self.max_pending = ttl_ms, max_pending
        self.predictions: dict[str, tuple[int, float, int]] = {}
        self.labels: dict[str, tuple[int, float]] = {}
        self.newest = {"predictions": None, "labels": None}  # each side's event-time clock
        self.joined = self.expired_predictions = self.expired_labels = self.duplicates = 0

    def add_predictions(self, ids, ts, predictions, panes):
        rows = []
        for key, t, p, pane in zip(ids, ts, predictions, panes):
            if pane < 0:
                continue
            if key in self.labels:
                rows.append((pane, p, self.labels.pop(key)[1]))
                continue
            if key in self.predictions:
                self.duplicates += 1
                del self.predictions[key]
            self.predictions[key] = (t, p, pane)
        return self._advance("predictions", ts, rows)

    def add_labels(self, ids, ts, prices):
        rows = []
        for key, t, price in zip(ids, ts, prices):
            if key in self.predictions:
                _, p, pane = self.predictions.pop(key)
                rows.append((pane, p, price))
            else:
                self.labels.pop(key, None)
                self.labels[key] = (t, price)
        return self._advance("labels", ts, rows)

    def _advance(self, side, ts, rows):
        if len(ts):
            self.newest[side] = (
                max(ts) if self.newest[side] is None else max(self.newest[side], max(ts))
            )
        # each side against the other's clock
        self.expired_predictions += self._expire(self.predictions, self.newest["labels"])
        self.expired_labels += self._expire(self.labels, self.newest["predictions"])
        self.joined += len(rows)
        return rows

    def _expire(self, pending, watermark):
        expired = 0
        while len(pending) > self.max_pending:
            del pending[next(iter(pending))]
            expired += 1
        while (
            pending
            and watermark is not None
            and pending[next(iter(pending))][0] < watermark - self.ttl_ms
        ):
            del pending[next(iter(pending))]
            expired += 1
        return expired


@pytest.mark.parametrize("seed", range(6))
def test_join_matches_the_one_record_at_a_time_rules(seed):
    """Random interleavings with redelivered ids, repeats inside a batch, late labels, dropped
    predictions, TTL and count eviction: the batched join equals the plain-dict rules, and its
    state round-trips."""
    rng = np.random.default_rng(seed)
    ttl, cap = int(rng.integers(500, 5_000)), int(rng.integers(20, 400))
    join, naive = LabelJoin(ttl_ms=ttl, max_pending=cap), _NaiveJoin(ttl, cap)
    clock = 0
    for step in range(300):
        k = int(rng.integers(0, 60))
        ids = [f"r{i}" for i in rng.integers(0, 800, k)]  # a small id space: plenty of repeats
        ts = (clock + rng.integers(-2_000, 200, k)).clip(0).tolist()
        clock += int(rng.integers(0, 150))
        values = rng.normal(1000, 300, k).round(2).tolist()
        if rng.random() < 0.5:
            panes = rng.integers(-1, 5, k).tolist()  # -1: dropped by the window
            got, want = (
                join.add_predictions(ids, ts, values, panes),
                naive.add_predictions(ids, ts, values, panes),
            )
        else:
            got, want = join.add_labels(ids, ts, values), naive.add_labels(ids, ts, values)
        errors = [p - price for _, p, price in want]
        assert got.pane_ids.tolist() == [pane for pane, _, _ in want]
        assert got.squared.tolist() == pytest.approx([e * e for e in errors])
        assert got.absolute.tolist() == pytest.approx([abs(e) for e in errors])
        assert list(join.predictions) == list(naive.predictions) and list(join.labels) == list(
            naive.labels
        )
        assert (join.joined, join.expired_predictions, join.expired_labels, join.duplicates) == (
            naive.joined,
            naive.expired_predictions,
            naive.expired_labels,
            naive.duplicates,
        )
        if step % 50 == 49:
            state = join.to_dict()
            predictions, labels = state["predictions"], state["labels"]
            assert [list(r) for r in zip(*predictions.values())] == [
                [k, *v] for k, v in naive.predictions.items()
            ]
            assert [list(r) for r in zip(*labels.values())] == [
                [k, *v] for k, v in naive.labels.items()
            ]
            join = LabelJoin(ttl_ms=ttl, max_pending=cap)
            join.load_dict(json.loads(json.dumps(state)))
            assert join.to_dict() == state
            # a snapshot from before the columns ([id, ts, value(, pane)] rows) restores the same
            rows = {
                **state,
                "predictions": [[k, *v] for k, v in naive.predictions.items()],
                "labels": [[k, *v] for k, v in naive.labels.items()],
            }
            older = LabelJoin(ttl_ms=ttl, max_pending=cap)
            older.load_dict(json.loads(json.dumps(rows)))
            assert older.to_dict() == state
    assert (
        naive.joined > 100
        and naive.duplicates > 10
        and naive.expired_predictions + naive.expired_labels > 100
    )


@pytest.fixture(scope="module")
def classifier() -> Reference:
    """Two classes with probabilities; the class "no" is rare in the predictions."""
    rng = np.random.default_rng(1)
    m = 2000
    p_yes = rng.beta(5, 1, m)
    predicted = np.where(p_yes > 0.5, "yes", "no").astype(object)
    return Reference.from_arrays(
        {"x": rng.normal(0, 1, m)},
        {"c": rng.choice(["a", "b"], m)},
        predicted,
        np.where(rng.random(m) < 0.1, "no", predicted),
        task="classification",
        probabilities={"no": 1 - p_yes, "yes": p_yes},
        classes=("no", "yes"),
    )


def test_classifier_outputs_are_pane_columns(classifier):
    """KS columns (x, p(no), p(yes)) then chi-square columns (c, the predicted class); a class the
    reference never predicted is counted by name, as an unseen category is."""
    assert list(classifier.layout) == ["x", "p(no)", "p(yes)", "c", "prediction"]
    window = CountWindow(classifier, 10, 5)
    b = PredictionBatch(
        np.array([f"r{i}" for i in range(10)], dtype=object),
        np.arange(10) * 1000,
        np.array(["yes"] * 6 + ["no", "no", "maybe", "maybe"], dtype=object),
        {"x": np.zeros(10)},
        {"c": np.array(["a"] * 10, dtype=object)},
        {"no": np.full(10, 0.2), "yes": np.full(10, 0.8)},
    )
    assert len(b.rows(2, 5).probabilities["yes"]) == 3
    pane_ids, closed = window.update(b)
    assert closed == [0, 1]
    pane = window.aggregate(1)
    layout = window.layout
    assert pane.counts[layout.slices["prediction"]].tolist() == [2, 6]  # no, yes
    assert pane.unseen == {"prediction": {"maybe": 2}}
    assert pane.counts[layout.slices["p(yes)"]].sum() == 10 and pane.counts[
        layout.slices["c"]
    ].tolist() == [10, 0]
    state = json.loads(json.dumps(window.to_dict()))
    restored = CountWindow(classifier, 10, 5)
    restored.load_dict(state)
    assert restored.aggregate(1).unseen == pane.unseen and np.array_equal(
        restored.aggregate(1).counts, pane.counts
    )
    with pytest.raises(ValueError, match="no column 'p\\(no\\)'"):
        window.update(
            PredictionBatch(b.ids, b.ts, b.predictions, b.numeric, b.categorical)
        )  # no probabilities


def test_classifier_join_counts_misclassified_records():
    join = LabelJoin(ttl_ms=10_000, classification=True)
    join.add_predictions(
        ["a", "b", "c"], [0, 0, 0], np.array(["yes", "no", "yes"], dtype=object), [0, 0, 1]
    )
    got = join.add_labels(["b", "a", "d"], [1, 1, 1], np.array(["yes", "yes", "no"], dtype=object))
    assert got.squared.tolist() == got.absolute.tolist() == [
        1.0,
        0.0,
    ] and got.pane_ids.tolist() == [0, 0]
    state = json.loads(json.dumps(join.to_dict()))
    assert state["predictions"]["prediction"] == ["yes"] and state["labels"]["label"] == ["no"]
    restored = LabelJoin(ttl_ms=10_000, classification=True)
    restored.load_dict(state)
    assert restored.to_dict() == state
    got = restored.add_predictions(
        ["d"], [2], np.array(["no"], dtype=object), [1]
    )  # d's label waited
    assert got.squared.tolist() == [0.0]
    assert restored.add_labels(
        ["c"], [3], np.array(["unknown"], dtype=object)
    ).squared.tolist() == [1.0]


def test_batch_from_classifier_messages():
    messages = [
        {
            "id": 1,
            "ts": 5,
            "prediction": True,
            "probabilities": {"false": 0.1, "true": 0.9},
            "features": {"x": 1.0, "c": 3},
        },
        {
            "id": 2,
            "ts": 6,
            "prediction": False,
            "probabilities": {"false": 0.7, "true": 0.3},
            "features": {"x": 2.0, "c": 4},
        },
    ]
    b = PredictionBatch.from_messages(messages, ["x"], ["c"], classification=True)
    assert b.predictions.tolist() == ["true", "false"] and b.categorical["c"].tolist() == ["3", "4"]
    assert b.probabilities["true"].tolist() == [0.9, 0.3]
