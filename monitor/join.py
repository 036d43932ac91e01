"""Predictions joined to their labels by id, whichever arrives first, with bounded state.

Each side waits in an insertion-ordered dict until its partner arrives. State is bounded two ways:
- in event time, against the OTHER side's progress: a prediction expires once the labels have
  moved `ttl_ms` past it, that is when every label partition has delivered a label whose ts is at
  least `ttl_ms` newer than the prediction's (the labels' watermark: the minimum over their
  partitions of the newest ts seen); a label expires likewise against the predictions' watermark.
  Expired entries are counted (`expired_predictions` / `expired_labels`);
- by count: at most `max_pending` entries per side; the oldest inserted is evicted and counted as
  expired, so a label topic that stalls cannot grow memory.
Why the other side's watermark, per partition: a label that comes soon after its prediction in
processing order always joins, whatever the stream's event-time spacing. A batch of predictions
minutes apart in event time moves the predictions' clock by hours, but not the labels' clock, so
the labels published right after them still find them; and a partition read ahead of the others
(a consumer reads a run of one partition at a time) cannot expire the entries of the others,
because the watermark is the slowest partition's. A side whose partitions have not all delivered
yet has no watermark: nothing expires against it but by count. So `ttl_ms` means: how much later
in event time than the labels of other records a label may come.
Expiry walks from the oldest inserted entry and stops at the first young one, so an entry inserted
after a younger one may outlive its TTL by a little; `max_pending` still bounds it.

Matching is a dict lookup per record, done in C for a whole batch (see `_Pending`).
Values are floats for a regression model (prediction and label: squared and absolute error) and
class texts for a classifier (`classification=True`): a joined record's error is 1.0 when the
label is not the predicted class, else 0.0, as both its squared and its absolute error, so the
mean of either over joined records is the error rate.
A second prediction with a pending id replaces the first (at-least-once redelivery) and is counted
in `duplicates`; a label for an id already joined waits and expires like any unmatched label.

The error test (`monitor.errortest`, given as `error_test`): each joined record also gets its bin
(`Joined.bins`), from its prediction, its label and, for a classifier, the model's confidence in
the predicted class. That confidence is known only when the prediction arrives (the probabilities
are in its message), and the label may come long after: a classifier's pending predictions keep
it (`add_predictions(..., confidences=)`, saved in `to_dict`). A snapshot written before it was
kept restores those predictions with confidence 0.0, the least confident cell: their errors weigh
the least, so a restart can only hide some evidence for a window, never raise a false alarm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from monitor import errortest


@dataclass(frozen=True)
class Joined:
    """k joined records: pane id of the prediction, squared and absolute error, and the error
    test's bin (`ErrorTest.bin_index`; 0 without a test), (k,) each."""

    pane_ids: np.ndarray
    squared: np.ndarray
    absolute: np.ndarray
    bins: np.ndarray

    def __len__(self) -> int:
        return len(self.pane_ids)


class _Pending:
    """Entries waiting for their partner, insertion-ordered: id -> slot in columnar arrays.

    Adding and taking a batch are a few C-level dict calls (`map(slots.pop, ids)`) and numpy slices,
    not a Python loop per record. A taken or replaced entry only loses its id in `slots` and is
    marked dead; dead slots are compacted away when the arrays fill, so memory follows the live
    entries. Live slots, in slot order, are exactly `slots` in insertion order."""

    def __init__(self, capacity: int = 1024, dtype: Any = np.float64) -> None:
        self.slots: dict[str, int] = {}
        self.ids = np.empty(capacity, dtype=object)
        self.ts = np.empty(capacity, dtype=np.int64)
        self.value = np.empty(
            capacity, dtype=dtype
        )  # prediction, or the label: float, or class text (object)
        self.pane = np.empty(capacity, dtype=np.int64)  # the prediction's pane (labels: unused)
        self.confidence = np.zeros(
            capacity, dtype=np.float64
        )  # a classifier's confidence (else unused)
        self.alive = np.zeros(capacity, dtype=bool)
        self.head = 0  # every slot before head is dead
        self.size = 0  # slots used

    def __len__(self) -> int:
        return len(self.slots)

    def __iter__(self):
        return iter(self.slots)

    def take(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Remove the entries of `keys` that wait; returns (found (k,) bool, their slots in key order)."""
        slots = np.fromiter(map(self.slots.pop, keys, repeat(-1)), np.int64, len(keys))
        found = slots >= 0
        slots = slots[found]
        self.alive[slots] = False
        return found, slots

    def put(
        self,
        keys: Sequence[str],
        ts: np.ndarray,
        value: np.ndarray,
        pane: np.ndarray,
        confidence: np.ndarray | None = None,
    ) -> int:
        """Append k entries (confidence (k,), default 0.0); an id already waiting is replaced (it moves
        to the end). Returns how many replaced."""
        k = len(keys)
        if not k:
            return 0
        _, replaced = self.take(keys)
        self._reserve(k)
        start, stop = self.size, self.size + k
        before = len(self.slots)
        self.slots.update(zip(keys, range(start, stop)))
        self.ids[start:stop], self.ts[start:stop], self.value[start:stop], self.pane[start:stop] = (
            keys,
            ts,
            value,
            pane,
        )
        self.confidence[start:stop] = 0.0 if confidence is None else confidence
        self.alive[start:stop] = True
        self.size = stop
        repeated = before + k - len(self.slots)
        if repeated:  # ids more than once in this batch: the last one waits, in its own place
            last: dict[str, int] = {}
            for key, slot in zip(reversed(keys), range(stop - 1, start - 1, -1)):
                last.setdefault(key, slot)
            for key in last:
                del self.slots[key]
            self.slots.update(sorted(last.items(), key=itemgetter(1)))
            self.alive[start:stop] = False
            self.alive[list(last.values())] = True
        return len(replaced) + repeated

    def expire(self, cutoff: int | None, max_pending: int) -> int:
        """Drop the oldest entries beyond `max_pending`, then those older than `cutoff` from the oldest
        on, stopping at the first young one. Returns how many were dropped."""
        dropped = 0
        excess = len(self.slots) - max_pending
        while excess > 0:
            live = self._live_chunk()[:excess]
            self._drop(live)
            dropped += len(live)
            excess -= len(live)
        while cutoff is not None and self.slots:
            live = self._live_chunk()
            young = np.flatnonzero(self.ts[live] >= cutoff)
            old = live[: young[0]] if len(young) else live
            self._drop(old)
            dropped += len(old)
            if len(young):
                break
        return dropped

    def _live_chunk(self, chunk: int = 4096) -> np.ndarray:
        """Slots of the oldest live entries (at least one while any waits); moves head to the first."""
        while not self.alive[self.head]:
            window = self.alive[self.head : self.head + chunk]
            first = int(np.argmax(window))  # 0 when none in the window is alive
            self.head += first if window[first] else len(window)
        return self.head + np.flatnonzero(self.alive[self.head : self.head + chunk])

    def _drop(self, slots: np.ndarray) -> None:
        for key in self.ids[slots].tolist():
            del self.slots[key]
        self.alive[slots] = False
        self.ids[slots] = None

    def _reserve(self, k: int) -> None:
        """Room for k more slots: grow the arrays (slots keep their places) while few are dead, else
        compact the live entries to the front, which renumbers every slot (a new dict)."""
        capacity = len(self.alive)
        if self.size + k <= capacity:
            return
        n = len(self.slots)
        dead = self.size - n
        capacity = max(2 * (n + k), capacity)
        if 4 * dead < capacity:  # growing: amortised O(1) per entry, and no dict rebuilt
            keep = np.arange(self.size)
            capacity = max(capacity, 2 * (self.size + k))
        else:
            keep = self.head + np.flatnonzero(self.alive[self.head : self.size])
        columns = []
        for column in (self.ids, self.ts, self.value, self.pane, self.confidence, self.alive):
            moved = np.zeros(capacity, dtype=column.dtype)
            moved[: len(keep)] = column[keep]
            columns.append(moved)
        self.ids, self.ts, self.value, self.pane, self.confidence, self.alive = columns
        if len(keep) == n and n != self.size:  # compacted: every live entry has a new slot
            self.slots = dict(zip(self.ids[:n].tolist(), range(n)))
            self.head = 0
        self.size = len(keep)

    def columns(self) -> tuple[list[str], list[int], list[Any], list[int], list[float]]:
        """(ids, ts, values, panes, confidences) of the live entries, oldest first."""
        live = self.head + np.flatnonzero(self.alive[self.head : self.size])
        return (
            self.ids[live].tolist(),
            self.ts[live].tolist(),
            self.value[live].tolist(),
            self.pane[live].tolist(),
            self.confidence[live].tolist(),
        )


_NONE_JOINED = Joined(np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, np.int64))


class LabelJoin:
    """Pending predictions (ts, prediction, pane id) and labels (ts, label) by id; see the module doc.

    >>> join = LabelJoin(ttl_ms=60_000, classification=True)
    >>> len(join.add_predictions(["a", "b"], [0, 0], ["yes", "no"], [0, 0]))  # no label yet
    0
    >>> join.add_labels(["b", "a"], [5, 5], ["yes", "yes"]).squared.tolist()  # b was wrong
    [1.0, 0.0]

    Predictions hours apart in event time wait for labels that come after them:

    >>> join = LabelJoin(ttl_ms=60_000)
    >>> hours = [0, 3_600_000, 7_200_000]
    >>> len(join.add_predictions(["a", "b", "c"], hours, [1.0, 2.0, 3.0], [0, 1, 2]))
    0
    >>> len(join.add_labels(["a", "b", "c"], hours, [1.0, 2.0, 2.0])), join.expired_predictions
    (3, 0)
    """

    def __init__(
        self,
        ttl_ms: int = 3_600_000,
        max_pending: int = 200_000,
        classification: bool = False,
        partitions: tuple[int, int] = (1, 1),
        error_test: Any = None,
    ) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"label_ttl must be > 0 ms, got {ttl_ms}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.ttl_ms, self.max_pending = ttl_ms, max_pending
        self.classification = classification
        self.error_test = (
            error_test  # an `errortest.ErrorTest` (or None): it bins each joined record
        )
        self.dtype = object if classification else np.float64  # class texts, or numbers
        self.predictions = _Pending(dtype=self.dtype)
        self.labels = _Pending(dtype=self.dtype)
        self.clocks = {"predictions": _Clock(partitions[0]), "labels": _Clock(partitions[1])}
        self.joined = 0
        self.expired_predictions = 0
        self.expired_labels = 0
        self.duplicates = 0

    def expect_partitions(self, predictions: int, labels: int) -> None:
        """How many partitions each side is read from: a side's watermark waits for all of them."""
        self.clocks["predictions"].partitions, self.clocks["labels"].partitions = (
            predictions,
            labels,
        )

    def add_predictions(
        self,
        ids: Sequence[str],
        ts: ArrayLike,
        predictions: ArrayLike,
        pane_ids: ArrayLike,
        partition: int | ArrayLike = 0,
        confidences: ArrayLike | None = None,
    ) -> Joined:
        """n predictions (pane id -1 = dropped by the window: not kept) from `partition` (one, or one
        per record), with a classifier's confidence per record ((n,) float, or None: 0.0); returns
        those joined now."""
        ts, predictions, pane_ids = (
            np.asarray(ts, np.int64),
            np.asarray(predictions, self.dtype),
            np.asarray(pane_ids, np.int64),
        )
        sure = np.zeros(len(ts)) if confidences is None else np.asarray(confidences, np.float64)
        keys, stamps, values, panes = ids, ts, predictions, pane_ids
        keep = pane_ids >= 0
        if not keep.all():
            keys, stamps, values, panes = (
                np.asarray(ids, dtype=object)[keep],
                ts[keep],
                predictions[keep],
                pane_ids[keep],
            )
            sure = sure[keep]
        joined = _NONE_JOINED
        if len(self.labels):
            found, slots = self.labels.take(keys)
            if len(slots):
                joined = self._done(
                    panes[found], values[found], self.labels.value[slots], sure[found]
                )
                waiting = ~found
                keys, stamps, values, panes = (
                    np.asarray(keys, dtype=object)[waiting],
                    stamps[waiting],
                    values[waiting],
                    panes[waiting],
                )
                sure = sure[waiting]
        self.duplicates += self.predictions.put(keys, stamps, values, panes, sure)
        self.clocks["predictions"].advance(ts, partition)
        self._expire()
        return joined

    def add_labels(
        self, ids: Sequence[str], ts: ArrayLike, labels: ArrayLike, partition: int | ArrayLike = 0
    ) -> Joined:
        """n labels (true values: floats, or class texts) from `partition` (one, or one per record);
        returns the records joined now."""
        ts, labels = np.asarray(ts, np.int64), np.asarray(labels, self.dtype)
        found, slots = self.predictions.take(ids)
        joined = _NONE_JOINED
        keys, stamps, values = ids, ts, labels
        if len(slots):
            joined = self._done(
                self.predictions.pane[slots],
                self.predictions.value[slots],
                labels[found],
                self.predictions.confidence[slots],
            )
            waiting = ~found
            keys, stamps, values = (
                np.asarray(ids, dtype=object)[waiting],
                ts[waiting],
                labels[waiting],
            )
        self.labels.put(keys, stamps, values, np.zeros(len(keys), np.int64))
        self.clocks["labels"].advance(ts, partition)
        self._expire()
        return joined

    def _done(
        self,
        pane_ids: np.ndarray,
        predictions: np.ndarray,
        labels: np.ndarray,
        confidences: np.ndarray,
    ) -> Joined:
        self.joined += len(pane_ids)
        if self.error_test is None:
            bins = np.zeros(len(pane_ids), np.int64)
        else:
            bins = self.error_test.bin_index(
                predictions, labels, confidences if self.classification else None
            )
        if self.classification:
            wrong = (predictions != labels).astype(
                np.float64
            )  # 0/1: its own square and absolute value
            return Joined(pane_ids, wrong, wrong, bins)
        errors = predictions - labels
        return Joined(pane_ids, errors**2, np.abs(errors), bins)

    def _expire(self) -> None:
        # Each side against the other's watermark (see the module doc).
        labels, predictions = self.clocks["labels"].watermark, self.clocks["predictions"].watermark
        self.expired_predictions += self.predictions.expire(
            None if labels is None else labels - self.ttl_ms, self.max_pending
        )
        self.expired_labels += self.labels.expire(
            None if predictions is None else predictions - self.ttl_ms, self.max_pending
        )

    @property
    def pending(self) -> int:
        return len(self.predictions) + len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """Pending entries (as columns: a snapshot may hold 200,000) and counters, JSON-friendly; a
        classifier's pending predictions with their confidence."""
        ids, ts, values, panes, confidences = self.predictions.columns()
        label_ids, label_ts, labels, _, _ = self.labels.columns()
        predictions = {"id": ids, "ts": ts, "prediction": values, "pane": panes}
        if self.classification:
            predictions["confidence"] = confidences
        return {
            "predictions": predictions,
            "labels": {"id": label_ids, "ts": label_ts, "label": labels},
            "newest": {side: clock.to_list() for side, clock in self.clocks.items()},
            "joined": self.joined,
            "expired_predictions": self.expired_predictions,
            "expired_labels": self.expired_labels,
            "duplicates": self.duplicates,
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `to_dict` output; also snapshots of earlier versions, which listed [id, ts, value(, pane)]
        rows, named the labels' values "price", or kept no confidence (0.0, see the module doc)."""
        predictions, labels = state["predictions"], state["labels"]
        if isinstance(predictions, list):
            predictions = (
                dict(zip(("id", "ts", "prediction", "pane"), map(list, zip(*predictions))))
                if predictions
                else {}
            )
        if isinstance(labels, list):
            labels = dict(zip(("id", "ts", "label"), map(list, zip(*labels)))) if labels else {}
        self.predictions, self.labels = _Pending(dtype=self.dtype), _Pending(dtype=self.dtype)
        ids = [str(k) for k in predictions.get("id", [])]
        self.predictions.put(
            ids,
            np.array(predictions.get("ts", []), np.int64),
            _column(predictions.get("prediction", []), self.dtype),
            np.array(predictions.get("pane", []), np.int64),
            np.array(predictions.get("confidence", np.zeros(len(ids))), np.float64),
        )
        ids = [str(k) for k in labels.get("id", [])]
        self.labels.put(
            ids,
            np.array(labels.get("ts", []), np.int64),
            _column(labels.get("label", labels.get("price", [])), self.dtype),
            np.zeros(len(ids), np.int64),
        )
        # Snapshots before per-side clocks kept one watermark: the clocks then start afresh (later
        # expiry, never earlier).
        for side, newest in state.get("newest", {}).items():
            self.clocks[side].load_list(newest)
        for name in ("joined", "expired_predictions", "expired_labels", "duplicates"):
            setattr(self, name, int(state[name]))


class _Clock:
    """One side's event-time progress: the newest ts seen per partition; the watermark is the
    slowest partition's, once every expected partition has delivered."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.newest: dict[int, int] = {}

    def advance(self, ts: np.ndarray, partition: int | ArrayLike) -> None:
        if not ts.size:
            return
        if np.ndim(partition) == 0:
            self._see(int(partition), int(ts.max()))
            return
        partition = np.asarray(partition, np.int64)
        for p in np.unique(partition).tolist():
            self._see(p, int(ts[partition == p].max()))

    def _see(self, partition: int, newest: int) -> None:
        self.newest[partition] = max(newest, self.newest.get(partition, newest))

    @property
    def watermark(self) -> int | None:
        if not self.newest or len(self.newest) < self.partitions:
            return None
        return min(self.newest.values())

    def to_list(self) -> list[list[int]]:
        return [[p, t] for p, t in sorted(self.newest.items())]

    def load_list(self, rows: list) -> None:
        self.newest = {int(p): int(t) for p, t in rows}


def _column(values: list, dtype: Any) -> np.ndarray:
    """A snapshot's list of values as a join column (an object array keeps texts as they are)."""
    column = np.empty(len(values), dtype=dtype)
    column[:] = values
    return column


class ErrorWindow:
    """Errors of the latest labelled records, in the order their labels joined: concept drift.

    Labels often come long after their predictions (minutes to days); tying their errors to the
    prediction's pane would drop every label slower than one window. Here the rolling MSE covers
    the latest joined records however late each label was: `size / step` panes of `step` joined
    records, the newest of them filling, so a result covers between `size - step` and `size`
    records once the stream has that many.

    A tumbling window (`size == step`) reports its last complete window until the next completes
    (the filling one alone would empty at every step), and its first one until then:

    >>> tumbling = ErrorWindow(size=4, step=4)
    >>> tumbling.add(np.ones(6), np.ones(6)); tumbling.totals()  # 4 complete, 2 filling
    (4, 4.0, 4.0)

    With `bins` (the error test's `size`), each pane also counts its records' error-test bins. The
    error test sees complete panes only (`scale_counts`): the newest `size / step` of them, so each
    of its scales holds a fixed number of records (1,000, 500 and 250 at the defaults) and its
    threshold is one cached number; a filling pane would make the newest-pane scale a handful of
    records. The rolling MSE keeps its filling pane, as always.

    >>> window = ErrorWindow(size=4, step=2, bins=3)
    >>> window.add(np.ones(5), np.ones(5), np.array([0, 1, 1, 2, 2]))
    >>> {name: c.tolist() for name, c in window.scale_counts().items()}  # [0, 1] [1, 2] complete
    {'window': [1, 2, 1], 'recent': [0, 1, 1]}
    """

    def __init__(self, size: int = 1000, step: int = 250, bins: int = 0) -> None:
        if step < 1 or size < step or size % step:
            raise ValueError(
                f"concept window must be a positive multiple of its step, got {size} and {step}"
            )
        if bins < 0:
            raise ValueError(f"bins must be >= 0, got {bins}")
        self.size, self.step, self.bins = size, step, bins
        self.panes: list[list[float]] = [
            [0, 0.0, 0.0]
        ]  # [joined, sum squared, sum absolute], newest last
        self.counts: list[np.ndarray] = [
            np.zeros(bins, np.int64)
        ]  # error-test bin counts, pane by pane
        # panes kept: the window's complete ones and the filling one (a tumbling window: its last complete one)
        self.kept = size // step + 1

    def add(
        self, squared: np.ndarray, absolute: np.ndarray, bins: np.ndarray | None = None
    ) -> None:
        """k joined errors, (k,) each, in join order; `bins` (k,) int64 their error-test bins."""
        start = 0
        while start < len(squared):
            pane = self.panes[-1]
            take = min(self.step - int(pane[0]), len(squared) - start)
            pane[0] += take
            pane[1] += float(squared[start : start + take].sum())
            pane[2] += float(absolute[start : start + take].sum())
            if self.bins and bins is not None:
                self.counts[-1] += np.bincount(bins[start : start + take], minlength=self.bins)
            start += take
            if pane[0] == self.step:  # full: start the next one, forget panes beyond the window
                self.panes.append([0, 0.0, 0.0])
                self.counts.append(np.zeros(self.bins, np.int64))
                del self.panes[: -self.kept]
                del self.counts[: -self.kept]

    def totals(self) -> tuple[int, float, float]:
        """(joined records, sum of squared errors, sum of absolute errors) over the window: its
        newest size / step panes, the filling one included; a tumbling window's last complete pane."""
        panes = self.panes[-(self.size // self.step) :]
        if self.size == self.step and len(self.panes) > 1:
            panes = self.panes[-2:-1]
        return int(sum(p[0] for p in panes)), sum(p[1] for p in panes), sum(p[2] for p in panes)

    def scale_counts(self) -> dict[str, np.ndarray]:
        """The error test's counts per scale (`errortest.scale_counts`) over the newest size / step
        complete panes, oldest first; empty panes stand in for those the stream has not filled yet."""
        panes = self.size // self.step
        complete = self.counts[:-1][-panes:]
        missing = [np.zeros(self.bins, np.int64)] * (panes - len(complete))
        return errortest.scale_counts(missing + complete)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "step": self.step,
            "panes": [list(p) for p in self.panes],
            "counts": [c.tolist() for c in self.counts],
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `to_dict` output; a snapshot without counts (or with another test's) restores its
        panes with none: the error test then counts only what joins from here on."""
        if (state["size"], state["step"]) != (self.size, self.step):
            raise ValueError(
                f"state has a concept window of {state['size']}/{state['step']}, this is {self.size}/{self.step}"
            )
        self.panes = [[int(n), float(s), float(a)] for n, s, a in state["panes"]]
        counts = [np.asarray(c, np.int64) for c in state.get("counts", ())]
        if len(counts) != len(self.panes) or any(c.shape != (self.bins,) for c in counts):
            counts = [np.zeros(self.bins, np.int64) for _ in self.panes]
        self.counts = counts


class ExpiryWatch:
    """Says, at most every `every_s` seconds, when a large share of joins has expired since it last
    spoke: silently lost labels would leave concept drift blind. `check(counters, now)` takes the
    monitor's monotonic counters (joined, expired_predictions, expired_labels) and a clock.

    >>> watch = ExpiryWatch(share=0.1, at_least=10, every_s=60)
    >>> watch.check({"joined": 0, "expired_predictions": 0, "expired_labels": 0}, now=0.0) is None
    True
    >>> print(watch.check({"joined": 50, "expired_predictions": 40, "expired_labels": 0}, now=1.0))
    40 of 90 predictions waiting for a label expired without it (and 0 labels without their prediction)
    """

    def __init__(self, share: float = 0.1, at_least: int = 100, every_s: float = 60.0) -> None:
        self.share, self.at_least, self.every_s = share, at_least, every_s
        self.base: Mapping[str, int] | None = None
        self.spoke_at: float | None = None

    def check(self, counters: Mapping[str, int], now: float) -> str | None:
        if self.base is None:
            self.base = dict(counters)
            return None
        if self.spoke_at is not None and now - self.spoke_at < self.every_s:
            return None
        joined = counters["joined"] - self.base["joined"]
        predictions = counters["expired_predictions"] - self.base["expired_predictions"]
        labels = counters["expired_labels"] - self.base["expired_labels"]
        expired = predictions + labels
        if expired < self.at_least or expired < self.share * (joined + expired):
            return None
        self.base, self.spoke_at = dict(counters), now
        return (
            f"{predictions} of {joined + predictions} predictions waiting for a label expired without it "
            f"(and {labels} labels without their prediction)"
        )
