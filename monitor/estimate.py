"""Performance before the labels arrive: per-record expected losses that panes add up, and their null.

Two estimators, one interface (`PerformanceEstimator`), both fitted at start-up from the reference
by `monitor.nanny` and applied here per batch with numpy alone:

- `LossEstimator` (regression; NannyML's DLE idea): an additive "nanny" model of the squared and
  the absolute error, log E[loss | record] = intercept + sum over columns of table[bin], where the
  bins are the monitor's own (`PaneLayout.encode`: every record's flat bin per column, already
  computed for the drift tests). A batch costs one gather and one exp per loss: 0.3 us a record in
  5,000-record batches, where a tree ensemble's predict costs 23 us (LightGBM) to 48 us
  (HistGradientBoosting) on one thread, and 50-record batches 185-840 us (bench/ESTIMATE_RESULTS.md).
- `ConfidenceEstimator` (classification; NannyML's CBPE idea): the probability that the predicted
  class is right, from the model's probability of the class it predicted through a calibration map
  per predicted class (isotonic knots, or the raw probability when isotonic did not lower the
  held-out error), applied with one `np.interp`. A binary model's expected confusion matrix
  follows: a record predicted positive adds c to TP and 1 - c to FP, one predicted negative adds
  c to TN and 1 - c to FN.

Every per-record number is a sum a pane can hold: `per_record(batch, encoded)` returns (n, F)
float64 columns named `names`; panes add them (across workers too), and `evaluate(sums, records,
alpha)` turns a window's sums into an `Estimate`. The `outside` column counts records outside the
reference's support (a numeric value below its minimum or above its maximum, NaN, or a category
it never held): the estimate extrapolates there, and the alert names their share.

The alarm is one-sided (performance drops: the estimated MSE or error rate rises). Its null is the
spread of the mean of n no-drift per-record estimates (`EstimateNull`): the saddlepoint tail of the
mean of resampled reference estimates (`stats.mean_upper_quantile`, as the realized MSE test), at
the effective size n*m/(n+m) since the reference value is itself a mean of m estimates. The
estimates it resamples are the reference's out-of-fold ones (cross-fitted: what the final model
gives on rows it never saw) and, because the simulator replays the reference rows themselves, the
final model's in-sample ones; the threshold is the higher of the two quantiles.

The score is the tutorial's relative one, (estimate - reference) / reference, where `reference` is
the mean out-of-fold estimate, not the realized reference loss: it is what the estimate averages
to on new no-drift traffic, the null is centred on it, and the estimator's own bias (the additive
nanny's, the calibration's) cancels in the ratio. The realized value is kept beside it
(`realized_reference`) for the dashboard's reference line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from monitor import stats

if TYPE_CHECKING:  # only for signatures: the batch types live with the windows
    from monitor.windows import EncodedBatch, PredictionBatch

# What each per-record column holds; a pane holds their sums.
FIELDS = {
    "squared": "expected squared error of the prediction (regression)",
    "absolute": "expected absolute error of the prediction (regression)",
    "error": "probability that the predicted class is wrong (classification)",
    "tp": "binary: probability of a true positive (predicted positive and right)",
    "fp": "binary: probability of a false positive (predicted positive and wrong)",
    "fn": "binary: probability of a false negative (predicted negative and wrong)",
    "outside": "1 when the record is outside the reference's support, else 0",
}


@dataclass(frozen=True)
class Estimate:
    """A window's estimated performance; None = not known (no records, or no alpha to test at).

    metric: "mse" or "error_rate"; estimate: the window's estimated MSE or error rate;
    reference: the no-drift value the score compares with (mean out-of-fold estimate);
    score: (estimate - reference) / reference; threshold on the score, detected = score > threshold;
    outside_share: share of the window's records outside the reference's support."""

    metric: str
    records: int
    estimate: float | None
    reference: float
    score: float | None
    threshold: float | None
    detected: bool | None
    outside_share: float | None
    mae: float | None = None  # regression
    accuracy: float | None = None  # classification
    precision: float | None = None  # binary classification
    recall: float | None = None
    f1: float | None = None


def _grid(n: float, alpha: float) -> tuple[int, float]:
    """n rounded down (3 significant digits above 1,000, a multiple of 10 from 100) and alpha down
    to a 2**(1/4) grid: both raise the threshold (conservative) and keep the cache small."""
    n = max(int(n), 1)
    if n > 1000:
        unit = 10 ** (int(math.log10(n)) - 2)
        n = n // unit * unit
    elif n >= 100:
        n = n // 10 * 10
    return n, 2.0 ** (math.floor(math.log2(alpha) * 4) / 4)


class EstimateNull:
    """No-drift distribution of a window's mean per-record estimate, as a threshold on the score.

    out_of_fold (m,): the reference's cross-fitted estimates (their mean is `reference`);
    in_sample (m,): the final estimator's on the same rows (what a replay of the reference gives).

    >>> rng = np.random.default_rng(0)
    >>> oof = rng.gamma(0.5, 2.0, 5000)
    >>> null = EstimateNull(oof, oof * 1.02)
    >>> round(null.reference, 3), round(null.threshold(1000, 1e-6), 3)  # set by the in-sample ones, 2% higher
    (1.0, 0.274)
    >>> null.threshold(1000, 1e-6) > null.threshold(4000, 1e-6)  # more records, a tighter null
    True
    """

    def __init__(
        self, out_of_fold: Sequence[float], in_sample: Sequence[float] | None = None
    ) -> None:
        self.out_of_fold = np.asarray(out_of_fold, dtype=np.float64)
        self.in_sample = (
            self.out_of_fold if in_sample is None else np.asarray(in_sample, dtype=np.float64)
        )
        m = self.out_of_fold.size
        if m < 2 or self.in_sample.shape != (m,):
            raise ValueError(
                f"need (m,) out-of-fold and in-sample estimates with m >= 2, got {m} and "
                f"{self.in_sample.shape}"
            )
        for values in (self.out_of_fold, self.in_sample):
            if not np.all(np.isfinite(values)) or values.min() < 0 or values.std() == 0:
                raise ValueError(
                    "per-record estimates must be finite, non-negative and not all equal"
                )
        self.size = m
        self.reference = float(self.out_of_fold.mean())
        self._cache: dict[tuple[int, float], float] = {}  # (n, alpha) on the grid -> threshold

    def threshold(self, n: float, alpha: float) -> float:
        """Threshold on the score (estimate - reference) / reference for a window of n records at
        false-alarm probability alpha (one-sided); cached on a conservative grid (`_grid`)."""
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
        key = _grid(n, alpha)
        if key not in self._cache:
            n_grid, level = key
            effective = n_grid * self.size / (n_grid + self.size)
            quantile = max(
                stats.mean_upper_quantile(values, effective, level)
                for values in (self.out_of_fold, self.in_sample)
            )
            self._cache[key] = quantile / self.reference - 1.0
        return self._cache[key]

    def to_dict(self) -> dict[str, Any]:
        return {"out_of_fold": self.out_of_fold.tolist(), "in_sample": self.in_sample.tolist()}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> EstimateNull:
        return cls(state["out_of_fold"], state["in_sample"])


class PerformanceEstimator(Protocol):
    """What the monitor core calls; see `LossEstimator` and `ConfidenceEstimator`."""

    names: tuple[str, ...]  # the per-record columns, see FIELDS
    metric: str  # "mse" or "error_rate": what the alarm is on
    null: EstimateNull

    @property
    def reference_value(self) -> float: ...

    def check_layout(self, sizes: Mapping[str, int]) -> None: ...

    def per_record(self, batch: PredictionBatch, encoded: EncodedBatch) -> np.ndarray: ...

    def threshold(self, n: float, alpha: float) -> float: ...

    def evaluate(
        self, sums: Sequence[float], records: int, alpha: float | None = None
    ) -> Estimate: ...

    def to_dict(self) -> dict[str, Any]: ...


class _Estimator:
    """What both estimators share: the layout they are bound to, the outside table, the null."""

    names: tuple[str, ...] = ()
    metric = ""

    def __init__(
        self,
        layout: Mapping[str, int],
        outside: Sequence[bool],
        null: EstimateNull,
        realized_reference: float,
    ) -> None:
        self.layout = {str(k): int(v) for k, v in layout.items()}
        self.total = sum(self.layout.values())
        self.outside = np.asarray(
            outside, dtype=bool
        )  # (total + 1,): the spill bin (unseen category) last
        if self.outside.shape != (self.total + 1,):
            raise ValueError(
                f"outside table has {self.outside.size} entries, the layout {self.total} bins + spill"
            )
        self.null, self.realized_reference = null, float(realized_reference)

    @property
    def reference_value(self) -> float:
        """The score's reference: the mean out-of-fold estimate (see the module doc)."""
        return self.null.reference

    def check_layout(self, sizes: Mapping[str, int]) -> None:
        """ValueError unless the monitor's pane layout is the one the tables index (same reference)."""
        if dict(sizes) != self.layout:
            raise ValueError(
                "the performance estimator was fitted on another reference (bin layout differs): refit it"
            )

    def threshold(self, n: float, alpha: float) -> float:
        return self.null.threshold(n, alpha)

    def _judge(
        self, records: int, estimate: float, outside: float, alpha: float | None, **extra: Any
    ) -> Estimate:
        score = (estimate - self.reference_value) / self.reference_value
        threshold = None if alpha is None else self.threshold(records, alpha)
        return Estimate(
            metric=self.metric,
            records=records,
            estimate=estimate,
            reference=self.reference_value,
            score=score,
            threshold=threshold,
            detected=None if threshold is None else score > threshold,
            outside_share=outside / records,
            **extra,
        )

    def _empty(self, records: int) -> Estimate:
        return Estimate(
            metric=self.metric,
            records=records,
            estimate=None,
            reference=self.reference_value,
            score=None,
            threshold=None,
            detected=None,
            outside_share=None,
        )

    def fingerprint(self) -> str:
        """16 hex digits of the parameters' hash: panes summed under another estimator must not merge."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class LossEstimator(_Estimator):
    """Expected squared and absolute error per record from additive tables over the pane bins.

    tables: (2, total + 1) log-scale contributions of each flat bin (row 0 squared, row 1 absolute
    error; the last entry, the spill bin of an unseen category, contributes 0, the reference's
    average); intercepts (2,); outside (total + 1,) bool. Two columns, x in [0, 1) and a category:

    >>> layout = {"x": 5, "c": 2}  # x: edges 0.0, 0.5 -> 5 bins; c: categories a, b
    >>> tables = np.log([[1, 1, 2, 2, 4, 1, 3, 1], [1, 1, 1.5, 1.5, 2, 1, 1.7, 1]])
    >>> outside = np.array([1, 0, 0, 0, 1, 0, 0, 1], dtype=bool)  # below/above x's range, unseen c
    >>> oof = np.random.default_rng(1).gamma(2.0, 2.0, 2000)
    >>> estimator = LossEstimator(layout, tables, np.log([1.0, 1.0]), outside, EstimateNull(oof), 3.9, 1.8)
    >>> flat = np.array([[1, 5], [3, 6], [4, 7]])  # x on edge 0.0 & a; x = 0.5 & b; x above & unseen
    >>> from monitor.windows import EncodedBatch
    >>> estimator.per_record(None, EncodedBatch(flat, {})).tolist()
    [[1.0, 1.0, 0.0], [6.0, 2.55, 0.0], [4.0, 2.0, 1.0]]
    >>> window = estimator.evaluate([11.0, 5.55, 1.0], 3, alpha=1e-3)
    >>> round(window.estimate, 3), round(window.mae, 3), round(window.score, 3), window.detected
    (3.667, 1.85, -0.081, False)
    """

    names = ("squared", "absolute", "outside")
    metric = "mse"

    def __init__(
        self,
        layout: Mapping[str, int],
        tables: Sequence[Sequence[float]],
        intercepts: Sequence[float],
        outside: Sequence[bool],
        null: EstimateNull,
        realized_mse: float,
        realized_mae: float,
    ) -> None:
        super().__init__(layout, outside, null, realized_mse)
        self.tables = np.asarray(tables, dtype=np.float64)
        self.intercepts = np.asarray(intercepts, dtype=np.float64)
        if self.tables.shape != (2, self.total + 1) or self.intercepts.shape != (2,):
            raise ValueError(
                f"tables must be (2, {self.total + 1}) and intercepts (2,), got "
                f"{self.tables.shape} and {self.intercepts.shape}"
            )
        self.realized_mae = float(realized_mae)
        self._squared, self._absolute = (
            np.ascontiguousarray(t) for t in self.tables
        )  # contiguous gathers

    def per_record(self, batch: PredictionBatch | None, encoded: EncodedBatch) -> np.ndarray:
        """(n, 3): expected squared error, expected absolute error, outside (0/1). Only the bins are
        read (the features and the prediction are among them), so `batch` may be None."""
        flat = encoded.flat
        out = np.empty((len(flat), 3))
        # One gather per table: a (n, columns, 2) gather then a strided sum measured 2-3x slower.
        out[:, 0] = np.exp(self.intercepts[0] + self._squared[flat].sum(axis=1))
        out[:, 1] = np.exp(self.intercepts[1] + self._absolute[flat].sum(axis=1))
        out[:, 2] = self.outside[flat].any(axis=1)
        return out

    def evaluate(self, sums: Sequence[float], records: int, alpha: float | None = None) -> Estimate:
        """The window's estimated MSE (and MAE) from the pane sums of `names`, tested at alpha if given."""
        if records <= 0:
            return self._empty(records)
        squared, absolute, outside = (float(s) for s in sums)
        return self._judge(records, squared / records, outside, alpha, mae=absolute / records)

    def describe(self) -> str:
        return (
            f"estimated MSE: additive nanny over {len(self.layout)} columns of pane bins; reference MSE "
            f"{self.realized_reference:,.6g} (mean out-of-fold estimate {self.reference_value:,.6g}, "
            f"{self.null.size:,} rows)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "loss",
            "layout": self.layout,
            "tables": self.tables.tolist(),
            "intercepts": self.intercepts.tolist(),
            "outside": self.outside.astype(int).tolist(),
            "null": self.null.to_dict(),
            "realized_mse": self.realized_reference,
            "realized_mae": self.realized_mae,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> LossEstimator:
        return cls(
            state["layout"],
            state["tables"],
            state["intercepts"],
            state["outside"],
            EstimateNull.from_dict(state["null"]),
            state["realized_mse"],
            state["realized_mae"],
        )


class ConfidenceEstimator(_Estimator):
    """Probability that the predicted class is right, per record, from calibrated probabilities.

    classes: the schema's class texts; knots: one (x, y) calibration map per class, both (k,)
    increasing over [0, 1] (the probability of the predicted class -> the probability it is right;
    [0, 1] -> [0, 1] is the raw probability); prediction_bins: {flat bin of the predicted-class
    column: class index}, the spill bin (a class never predicted on the reference) resolved by its
    text; positive: a binary model's positive class index (None: multiclass, no confusion matrix).

    >>> layout = {"p(yes)": 5, "prediction": 2}  # p(yes): edges 0.1, 0.9; predicted: no, yes
    >>> outside = np.array([1, 0, 0, 0, 1, 0, 0, 1], dtype=bool)  # p(yes) < 0.1 or > 0.9; unseen class
    >>> knots = [([0.0, 0.6, 1.0], [0.0, 0.8, 0.9]), ([0.0, 1.0], [0.0, 1.0])]  # "no" calibrated, "yes" raw
    >>> errors = np.random.default_rng(2).uniform(0.0, 0.5, 1000)
    >>> estimator = ConfidenceEstimator(layout, ("no", "yes"), knots, {5: 0, 6: 1}, 1, outside,
    ...                                 EstimateNull(errors), 0.25)
    >>> from monitor.windows import EncodedBatch, PredictionBatch
    >>> batch = PredictionBatch(np.array(["a", "b", "c"]), np.zeros(3, np.int64),
    ...                         np.array(["no", "no", "yes"], dtype=object), {}, {},
    ...                         {"yes": np.array([0.4, 0.2, 0.95])})
    >>> encoded = EncodedBatch(np.array([[2, 5], [2, 5], [4, 6]]), {})
    >>> estimator.per_record(batch, encoded).round(3).tolist()  # error, tp, fp, fn, outside
    [[0.2, 0.0, 0.0, 0.2, 0.0], [0.15, 0.0, 0.0, 0.15, 0.0], [0.05, 0.95, 0.05, 0.0, 1.0]]
    >>> window = estimator.evaluate(estimator.per_record(batch, encoded).sum(axis=0), 3)
    >>> round(window.estimate, 3), round(window.accuracy, 3), round(window.precision, 3), round(window.recall, 3)
    (0.133, 0.867, 0.95, 0.731)
    """

    metric = "error_rate"

    def __init__(
        self,
        layout: Mapping[str, int],
        classes: Sequence[str],
        knots: Sequence[tuple[Sequence[float], Sequence[float]]],
        prediction_bins: Mapping[int, int],
        positive: int | None,
        outside: Sequence[bool],
        null: EstimateNull,
        realized_error_rate: float,
    ) -> None:
        super().__init__(layout, outside, null, realized_error_rate)
        self.classes = tuple(map(str, classes))
        if len(knots) != len(self.classes):
            raise ValueError(
                f"need one calibration map per class ({len(self.classes)}), got {len(knots)}"
            )
        self.knots = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in knots]
        for (x, y), name in zip(self.knots, self.classes):
            if x.shape != y.shape or x.size < 2 or np.any(np.diff(x) <= 0) or x[0] < 0 or x[-1] > 1:
                raise ValueError(
                    f"class {name!r}: calibration knots must be increasing x in [0, 1], "
                    "with y of the same size"
                )
        if positive is not None and (len(self.classes) != 2 or positive not in (0, 1)):
            raise ValueError("a positive class (a confusion matrix) is for binary models only")
        self.positive = positive
        self.names = (
            ("error", "tp", "fp", "fn", "outside") if positive is not None else ("error", "outside")
        )
        # Class k's map sits on [2k, 2k + 1] of one concatenated axis: one np.interp for every class.
        self._x = np.concatenate([2 * k + x for k, (x, _) in enumerate(self.knots)])
        self._y = np.concatenate([y for _, y in self.knots])
        self.prediction_bins = {int(b): int(k) for b, k in prediction_bins.items()}
        self._class_of_bin = np.full(self.total + 1, -1, dtype=np.int64)
        self._class_of_bin[list(self.prediction_bins)] = list(self.prediction_bins.values())
        self._index = {c: k for k, c in enumerate(self.classes)}
        self._column = list(self.layout).index(
            "prediction"
        )  # the predicted class's column in `flat`

    def _probability_of(self, batch: PredictionBatch, predicted: np.ndarray) -> np.ndarray:
        """(n,) the model's probability of the class each record's prediction names. A binary model
        may carry one class's probability only (the other's is 1 - p)."""
        given = batch.probabilities
        if len(self.classes) == 2:
            second = (
                np.asarray(given[self.classes[1]], dtype=np.float64)
                if self.classes[1] in given
                else 1.0 - np.asarray(given[self.classes[0]], dtype=np.float64)
            )
            return np.where(predicted == 1, second, 1.0 - second)
        stacked = np.stack([np.asarray(given[c], dtype=np.float64) for c in self.classes], axis=1)
        return stacked[np.arange(len(predicted)), predicted]

    def per_record(self, batch: PredictionBatch, encoded: EncodedBatch) -> np.ndarray:
        """(n, F) with F = len(names): error = 1 - c, then (binary) tp, fp, fn, then outside (0/1)."""
        flat = encoded.flat
        n = len(flat)
        predicted = self._class_of_bin[flat[:, self._column]]
        unknown = predicted < 0  # a class the model never predicted on the reference: by its text
        if unknown.any():
            texts = np.asarray(batch.predictions, dtype=object)[unknown]
            predicted[unknown] = np.fromiter(
                map(self._index.get, texts.tolist()), np.int64, int(unknown.sum())
            )
        p = self._probability_of(batch, predicted)
        right = np.interp(2 * predicted + np.clip(p, 0.0, 1.0), self._x, self._y)
        out = np.empty((n, len(self.names)))
        out[:, 0] = 1.0 - right
        if self.positive is not None:
            positive = predicted == self.positive
            out[:, 1] = np.where(positive, right, 0.0)
            out[:, 2] = np.where(positive, out[:, 0], 0.0)
            out[:, 3] = np.where(positive, 0.0, out[:, 0])
        out[:, -1] = self.outside[flat].any(axis=1)
        return out

    def evaluate(self, sums: Sequence[float], records: int, alpha: float | None = None) -> Estimate:
        """The window's estimated error rate and accuracy (binary: precision, recall, F1 from the
        expected confusion matrix; None where a denominator is 0), tested at alpha if given."""
        if records <= 0:
            return self._empty(records)
        values = [float(s) for s in sums]
        error, outside = values[0], values[-1]
        extra: dict[str, float | None] = {"accuracy": 1.0 - error / records}
        if self.positive is not None:
            tp, fp, fn = values[1:4]
            extra.update(
                precision=tp / (tp + fp) if tp + fp > 0 else None,
                recall=tp / (tp + fn) if tp + fn > 0 else None,
                f1=2 * tp / (2 * tp + fp + fn) if tp > 0 else None,
            )
        return self._judge(records, error / records, outside, alpha, **extra)

    def describe(self) -> str:
        calibrated = [c for c, (x, y) in zip(self.classes, self.knots) if not np.array_equal(x, y)]
        return (
            f"estimated error rate: probability of the predicted class, calibrated (isotonic) for "
            f"{', '.join(calibrated) or 'no class'}; reference error rate {self.realized_reference:.4f} "
            f"(mean out-of-fold estimate {self.reference_value:.4f}, {self.null.size:,} rows)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "confidence",
            "layout": self.layout,
            "classes": list(self.classes),
            "knots": [[x.tolist(), y.tolist()] for x, y in self.knots],
            "prediction_bins": {str(b): k for b, k in self.prediction_bins.items()},
            "positive": self.positive,
            "outside": self.outside.astype(int).tolist(),
            "null": self.null.to_dict(),
            "realized_error_rate": self.realized_reference,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ConfidenceEstimator:
        return cls(
            state["layout"],
            state["classes"],
            [tuple(k) for k in state["knots"]],
            {int(b): k for b, k in state["prediction_bins"].items()},
            state["positive"],
            state["outside"],
            EstimateNull.from_dict(state["null"]),
            state["realized_error_rate"],
        )


def from_dict(state: Mapping[str, Any]) -> LossEstimator | ConfidenceEstimator:
    """The estimator `to_dict` wrote (JSON-friendly), of either kind."""
    kinds = {"loss": LossEstimator, "confidence": ConfidenceEstimator}
    if state.get("kind") not in kinds:
        raise ValueError(f"unknown estimator kind {state.get('kind')!r}")
    return kinds[state["kind"]].from_dict(state)
