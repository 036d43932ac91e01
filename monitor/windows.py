"""Sliding windows built from panes: tumbling sub-windows of `step` that merge by addition.

A pane holds, for the records assigned to it, per-bin counts of every numeric column and of the
model's outputs (see `reference`), counts of known categories plus unseen ones by name (unseen
predicted classes too), and the concept-drift sums (records joined to a label, sum of squared and
of absolute errors: for a classifier both are the number of misclassified records), and the error
test's bin counts of those joined records (`monitor.errortest`; `Pane.error_counts`). A window is the sum of its
last `window // step` panes, so memory is panes x bins whatever the rate or stream length, panes
from several partitions or instances combine with `Pane.merge`, and a pane round-trips through a
plain JSON-friendly dict (`to_dict` / `from_dict`) so the shell can persist state on restart.

Two ways to cut the stream into panes:
- CountWindow(window=1000, step=250): record i (in arrival order) goes to pane i // step; a pane
  closes, and the window ending at it is evaluated, every `step` records.
- TimeWindow(window_ms=300_000, step_ms=10_000): a record goes to pane floor(ts / step_ms); the
  newest pane seen is the watermark; a pane closes when a record of a later pane arrives. A record
  whose pane is older than the window ending at the last closed pane (pane < newest - window/step)
  is dropped and counted in `late_records`. Panes are keyed by id, so out-of-order records within the window are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from monitor import errortest
from monitor.reference import PREDICTION, Reference, probability_column

UNSEEN_OVERFLOW = (
    "__other__"  # unseen names beyond `max_unseen` per column and pane are lumped here
)


@dataclass(frozen=True)
class PredictionBatch:
    """n scored records as columns: ids (n,) str, ts (n,) int epoch ms, predictions (n,) float
    (regression) or (n,) object array of class texts (classification), numeric {feature: (n,)
    float}, categorical {feature: (n,) str}, probabilities {class text: (n,) float} (empty when the
    messages carry none), partitions: the input partition of each record ((n,) int), or one for all."""

    ids: np.ndarray
    ts: np.ndarray
    predictions: np.ndarray
    numeric: Mapping[str, np.ndarray]
    categorical: Mapping[str, np.ndarray]
    probabilities: Mapping[str, np.ndarray] = field(default_factory=dict)
    partitions: np.ndarray | int = 0

    def __post_init__(self) -> None:
        n = len(self.ids)
        columns = {
            "ts": self.ts,
            "predictions": self.predictions,
            **self.numeric,
            **self.categorical,
            **{f"probabilities[{c}]": v for c, v in self.probabilities.items()},
        }
        for name, column in columns.items():
            if len(column) != n:
                raise ValueError(f"batch column '{name}' has {len(column)} rows, ids have {n}")

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, start: int, stop: int) -> PredictionBatch:
        """Records start..stop-1 (views, no copy)."""
        part = slice(start, stop)
        return PredictionBatch(
            self.ids[part],
            self.ts[part],
            self.predictions[part],
            {c: v[part] for c, v in self.numeric.items()},
            {c: v[part] for c, v in self.categorical.items()},
            {c: v[part] for c, v in self.probabilities.items()},
            self.partitions if np.ndim(self.partitions) == 0 else self.partitions[part],
        )

    @classmethod
    def from_messages(
        cls,
        messages: Sequence[Mapping[str, Any]],
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        classification: bool = False,
    ) -> PredictionBatch:
        """Columns from decoded prediction messages {"id","ts","prediction","features":{...}} (and,
        for a classifier, "probabilities": {class text: p}); categories and classes as text."""
        from contract.rules import category_text  # the one rule for the text of a category

        features = [m["features"] for m in messages]
        predictions = [m["prediction"] for m in messages]
        with_probabilities = (
            classification and bool(messages) and all("probabilities" in m for m in messages)
        )
        classes = list(messages[0]["probabilities"]) if with_probabilities else []
        return cls(
            ids=np.array([str(m["id"]) for m in messages], dtype=object),
            ts=np.array([m["ts"] for m in messages], dtype=np.int64),
            predictions=(
                np.array(list(map(category_text, predictions)), dtype=object)
                if classification
                else np.array(predictions, dtype=np.float64)
            ),
            numeric={c: np.array([f[c] for f in features], dtype=np.float64) for c in numeric},
            categorical={
                c: np.array([category_text(f[c]) for f in features], dtype=object)
                for c in categorical
            },
            probabilities={
                c: np.array([m["probabilities"][c] for m in messages], dtype=np.float64)
                for c in classes
            },
        )


@dataclass
class Pane:
    """Summaries of the records of one step. counts: flat (bins,) int64 laid out by `PaneLayout`;
    estimates: (F,) sums of the performance estimator's per-record columns over the `estimated`
    records (see `monitor.estimate`; (0,) without an estimator); error_counts: (B,) int64 counts of
    the joined records' error-test bins (see `monitor.errortest`; (0,) without a test, and for a
    pane saved before they were kept: it merges as zeros)."""

    id: int
    counts: np.ndarray
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)
    records: int = 0
    joined: int = 0
    sse: float = 0.0  # sum of squared errors of joined records
    sae: float = 0.0  # sum of absolute errors of joined records
    estimates: np.ndarray = field(default_factory=lambda: np.zeros(0))
    estimated: int = (
        0  # records whose estimates are summed (all, unless restored from another estimator)
    )
    error_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def merge(self, other: Pane) -> Pane:
        """The pane holding both panes' records (addition); id is the larger of the two."""
        unseen = {c: dict(v) for c, v in self.unseen.items()}
        for column, names in other.unseen.items():
            target = unseen.setdefault(column, {})
            for name, count in names.items():
                target[name] = target.get(name, 0) + count
        return Pane(
            id=max(self.id, other.id),
            counts=self.counts + other.counts,
            unseen=unseen,
            records=self.records + other.records,
            joined=self.joined + other.joined,
            sse=self.sse + other.sse,
            sae=self.sae + other.sae,
            estimates=self.estimates + other.estimates,
            estimated=self.estimated + other.estimated,
            error_counts=add_counts(self.error_counts, other.error_counts),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: ints, floats, lists and dicts only."""
        return {
            "id": int(self.id),
            "counts": self.counts.tolist(),
            "unseen": {c: dict(v) for c, v in self.unseen.items()},
            "records": int(self.records),
            "joined": int(self.joined),
            "sse": float(self.sse),
            "sae": float(self.sae),
            "estimates": self.estimates.tolist(),
            "estimated": int(self.estimated),
            "error_counts": self.error_counts.tolist(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Pane:
        return cls(
            id=int(state["id"]),
            counts=np.asarray(state["counts"], dtype=np.int64),
            unseen={
                c: {str(k): int(v) for k, v in names.items()}
                for c, names in state["unseen"].items()
            },
            records=int(state["records"]),
            joined=int(state["joined"]),
            sse=float(state["sse"]),
            sae=float(state["sae"]),
            # panes saved before the estimates were kept hold none
            estimates=np.asarray(state.get("estimates", ()), dtype=np.float64),
            estimated=int(state.get("estimated", 0)),
            # panes saved (or reported by a worker) before the error counts were kept hold none
            error_counts=np.asarray(state.get("error_counts", ()), dtype=np.int64),
        )


def add_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two panes' error counts added; a pane without any ((0,): saved before they were kept) adds
    zeros. ValueError for two different layouts (another error test)."""
    if not a.size or not b.size:
        return (b if not a.size else a).copy()
    if a.shape != b.shape:
        raise ValueError(
            f"error counts of {a.size} and {b.size} bins do not add: panes of another reference"
        )
    return a + b


class PaneLayout:
    """Where each column's bins sit in a pane's flat counts: the reference's KS columns (numeric
    features, then the regression prediction or the class probabilities), then its chi-square
    columns (categorical features, then the predicted class); see `Reference.layout`.

    `estimator` (optional, `monitor.estimate`): every encoded batch also carries its per-record
    performance estimates, which panes sum. The reference's error test (`Reference.error_test`)
    sets the size of a pane's error counts (`errors`)."""

    def __init__(self, reference: Reference, estimator: Any = None) -> None:
        self.reference = reference
        self.estimator = estimator
        self.error_test = reference.error_test
        if estimator is not None:
            estimator.check_layout(reference.layout)
        self.sizes = reference.layout
        self.slices: dict[str, slice] = {}
        start = 0
        for name, size in self.sizes.items():
            self.slices[name] = slice(start, start + size)
            start += size
        self.total = start
        self.ks_columns = reference.ks_columns
        self.chi2_columns = reference.chi2_columns
        # where each column's values sit in a batch: (batch attribute, key in it or None)
        self.sources: dict[str, tuple[str, str | None]] = {
            **{name: ("numeric", name) for name in reference.numeric},
            **{name: ("categorical", name) for name in reference.categorical},
            **{probability_column(c): ("probabilities", c) for c in reference.probabilities},
            PREDICTION: ("predictions", None),
        }

    @property
    def estimates(self) -> int:
        """How many per-record estimate columns a pane sums (0 without an estimator)."""
        return 0 if self.estimator is None else len(self.estimator.names)

    @property
    def errors(self) -> int:
        """How many error-test bins a pane counts (0 without an error test)."""
        return 0 if self.error_test is None else self.error_test.size

    @property
    def fingerprint(self) -> str | None:
        """The estimator's fingerprint: panes summed under another one must not merge."""
        return None if self.estimator is None else self.estimator.fingerprint()

    def empty(self, pane_id: int) -> Pane:
        return Pane(
            pane_id,
            np.zeros(self.total, dtype=np.int64),
            estimates=np.zeros(self.estimates),
            error_counts=np.zeros(self.errors, dtype=np.int64),
        )

    def values(self, batch: PredictionBatch, name: str) -> np.ndarray:
        """The batch's values of a layout column: a feature, the prediction or a class's probability."""
        attribute, key = self.sources[name]
        column = getattr(batch, attribute) if key is None else getattr(batch, attribute).get(key)
        if column is None:
            raise ValueError(
                f"batch has no column '{name}', which the reference has "
                f"({'class probabilities' if attribute == 'probabilities' else attribute})"
            )
        return column

    def encode(self, batch: PredictionBatch) -> EncodedBatch:
        """Flat bin of every record and column, KS columns' bins then chi-square columns' codes.

        A category the reference never saw gets the spill bin `total` (dropped after counting) and is
        marked in `unseen`, so its name can be counted apart."""
        columns = [
            self.slices[name].start + bins.bin_index(self.values(batch, name))
            for name, bins in self.ks_columns.items()
        ]
        unseen: dict[str, np.ndarray] = {}
        for name, profile in self.chi2_columns.items():
            codes = profile.codes(self.values(batch, name))
            missing = codes < 0
            if missing.any():
                unseen[name] = missing
                codes = np.where(missing, self.total - self.slices[name].start, codes)
            columns.append(self.slices[name].start + codes)
        encoded = EncodedBatch(
            np.stack(columns, axis=1) if columns else np.empty((len(batch), 0), np.int64), unseen
        )
        if (
            self.estimator is not None
        ):  # the estimator reads the bins (and a classifier's probabilities)
            encoded = EncodedBatch(encoded.flat, unseen, self.estimator.per_record(batch, encoded))
        return encoded


@dataclass(frozen=True)
class EncodedBatch:
    """A batch as pane bins: flat (n, columns) int64 indexes into a pane's counts (`total` = spill),
    unseen {categorical column: (n,) bool} for the columns with categories the reference never saw,
    and estimates (n, F) of the layout's performance estimator (None without one)."""

    flat: np.ndarray
    unseen: Mapping[str, np.ndarray]
    estimates: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> EncodedBatch:
        part = slice(start, stop)
        return EncodedBatch(
            self.flat[part],
            {c: m[part] for c, m in self.unseen.items()},
            None if self.estimates is None else self.estimates[part],
        )


class PaneWindow:
    """Panes keyed by id; the window ending at pane q is the sum of panes q - panes + 1 .. q.

    At most panes + 1 panes are kept (the window ending at the last closed pane, plus the newest,
    partial one), so memory is (panes + 1) x bins."""

    def __init__(
        self, reference: Reference, panes: int, max_unseen: int = 100, estimator: Any = None
    ) -> None:
        if max_unseen < 1:
            raise ValueError(f"max_unseen must be >= 1, got {max_unseen}")
        self.layout = PaneLayout(reference, estimator)
        self.panes_per_window = panes
        self.max_unseen = max_unseen
        self.panes: dict[int, Pane] = {}
        self.newest: int | None = None  # id of the newest pane that received a record
        self.records = 0  # records accepted
        self.estimates_dropped = (
            False  # the restored state's panes were estimated by another estimator
        )
        self.late_records = 0  # records dropped: their pane had left the window
        self.late_errors = (
            0  # joined after their prediction's pane left the window: not in label coverage
        )

    # -- adding -------------------------------------------------------------------------------------
    def _add(
        self,
        pane_ids: np.ndarray,
        batch: PredictionBatch,
        keep: np.ndarray,
        encoded: EncodedBatch | None = None,
    ) -> None:
        # One bincount per distinct pane in the batch (usually 1 or 2); `encoded`: the batch's bins,
        # when the caller encoded a larger batch at once.
        if encoded is None:
            encoded = self.layout.encode(batch)
        total = self.layout.total
        single = (
            len(pane_ids) and keep.all() and (pane_ids == pane_ids[0]).all()
        )  # the common case: no masks
        for pane_id in [int(pane_ids[0])] if single else np.unique(pane_ids[keep]).tolist():
            rows = slice(None) if single else keep & (pane_ids == pane_id)
            pane = self.panes.get(pane_id)
            if pane is None:
                pane = self.panes[pane_id] = self.layout.empty(pane_id)
            pane.counts += np.bincount(encoded.flat[rows].ravel(), minlength=total + 1)[:total]
            added = len(pane_ids) if single else int(rows.sum())
            pane.records += added
            if encoded.estimates is not None:
                pane.estimates += encoded.estimates[rows].sum(axis=0)
                pane.estimated += added
            for name, missing in encoded.unseen.items():
                values = np.asarray(self.layout.values(batch, name))
                names, counts = np.unique(values[rows][missing[rows]], return_counts=True)
                if len(names):
                    self._count_unseen(
                        pane.unseen.setdefault(name, {}),
                        dict(zip(map(str, names), counts.tolist())),
                    )
        self.records += int(keep.sum())

    def _count_unseen(self, target: dict[str, int], unseen: dict[str, int]) -> None:
        for name, count in unseen.items():
            if name not in target and len(target) >= self.max_unseen:
                name = UNSEEN_OVERFLOW
            target[name] = target.get(name, 0) + count

    def add_errors(
        self,
        pane_ids: ArrayLike,
        squared: ArrayLike,
        absolute: ArrayLike,
        bins: ArrayLike | None = None,
    ) -> None:
        """Concept-drift sums of joined records, (k,) each, added to their prediction's pane; `bins`
        (k,) int64: their error-test bins, counted in the pane's `error_counts`."""
        pane_ids = np.asarray(pane_ids, dtype=np.int64)
        squared = np.asarray(squared, dtype=np.float64)
        absolute = np.asarray(absolute, dtype=np.float64)
        size = self.layout.errors
        counted = bins is not None and size > 0
        if counted:
            bins = np.asarray(bins, dtype=np.int64)
        for pane_id in np.unique(pane_ids):
            pane = self.panes.get(int(pane_id))
            rows = pane_ids == pane_id
            if pane is None or not self.is_live(int(pane_id)):
                self.late_errors += int(rows.sum())
                continue
            pane.joined += int(rows.sum())
            pane.sse += float(squared[rows].sum())
            pane.sae += float(absolute[rows].sum())
            if counted:
                pane.error_counts += np.bincount(bins[rows], minlength=size)

    # -- reading ------------------------------------------------------------------------------------
    def is_live(self, pane_id: int) -> bool:
        # The newest pane may be partial; the window ending at the pane before it (the last closed
        # one, which `result()` evaluates) needs panes_per_window panes before it: keep one more.
        return self.newest is not None and pane_id >= self.newest - self.panes_per_window

    def aggregate(self, upto: int, panes: int | None = None) -> Pane:
        """Sum of the panes of the window ending at pane `upto`; `panes`: only its newest `panes`
        panes (the recent scale, see `calibration`), default the whole window."""
        span = self.panes_per_window if panes is None else min(panes, self.panes_per_window)
        total = self.layout.empty(upto)
        for pane_id, pane in self.panes.items():
            if upto - span < pane_id <= upto:
                total = total.merge(pane)
        total.id = upto
        return total

    def scale_counts(self, upto: int) -> dict[str, np.ndarray]:
        """The error test's counts per scale (`errortest.scale_counts`: the whole window, its newest
        half, its newest pane) of the window ending at pane `upto`: what `aggregate(upto)`,
        `aggregate(upto, panes // 2)` and `aggregate(upto, 1)` hold, without summing the rest."""
        empty = np.zeros(self.layout.errors, np.int64)
        panes = [self.panes.get(q) for q in range(upto - self.panes_per_window + 1, upto + 1)]
        return errortest.scale_counts(
            [empty if p is None or not p.error_counts.size else p.error_counts for p in panes]
        )

    def expire(self) -> None:
        """Forget panes that left the window; called after the closed panes are evaluated."""
        for pane_id in [p for p in self.panes if not self.is_live(p)]:
            del self.panes[pane_id]

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Window state as plain lists and dicts (JSON-friendly), including the bin layout."""
        return {
            "kind": type(self).__name__,
            "layout": dict(self.layout.sizes),
            "estimator": self.layout.fingerprint,
            "newest": self.newest,
            "records": self.records,
            "late_records": self.late_records,
            "late_errors": self.late_errors,
            "panes": [pane.to_dict() for pane in self.panes.values()],
            **self._extra_state(),
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `to_dict` output; refuses state written for another window kind or reference."""
        if state.get("kind") != type(self).__name__:
            raise ValueError(f"state is for a {state.get('kind')}, not a {type(self).__name__}")
        if dict(state["layout"]) != dict(self.layout.sizes):
            raise ValueError(
                "state was written with another reference (bin layout differs): start afresh"
            )
        self.newest = state["newest"]
        self.records = int(state["records"])
        self.late_records = int(state["late_records"])
        self.late_errors = int(state["late_errors"])
        self.panes = {p["id"]: Pane.from_dict(p) for p in state["panes"]}
        # Panes summed under another estimator (or none) hold estimates that mean nothing here: they
        # keep their records but estimate none of them, so the window's estimate covers the rest.
        self.estimates_dropped = state.get("estimator") != self.layout.fingerprint
        if self.estimates_dropped:
            for pane in self.panes.values():
                pane.estimates, pane.estimated = np.zeros(self.layout.estimates), 0
        # Panes saved before the error counts were kept (or with another number of bins) count none.
        for pane in self.panes.values():
            if pane.error_counts.shape != (self.layout.errors,):
                pane.error_counts = np.zeros(self.layout.errors, np.int64)
        self._load_extra(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        pass


class CountWindow(PaneWindow):
    """The last `window` records, evaluated every `step` records (window a multiple of step).

    >>> rng = np.random.default_rng(0)
    >>> reference = Reference.from_arrays({"x": rng.normal(0, 1, 500)}, {"c": rng.choice(["a", "b"], 500)},
    ...                                   rng.normal(0, 1, 500), rng.normal(0, 1, 500))
    >>> window = CountWindow(reference, window=100, step=25)
    >>> batch = PredictionBatch(np.array([f"r{i}" for i in range(60)], dtype=object), np.arange(60) * 1000,
    ...                         rng.normal(0, 1, 60), {"x": rng.normal(0, 1, 60)},
    ...                         {"c": np.array(["a", "b", "new"] * 20, dtype=object)})
    >>> pane_ids, closed = window.update(batch)
    >>> closed, pane_ids[[0, 25, 59]].tolist()  # panes of 25 records: 0 and 1 are full, 2 fills
    ([0, 1], [0, 1, 2])
    >>> window.aggregate(1).records, window.panes[0].unseen  # the window ending at pane 1; unseen names
    (50, {'c': {'new': 8}})
    """

    def __init__(
        self,
        reference: Reference,
        window: int = 1000,
        step: int = 250,
        max_unseen: int = 100,
        estimator: Any = None,
    ) -> None:
        check_window(window, step, "records")
        super().__init__(reference, window // step, max_unseen, estimator)
        self.window, self.step = window, step

    # -- what differs by kind: the callers ask the window, never which kind it is ---------------------
    kind = "count"
    sizes_vary = False  # every evaluation tests `window` records: its thresholds are known at start

    @property
    def min_records(self) -> int:
        """Records a window needs before its tests run: the whole window."""
        return self.window

    def error_sizes(self) -> tuple[int, int]:
        """(size, step) of the join's error window: the latest `window` joined records."""
        return self.window, self.step

    def error_panes(self, errors: Any) -> int:
        """Panes of the error test's window: the error window's (`join.ErrorWindow`)."""
        return errors.size // errors.step

    def errors_of(self, pane_id: int, window: Pane, errors: Any) -> tuple[int, float, float]:
        """(joined, sum squared, sum absolute) errors an evaluation reports: the latest joined
        records, however late their labels came (the order labels join in)."""
        return errors.totals()

    def error_counts_of(self, pane_id: int, errors: Any) -> dict[str, np.ndarray]:
        """The error test's counts per scale: the error window's."""
        return errors.scale_counts()

    def spans(self, records: int) -> list[tuple[int, int]]:
        """[start, stop) runs of a batch of `records` that each end at most at a step's end: the
        window takes a batch a step at a time, so an evaluation sees only the labels joined by
        records up to its own end."""
        out, start = [], 0
        while start < records:
            stop = min(records, start + self.step - (self.records + start) % self.step)
            out.append((start, stop))
            start = stop
        return out

    def prepare(self, calibration: Any) -> None:
        """Compute the thresholds before the first record: every evaluation has the same sizes and
        alpha (the categorical columns' exact nulls take 0.1-3 s each), so none is computed on the loop."""
        calibration.thresholds(self.window, self.step)

    def describe(self, pane_id: int) -> str:
        """The window ending at pane `pane_id`, in words (the page's header, the alarm log).

        >>> CountWindow(Reference.from_arrays({"x": np.zeros(3)}, {}, np.zeros(3), np.zeros(3)), 1000, 250).describe(5)
        'last 1,000 records, ending at record 1,500'
        """
        return f"last {self.window:,} records, ending at record {(pane_id + 1) * self.step:,}"

    def pane_end_ms(self, pane_id: int) -> int | None:
        """Where a pane ends in event time: a count window's panes end at a record, not a time."""
        return None

    def pane_ids_of(self, batch: PredictionBatch, records_before: int) -> np.ndarray:
        """The pane of each record of a batch just added, `records_before` records before it."""
        return (records_before + np.arange(len(batch), dtype=np.int64)) // self.step

    @property
    def last_closed(self) -> int | None:
        closed = self.records // self.step - 1
        return closed if closed >= 0 else None

    def update(
        self, batch: PredictionBatch, encoded: EncodedBatch | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """Add a batch (`encoded`: its bins, if already computed); returns (pane id of every record
        (n,), panes closed by this batch)."""
        before = self.records
        pane_ids = (before + np.arange(len(batch), dtype=np.int64)) // self.step
        self._add(pane_ids, batch, np.ones(len(batch), dtype=bool), encoded)
        if len(batch):
            self.newest = int(pane_ids[-1])
        closed = list(range(before // self.step, self.records // self.step))
        return pane_ids, closed


class TimeWindow(PaneWindow):
    """The last `window_ms` of event time, evaluated every `step_ms` (panes floor(ts / step_ms))."""

    def __init__(
        self,
        reference: Reference,
        window_ms: int = 300_000,
        step_ms: int = 10_000,
        max_unseen: int = 100,
        estimator: Any = None,
    ) -> None:
        check_window(window_ms, step_ms, "ms")
        super().__init__(reference, window_ms // step_ms, max_unseen, estimator)
        self.window, self.step = window_ms, step_ms

    # -- what differs by kind: the callers ask the window, never which kind it is ---------------------
    kind = "time"
    sizes_vary = True  # a window holds what its span of event time held: thresholds prefetched for nearby sizes
    min_records = 100  # records a window needs before its tests run
    ERROR_SIZES = (
        1000,
        250,
    )  # the rolling error's window when a count is not given (joined records)

    def error_sizes(self) -> tuple[int, int]:
        """(size, step) of the join's error window (the rolling MSE when asked for by count)."""
        return self.ERROR_SIZES

    def error_panes(self, errors: Any) -> int:
        """Panes of the error test's window: this window's."""
        return self.panes_per_window

    def errors_of(self, pane_id: int, window: Pane, errors: Any) -> tuple[int, float, float]:
        """(joined, sum squared, sum absolute) errors an evaluation reports: the window's own
        predictions' (those labelled so far). Panes add up, so workers sharing the partitions give
        the same window (`monitor.panes`)."""
        return window.joined, window.sse, window.sae

    def error_counts_of(self, pane_id: int, errors: Any) -> dict[str, np.ndarray]:
        """The error test's counts per scale: this window's panes'."""
        return self.scale_counts(pane_id)

    def spans(self, records: int) -> list[tuple[int, int]]:
        """A batch is taken whole: its records fall in panes by their event time."""
        return [(0, records)] if records else []

    def prepare(self, calibration: Any) -> None:
        """Nothing before the first record: a window's sizes are known only as records come."""

    def describe(self, pane_id: int) -> str:
        """The window ending at pane `pane_id`, in words (the page's header, the alarm log).

        >>> reference = Reference.from_arrays({"x": np.zeros(3)}, {}, np.zeros(3), np.zeros(3))
        >>> TimeWindow(reference, 300_000, 10_000).describe(0)
        '5 min of event time ending 1970-01-01 00:00:10 UTC'
        """
        return (
            f"{span_text(self.window)} of event time ending {time_text(self.pane_end_ms(pane_id))}"
        )

    def pane_end_ms(self, pane_id: int) -> int | None:
        """Where a pane ends in event time (epoch ms)."""
        return (pane_id + 1) * self.step

    def pane_ids_of(self, batch: PredictionBatch, records_before: int) -> np.ndarray:
        """The pane of each record of a batch just added (by its event time)."""
        return np.asarray(batch.ts, dtype=np.int64) // self.step

    @property
    def last_closed(self) -> int | None:
        return None if self.newest is None else self.newest - 1

    def update(
        self, batch: PredictionBatch, encoded: EncodedBatch | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """Add a batch (`encoded`: its bins, if already computed); returns (pane id per record, -1 if
        dropped as late; panes closed)."""
        if len(batch) == 0:
            return np.empty(0, dtype=np.int64), []
        pane_ids = np.asarray(batch.ts, dtype=np.int64) // self.step
        start = int(pane_ids[0]) if self.newest is None else self.newest
        # Watermark before each record: newest pane seen so far, this batch included.
        watermark = np.maximum.accumulate(np.concatenate(([start], pane_ids[:-1])))
        keep = pane_ids >= watermark - self.panes_per_window
        self.late_records += int((~keep).sum())
        self._add(pane_ids, batch, keep, encoded)
        self.newest = max(start, int(pane_ids.max()))
        closed = list(range(max(start, self.newest - self.panes_per_window), self.newest))
        return np.where(keep, pane_ids, -1), closed


def make_window(
    kind: str, reference: Reference, window: int, step: int, estimator: Any = None
) -> PaneWindow:
    """A window of `kind` ("count": records; "time": milliseconds of event time)."""
    return {"count": CountWindow, "time": TimeWindow}[kind](
        reference, window, step, estimator=estimator
    )


def span_text(ms: int) -> str:
    """A span of time in words: "5 min", "1 h", "90 s"."""
    seconds = ms / 1000
    units = ((86400, "d"), (3600, "h"), (60, "min"))
    return next(
        (f"{seconds / s:g} {u}" for s, u in units if seconds >= s and seconds % s == 0),
        f"{seconds:g} s",
    )


def time_text(epoch_ms: int) -> str:
    """An instant in UTC, to the second: "2026-12-07 12:00:00 UTC"."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def check_window(window: int, step: int, unit: str) -> None:
    """ValueError unless 0 < step <= window and window is a multiple of step."""
    if not isinstance(window, (int, np.integer)) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"window and step must be integers ({unit}), got {window!r} and {step!r}")
    if step <= 0:
        raise ValueError(f"step must be > 0 {unit}, got {step}")
    if window < step:
        raise ValueError(f"window ({window} {unit}) must not be smaller than step ({step} {unit})")
    if window % step:
        raise ValueError(f"window ({window} {unit}) must be a multiple of step ({step} {unit})")
