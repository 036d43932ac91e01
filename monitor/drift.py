"""Evaluating a window against the reference, and the monitor that ties window, join and budget.

Result semantics: when the window holds fewer than `min_records` records, `ready` is False and
every statistic, threshold and detection is None (never a reassuring 0 or False); likewise the
concept-drift fields are None while fewer than `min_joined` records of the window have labels.
Gauges should then be absent or NaN, not zero.

Two scales (calibrated mode, windows of 2 panes or more; see `calibration`): every feature and the
predictions are tested on the whole window and on its newest half (`recent`: the last panes // 2
panes, 500 of 1,000 records at the defaults), each against its own threshold for its own n, with
the budget split over both scales' tests (15 at the defaults instead of 8). A column is detected
when either scale exceeds its threshold. Each FeatureDrift, and the prediction fields, report the
scale with the larger statistic / threshold ratio: its statistic, distance, p-value and threshold,
with `scale` ("window" or "recent") and `records` (records behind that statistic) naming it, so
"detected" always equals "statistic > threshold" as shown. `data_drift` (the tutorial's mean
score) stays the mean of the whole window's distances. Fixed mode tests the whole window only.

The shell's loop:
    monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250))   # or TimeWindow(...)
    results = monitor.update(PredictionBatch.from_messages(msgs, NUMERIC, CATEGORICAL))
    monitor.update_labels(ids, ts, prices)      # whenever labels arrive, before or after
    gauges <- results[-1] (or monitor.result() for the latest closed window, labels included)
    persist monitor.to_dict() (JSON-friendly); on restart monitor.load_dict(state)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from monitor import stats
from monitor.calibration import Calibration
from monitor.join import ErrorWindow, Joined, LabelJoin
from monitor.reference import PREDICTION, Reference
from monitor.windows import CountWindow, EncodedBatch, Pane, PaneLayout, PredictionBatch, TimeWindow


@dataclass(frozen=True)
class FeatureDrift:
    """One column's test. statistic: KS D ("ks") or Pearson X2 ("chi2"); distance in [0, 1]: KS D or
    total variation. Calibrated mode compares `threshold` with `statistic`, fixed mode with `distance`."""

    name: str
    test: str
    statistic: float
    distance: float
    p_value: float
    threshold: float
    detected: bool  # either scale exceeded its threshold (= statistic > threshold of the reported scale)
    scale: str = "window"  # the reported scale: "window" (whole window) or "recent" (its newest half)
    records: int = 0  # records behind the reported statistic


@dataclass(frozen=True)
class DriftResult:
    """The evaluation of the window ending at pane `pane`; None = not enough data to say."""

    pane: int
    records: int  # predictions in the window
    ready: bool  # records >= min_records
    alpha: float | None  # per-test false-alarm probability (calibrated mode)
    features: tuple[FeatureDrift, ...]  # empty when not ready
    data_drift: float | None  # mean feature distance: the tutorial's dataset score
    share_detected: float | None
    dataset_detected: bool | None
    prediction_drift: float | None  # KS D of predictions
    prediction_threshold: float | None
    prediction_detected: bool | None
    joined: int  # labelled records behind rolling_mse (the latest joined, see ErrorWindow)
    label_coverage: float | None  # share of the window's predictions whose label has arrived
    rolling_mse: float | None
    rolling_mae: float | None
    reference_mse: float
    concept_drift: float | None  # (rolling MSE - reference MSE) / reference MSE
    concept_threshold: float | None
    concept_detected: bool | None
    prediction_scale: str | None = None  # scale of prediction_drift: "window" or "recent" (see FeatureDrift)

    @property
    def drift_detected(self) -> bool:
        """Any alarm: dataset, prediction or concept drift."""
        return bool(self.dataset_detected or self.prediction_detected or self.concept_detected)


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation tests, captured when its pane closes: the aggregated window, the records
    new since the previous evaluation (they set alpha), the (joined, sum squared, sum absolute)
    errors of the latest labelled records (an ErrorWindow) and the window's newest panes (the recent
    scale) or None."""

    window: Pane
    new_records: int
    errors: tuple[int, float, float]
    recent: Pane | None = None


def evaluate_all(layout: PaneLayout, calibration: Calibration, evaluations: Sequence[Evaluation],
                 min_records: int = 1000, min_joined: int = 100) -> list[DriftResult]:
    """The results of several evaluations; their column tests run in one vectorised call, so a batch
    that closes many panes pays numpy's per-call cost once, not once per pane.

    A window is tested when it holds min_records; concept drift when min_joined labelled records.
    The recent scale is tested when it holds at least min_records / 2 records and fewer than the
    window (calibrated mode with `calibration.recent` only)."""
    floor = max(min_records, 1)
    results: list[DriftResult | None] = []
    rows: list[tuple[Pane, str, float]] = []  # (pane, scale, alpha) of every test row
    plans = []
    for item in evaluations:
        window, n = item.window, item.window.records
        alpha = calibration.alpha(item.new_records) if calibration.calibrated else None
        concept = _concept(layout.reference, calibration, window, alpha, min_joined, item.errors)
        if n < floor:
            results.append(DriftResult(window.id, n, False, alpha, (), None, None, None, None, None, None, **concept))
            continue
        first = len(rows)
        rows.append((window, "window", alpha or 0.0))
        if calibration.recent and item.recent is not None and floor / 2 <= item.recent.records < n:
            rows.append((item.recent, "recent", alpha or 0.0))
        plans.append((len(results), first, len(rows), window, alpha, concept))
        results.append(None)
    if not rows:
        return results  # type: ignore[return-value]
    tested = column_tests(layout, calibration, [pane for pane, _, _ in rows], [a for _, _, a in rows])
    # Plain lists from here: 7 columns x 2 scales is too small for numpy's per-call cost.
    statistic, distance, p_value, threshold = (x.tolist() for x in (tested.statistic, tested.distance,
                                                                    tested.p_value, tested.threshold))
    compared = statistic if calibration.calibrated else distance
    for position, first, stop, window, alpha, concept in plans:
        columns = []
        for c, (name, test) in enumerate(zip(tested.names, tested.tests)):
            # the scale with the larger statistic / threshold (NaN lowest; first of ties: the window)
            s = max(range(first, stop), key=lambda s: _ratio(statistic[s][c], threshold[s][c]))
            columns.append(FeatureDrift(name, test, statistic[s][c], distance[s][c], p_value[s][c], threshold[s][c],
                                        compared[s][c] > threshold[s][c], rows[s][1], rows[s][0].records))
        features, prediction = columns[:-1], columns[-1]
        data_drift = sum(distance[first][:-1]) / len(features)  # the mean of the whole window's distances
        detected = sum(f.detected for f in features)
        dataset = detected > 0 if calibration.calibrated else data_drift > calibration.fixed_threshold
        results[position] = DriftResult(
            window.id, window.records, True, alpha, tuple(features), data_drift, detected / len(features), dataset,
            prediction.statistic, prediction.threshold, prediction.detected, **concept,
            prediction_scale=prediction.scale,
        )
    return results  # type: ignore[return-value]


def _ratio(statistic: float, threshold: float) -> float:
    """Statistic over threshold; NaN sorts below any number."""
    ratio = statistic / threshold if threshold else math.inf
    return ratio if ratio == ratio else -math.inf


@dataclass(frozen=True)
class ColumnTests:
    """Every column's test at every scale: (scales, columns) arrays, columns = features..., prediction."""

    names: tuple[str, ...]
    tests: tuple[str, ...]  # "ks" or "chi2" per column
    statistic: np.ndarray
    distance: np.ndarray
    p_value: np.ndarray
    threshold: np.ndarray


class ColumnLayout:
    """Where each test's bins sit in a pane's flat counts, so all scales are tested in a few numpy calls.

    The flat layout is numeric features..., prediction, categorical... (see `PaneLayout`): the KS
    columns are one contiguous run of bins and the chi-square columns the next. Every record has one
    bin in each KS column, so one cumulative sum over the run, divided by n, minus j is column j's own
    CDF (`ks_shifted` holds reference CDF + j); `maximum.reduceat` / `add.reduceat` take each column's
    maximum or sum. The results equal `stats`' per-column functions (tested)."""

    def __init__(self, layout: PaneLayout) -> None:
        reference = layout.reference
        ks_names = (*reference.numeric, PREDICTION)
        bins = [reference.numeric[name] for name in reference.numeric] + [reference.prediction]
        self.ks_end = layout.slices[PREDICTION].stop
        self.ks_starts = np.array([layout.slices[name].start for name in ks_names])
        if self.ks_starts.tolist() != np.cumsum([0] + [b.size for b in bins[:-1]]).tolist():
            raise ValueError("pane layout is not numeric..., prediction, categorical...")
        self.ks_shifted = np.concatenate([b.reference_cdf + j for j, b in enumerate(bins)])
        self.reference_size = reference.size
        self.chi2_names = tuple(reference.categorical)
        profiles = [reference.categorical[name] for name in self.chi2_names]
        self.chi2_starts = np.array([layout.slices[name].start - self.ks_end for name in self.chi2_names], dtype=np.int64)
        self.chi2_column = np.repeat(np.arange(len(profiles)), [p.size for p in profiles])
        self.chi2_reference = np.concatenate([p.counts for p in profiles]).astype(np.float64)
        self.chi2_fraction = np.concatenate([p.counts / p.counts.sum() for p in profiles])
        self.chi2_known = np.array([p.size for p in profiles])
        self.chi2_m = np.array([p.counts.sum() for p in profiles], dtype=np.float64)
        # result order: the features as the reference lists them (numeric, then categorical), then predictions
        self.names = (*reference.features, PREDICTION)
        self.tests = tuple("chi2" if name in reference.categorical else "ks" for name in self.names)

    @staticmethod
    def ordered(ks_part: np.ndarray, chi2_part: np.ndarray) -> np.ndarray:
        """(scales, numeric... prediction) and (scales, categorical...) as (scales, columns) in result order."""
        return np.concatenate((ks_part[:, :-1], chi2_part, ks_part[:, -1:]), axis=1)


_column_layout = lru_cache(maxsize=16)(ColumnLayout)  # one per PaneLayout (hashed by identity)


def column_tests(layout: PaneLayout, calibration: Calibration, panes: Sequence[Pane],
                 alpha: float | Sequence[float]) -> ColumnTests:
    """Every column's test on each aggregated pane (a scale): KS for numeric columns and predictions,
    smoothed chi-square (+ total variation) for categorical ones, with unseen categories as extra
    categories of reference count 0; thresholds from `calibration` at `alpha` (one for all panes, or
    one per pane). Every evaluation runs this, so it keeps to few numpy calls (each costs
    microseconds, whatever its size)."""
    tl = _column_layout(layout)
    alphas = [alpha] * len(panes) if isinstance(alpha, (int, float)) else list(alpha)
    counts = np.stack([pane.counts for pane in panes])
    sizes = [pane.records for pane in panes]
    n = np.array(sizes, dtype=np.float64)[:, None]
    empty = n[:, 0] == 0
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty pane gives NaN, as stats' functions
        # Every record has one bin in each KS column, so column j's run starts at j * n records:
        # the cumulative fraction minus j is the column's own CDF (`ks_shifted` = reference CDF + j).
        ks = np.maximum.reduceat(np.abs(np.cumsum(counts[:, :tl.ks_end], axis=1) / n - tl.ks_shifted),
                                 tl.ks_starts, axis=1)
        ks_scale = np.array([stats.ks_scale(k, tl.reference_size) if k else np.nan for k in sizes])[:, None]
        ks_p = special.kolmogorov(ks_scale * ks)
        ks_threshold = np.array([[_ks_threshold(calibration, k, a) if k else np.nan] for k, a in zip(sizes, alphas)])

        known = counts[:, tl.ks_end:]
        unseen = [[np.fromiter(pane.unseen[name].values(), dtype=np.float64) if name in pane.unseen else _NONE
                   for name in tl.chi2_names] for pane in panes]
        extra = np.array([[len(u) for u in row] for row in unseen])
        total = tl.chi2_m + calibration.pseudo_count * (tl.chi2_known + extra)  # (scales, columns)
        expected = n * (tl.chi2_reference + calibration.pseudo_count) / total[:, tl.chi2_column]
        x2 = np.add.reduceat((known - expected) ** 2 / expected, tl.chi2_starts, axis=1)
        tv = np.add.reduceat(np.abs(known / n - tl.chi2_fraction), tl.chi2_starts, axis=1)
        for s, c in zip(*np.nonzero(extra)):  # categories the reference never saw
            expected_unseen = n[s, 0] * calibration.pseudo_count / total[s, c]
            x2[s, c] += ((unseen[s][c] - expected_unseen) ** 2).sum() / expected_unseen
            tv[s, c] += unseen[s][c].sum() / n[s, 0]
        x2 = x2 * tl.chi2_m / (n + tl.chi2_m)
        tv = 0.5 * tv
        dof = np.where(n > 0, tl.chi2_known + extra - 1, 0)
        chi2_p = special.chdtrc(dof, x2)
    ks[empty], x2[empty], tv[empty], chi2_p[empty] = np.nan, np.nan, np.nan, np.nan
    chi2_threshold = np.array([[_chi2_threshold(calibration, d, a) for d in row] for row, a in zip(dof.tolist(), alphas)])
    return ColumnTests(tl.names, tl.tests, tl.ordered(ks, x2), tl.ordered(ks, tv), tl.ordered(ks_p, chi2_p),
                       tl.ordered(np.broadcast_to(ks_threshold, ks.shape), chi2_threshold))


_NONE = np.empty(0)


@lru_cache(maxsize=4096)
def _ks_threshold(calibration: Calibration, n: int, alpha: float) -> float:
    return calibration.ks(n, alpha)


@lru_cache(maxsize=4096)
def _chi2_threshold(calibration: Calibration, dof: int, alpha: float) -> float:
    return calibration.chi2(dof, alpha)


def _concept(reference: Reference, calibration: Calibration, window: Pane, alpha: float | None, min_joined: int,
             errors: tuple[int, float, float]) -> dict:
    k, sse, sae = errors
    n = window.records
    out: dict[str, Any] = {
        "joined": k,
        # How many of the window's own predictions have their label yet.
        "label_coverage": window.joined / n if n else None,
        "reference_mse": reference.mse,
        "rolling_mse": None,
        "rolling_mae": None,
        "concept_drift": None,
        "concept_threshold": None,
        "concept_detected": None,
    }
    if k >= max(min_joined, 1):
        mse = sse / k
        ratio = (mse - reference.mse) / reference.mse
        threshold = calibration.mse_ratio(k, alpha or 0.0)
        out.update(rolling_mse=mse, rolling_mae=sae / k, concept_drift=ratio,
                   concept_threshold=threshold, concept_detected=ratio > threshold)
    return out


class DriftMonitor:
    """A window of prediction panes, the label join feeding it errors, and calibrated tests.

    min_records: window records needed to evaluate (default: `window` for a CountWindow, 100 for a
    TimeWindow); min_joined: labelled records needed for concept drift (default 100).
    concept_window / concept_step: the rolling MSE covers the latest `concept_window` joined
    records (default: the count window's size and step, 1000/250 for a TimeWindow), whenever
    their labels came.
    """

    def __init__(
        self,
        reference: Reference,
        window: CountWindow | TimeWindow,
        ert: float = 10_000_000,
        mode: str = "calibrated",
        label_ttl_ms: int = 3_600_000,
        max_pending: int = 200_000,
        min_records: int | None = None,
        min_joined: int = 100,
        concept_window: int | None = None,
        concept_step: int | None = None,
    ) -> None:
        if window.layout.reference is not reference:
            raise ValueError("window was built for another reference")
        if min_records is None:
            min_records = window.window if isinstance(window, CountWindow) else 100
        if min_records < 1 or min_joined < 1:
            raise ValueError(f"min_records and min_joined must be >= 1, got {min_records} and {min_joined}")
        self.reference, self.window = reference, window
        # The newest-half scale needs at least 2 panes per window (see `calibration`).
        self.calibration = Calibration(reference, ert, mode, recent=window.panes_per_window >= 2)
        self.join = LabelJoin(label_ttl_ms, max_pending)
        counted = isinstance(window, CountWindow)
        self.errors = ErrorWindow(concept_window or (window.window if counted else 1000),
                                  concept_step or (window.step if counted else 250))
        self.min_records, self.min_joined = min_records, min_joined

    def update(self, batch: PredictionBatch) -> list[DriftResult]:
        """Add n predictions; returns one result per pane this batch closed (oldest first).

        A count window takes the batch one step at a time, so each evaluation sees only the
        labels joined by records up to its own end (a batch can hold records far past it). What
        each evaluation tests is captured as its pane closes; the tests of all run at the end."""
        encoded = self.window.layout.encode(batch)  # once for the batch: numpy's per-call cost is per step otherwise
        if not isinstance(self.window, CountWindow):
            pending = self._update(batch, encoded)
        else:
            pending = []
            start = 0
            while start < len(batch):
                stop = start + self.window.step - self.window.records % self.window.step
                pending += self._update(batch.rows(start, stop), encoded.rows(start, stop))
                start = stop
        return evaluate_all(self.window.layout, self.calibration, pending, self.min_records, self.min_joined)

    def _update(self, batch: PredictionBatch, encoded: EncodedBatch) -> list[Evaluation]:
        pane_ids, closed = self.window.update(batch, encoded)
        self._errors(self.join.add_predictions(batch.ids, batch.ts, batch.predictions, pane_ids))
        evaluations = [self._evaluation(q) for q in closed]
        self.window.expire()
        return evaluations

    def update_labels(self, ids: Sequence[str], ts: ArrayLike, prices: ArrayLike) -> None:
        """Add n labels (id, event ts ms, true price); joined errors feed the rolling MSE
        (the latest joined records) and the label coverage of their prediction's pane."""
        self._errors(self.join.add_labels(ids, ts, prices))

    def result(self) -> DriftResult | None:
        """The window ending at the newest closed pane, with labels joined since; None before one closes."""
        q = self.window.last_closed
        if q is None:
            return None
        return evaluate_all(self.window.layout, self.calibration, [self._evaluation(q)], self.min_records,
                            self.min_joined)[0]

    def _errors(self, joined: Joined) -> None:
        if len(joined):
            self.window.add_errors(joined.pane_ids, joined.squared, joined.absolute)  # label coverage
            self.errors.add(joined.squared, joined.absolute)

    def _evaluation(self, pane_id: int) -> Evaluation:
        closed = self.window.panes.get(pane_id)
        recent = (self.window.aggregate(pane_id, self.window.panes_per_window // 2)
                  if self.calibration.recent else None)
        return Evaluation(self.window.aggregate(pane_id), closed.records if closed is not None else 0,
                          self.errors.totals(), recent)

    @property
    def counters(self) -> dict[str, int]:
        """Monotonic totals for the shell's *_total counters."""
        w, j = self.window, self.join
        return {
            "records": w.records, "late_records": w.late_records, "late_errors": w.late_errors,
            "joined": j.joined, "expired_predictions": j.expired_predictions,
            "expired_labels": j.expired_labels, "duplicate_predictions": j.duplicates, "pending": j.pending,
        }

    def to_dict(self) -> dict[str, Any]:
        """Window panes and pending join entries, JSON-friendly."""
        return {"window": self.window.to_dict(), "join": self.join.to_dict(), "errors": self.errors.to_dict()}

    def load_dict(self, state: Mapping[str, Any]) -> None:
        self.window.load_dict(state["window"])
        self.join.load_dict(state["join"])
        self.errors.load_dict(state["errors"])
