"""Predictions joined to their labels by id, whichever arrives first, with bounded state.

Each side waits in an insertion-ordered dict until its partner arrives. State is bounded two ways:
- in event time: an entry whose ts is older than the newest ts seen (either topic) minus `ttl_ms`
  is expired and counted (`expired_predictions` / `expired_labels`);
- by count: at most `max_pending` entries per side; the oldest inserted is evicted and counted as
  expired, so a label topic that stalls cannot grow memory.
Expiry walks from the oldest inserted entry and stops at the first young one, so an entry inserted
after a younger one may outlive its TTL by a little; `max_pending` still bounds it.

Matching is per record in a dict (O(1) each), the one part of an update that is not vectorised.
A second prediction with a pending id replaces the first (at-least-once redelivery) and is counted
in `duplicates`; a label for an id already joined waits and expires like any unmatched label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Joined:
    """k joined records: pane id of the prediction, squared and absolute error, (k,) each."""

    pane_ids: np.ndarray
    squared: np.ndarray
    absolute: np.ndarray

    def __len__(self) -> int:
        return len(self.pane_ids)


def _joined(rows: list[tuple[int, float, float]]) -> Joined:
    # rows: (pane id, prediction, price)
    if not rows:
        return Joined(np.empty(0, np.int64), np.empty(0), np.empty(0))
    pane_ids, predictions, prices = (np.array(c) for c in zip(*rows))
    errors = predictions.astype(np.float64) - prices.astype(np.float64)
    return Joined(pane_ids.astype(np.int64), errors**2, np.abs(errors))


class LabelJoin:
    """Pending predictions {id: (ts, prediction, pane id)} and labels {id: (ts, price)}."""

    def __init__(self, ttl_ms: int = 3_600_000, max_pending: int = 200_000) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"label_ttl must be > 0 ms, got {ttl_ms}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.ttl_ms, self.max_pending = ttl_ms, max_pending
        self.predictions: dict[str, tuple[int, float, int]] = {}
        self.labels: dict[str, tuple[int, float]] = {}
        self.watermark: int | None = None
        self.joined = 0
        self.expired_predictions = 0
        self.expired_labels = 0
        self.duplicates = 0

    def add_predictions(self, ids: Sequence[str], ts: ArrayLike, predictions: ArrayLike, pane_ids: ArrayLike) -> Joined:
        """n predictions (pane id -1 = dropped by the window: not kept); returns those joined now."""
        rows = []
        for key, t, p, pane in zip(ids, np.asarray(ts).tolist(), np.asarray(predictions).tolist(), np.asarray(pane_ids).tolist()):
            if pane < 0:
                continue
            label = self.labels.pop(key, None)
            if label is not None:
                rows.append((pane, p, label[1]))
                continue
            if key in self.predictions:
                self.duplicates += 1
                del self.predictions[key]
            self.predictions[key] = (t, p, pane)
        self._advance(ts)
        return self._done(rows)

    def add_labels(self, ids: Sequence[str], ts: ArrayLike, prices: ArrayLike) -> Joined:
        """n labels (true prices); returns the records joined now."""
        rows = []
        for key, t, price in zip(ids, np.asarray(ts).tolist(), np.asarray(prices).tolist()):
            pending = self.predictions.pop(key, None)
            if pending is not None:
                rows.append((pending[2], pending[1], price))
            else:
                self.labels.pop(key, None)
                self.labels[key] = (t, price)
        self._advance(ts)
        return self._done(rows)

    def _done(self, rows: list[tuple[int, float, float]]) -> Joined:
        self.joined += len(rows)
        return _joined(rows)

    def _advance(self, ts: ArrayLike) -> None:
        ts = np.asarray(ts)
        if ts.size:
            newest = int(ts.max())
            self.watermark = newest if self.watermark is None else max(self.watermark, newest)
        self.expired_predictions += _expire(self.predictions, self.watermark, self.ttl_ms, self.max_pending)
        self.expired_labels += _expire(self.labels, self.watermark, self.ttl_ms, self.max_pending)

    @property
    def pending(self) -> int:
        return len(self.predictions) + len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """Pending entries and counters as plain lists (JSON-friendly)."""
        return {
            "predictions": [[k, *v] for k, v in self.predictions.items()],
            "labels": [[k, *v] for k, v in self.labels.items()],
            "watermark": self.watermark,
            "joined": self.joined,
            "expired_predictions": self.expired_predictions,
            "expired_labels": self.expired_labels,
            "duplicates": self.duplicates,
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        self.predictions = {k: (int(t), float(p), int(pane)) for k, t, p, pane in state["predictions"]}
        self.labels = {k: (int(t), float(price)) for k, t, price in state["labels"]}
        self.watermark = state["watermark"]
        for name in ("joined", "expired_predictions", "expired_labels", "duplicates"):
            setattr(self, name, int(state[name]))


def _expire(pending: dict[str, tuple], watermark: int | None, ttl_ms: int, max_pending: int) -> int:
    expired = 0
    while len(pending) > max_pending:
        del pending[next(iter(pending))]
        expired += 1
    if watermark is not None:
        cutoff = watermark - ttl_ms
        while pending:
            key = next(iter(pending))
            if pending[key][0] >= cutoff:
                break
            del pending[key]
            expired += 1
    return expired


class ErrorWindow:
    """Errors of the latest labelled records, in the order their labels joined: concept drift.

    Labels often come long after their predictions (minutes to days); tying their errors to the
    prediction's pane would drop every label slower than one window. Here the rolling MSE covers
    the latest joined records however late each label was: `size / step` panes of `step` joined
    records, the newest of them filling, so a result covers between `size - step` and `size`
    records once the stream has that many.
    """

    def __init__(self, size: int = 1000, step: int = 250) -> None:
        if step < 1 or size < step or size % step:
            raise ValueError(f"concept window must be a positive multiple of its step, got {size} and {step}")
        self.size, self.step = size, step
        self.panes: list[list[float]] = [[0, 0.0, 0.0]]  # [joined, sum squared, sum absolute], newest last

    def add(self, squared: np.ndarray, absolute: np.ndarray) -> None:
        """k joined errors, (k,) each, in join order."""
        start = 0
        while start < len(squared):
            pane = self.panes[-1]
            take = min(self.step - int(pane[0]), len(squared) - start)
            pane[0] += take
            pane[1] += float(squared[start:start + take].sum())
            pane[2] += float(absolute[start:start + take].sum())
            start += take
            if pane[0] == self.step:  # full: start the next one, forget panes beyond the window
                self.panes.append([0, 0.0, 0.0])
                del self.panes[: -(self.size // self.step)]

    def totals(self) -> tuple[int, float, float]:
        """(joined records, sum of squared errors, sum of absolute errors) over the window."""
        panes = self.panes
        return int(sum(p[0] for p in panes)), sum(p[1] for p in panes), sum(p[2] for p in panes)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "step": self.step, "panes": [list(p) for p in self.panes]}

    def load_dict(self, state: Mapping[str, Any]) -> None:
        if (state["size"], state["step"]) != (self.size, self.step):
            raise ValueError(f"state has a concept window of {state['size']}/{state['step']}, this is {self.size}/{self.step}")
        self.panes = [[int(n), float(s), float(a)] for n, s, a in state["panes"]]
