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
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from monitor import stats
from monitor.calibration import Calibration
from monitor.join import ErrorWindow, Joined, LabelJoin
from monitor.reference import PREDICTION, Reference
from monitor.windows import CountWindow, Pane, PaneLayout, PredictionBatch, TimeWindow


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


def evaluate(
    layout: PaneLayout,
    calibration: Calibration,
    window: Pane,
    new_records: int,
    min_records: int = 1000,
    min_joined: int = 100,
    errors: tuple[int, float, float] | None = None,
    recent: Pane | None = None,
) -> DriftResult:
    """Tests of one aggregated window pane; `new_records` since the previous evaluation sets alpha.

    errors: (joined, sum squared, sum absolute) of the latest labelled records (an ErrorWindow);
    without it, the errors joined to the window's own panes. recent: the window's newest panes
    (calibrated mode with `calibration.recent` only), tested as a second scale when it holds at
    least min_records / 2 records and fewer than the window."""
    reference = layout.reference
    n = window.records
    alpha = calibration.alpha(new_records) if calibration.calibrated else None
    concept = _concept(reference, calibration, window, alpha, min_joined,
                       errors if errors is not None else (window.joined, window.sse, window.sae))
    if n < max(min_records, 1):
        return DriftResult(window.id, n, False, alpha, (), None, None, None, None, None, None, **concept)
    a = alpha or 0.0
    scales = [(window, "window")]
    if (calibration.recent and recent is not None
            and max(min_records, 1) / 2 <= recent.records < n):
        scales.append((recent, "recent"))
    features, distances = [], []
    for name in reference.features:
        tests = [_test(layout, calibration, pane, name, a, scale) for pane, scale in scales]
        distances.append(tests[0].distance)  # the whole window's
        features.append(max(tests, key=_ratio) if len(tests) > 1 else tests[0])
    data_drift = float(np.mean(distances))
    detected = sum(f.detected for f in features)
    dataset = detected > 0 if calibration.calibrated else data_drift > calibration.fixed_threshold
    tests = [_test(layout, calibration, pane, PREDICTION, a, scale) for pane, scale in scales]
    prediction = max(tests, key=_ratio) if len(tests) > 1 else tests[0]
    return DriftResult(
        window.id, n, True, alpha, tuple(features), data_drift, detected / len(features), dataset,
        prediction.statistic, prediction.threshold, prediction.detected, **concept,
        prediction_scale=prediction.scale,
    )


def _ratio(test: FeatureDrift) -> float:
    """Statistic over threshold (calibrated mode); nan sorts below any number."""
    ratio = test.statistic / test.threshold
    return ratio if ratio == ratio else -math.inf


def _test(layout: PaneLayout, calibration: Calibration, pane: Pane, name: str, alpha: float,
          scale: str) -> FeatureDrift:
    """One column's test on one scale (an aggregated pane); PREDICTION for the predictions."""
    reference, n = layout.reference, pane.records
    counts = pane.counts[layout.slices[name]]
    profile = reference.categorical.get(name)
    if profile is None:
        bins = reference.prediction if name == PREDICTION else reference.numeric[name]
        d = stats.ks_statistic(bins.reference_cdf, counts)
        threshold = calibration.ks(n, alpha)
        return FeatureDrift(name, "ks", d, d, stats.ks_pvalue(d, n, reference.size), threshold, d > threshold,
                            scale, n)
    unseen = np.fromiter(pane.unseen.get(name, {}).values(), dtype=np.float64)
    x2, dof = stats.chi2_statistic(profile.counts, counts, unseen, calibration.pseudo_count)
    tv = stats.total_variation(profile.counts, counts, int(unseen.sum()))
    threshold = calibration.chi2(dof, alpha)
    compared = x2 if calibration.calibrated else tv
    return FeatureDrift(name, "chi2", x2, tv, stats.chi2_pvalue(x2, dof), threshold, compared > threshold, scale, n)


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
        labels joined by records up to its own end (a batch can hold records far past it)."""
        if not isinstance(self.window, CountWindow):
            return self._update(batch)
        results: list[DriftResult] = []
        start = 0
        while start < len(batch):
            stop = start + self.window.step - self.window.records % self.window.step
            results += self._update(batch.rows(start, stop))
            start = stop
        return results

    def _update(self, batch: PredictionBatch) -> list[DriftResult]:
        pane_ids, closed = self.window.update(batch)
        self._errors(self.join.add_predictions(batch.ids, batch.ts, batch.predictions, pane_ids))
        results = [self._evaluate(q) for q in closed]
        self.window.expire()
        return results

    def update_labels(self, ids: Sequence[str], ts: ArrayLike, prices: ArrayLike) -> None:
        """Add n labels (id, event ts ms, true price); joined errors feed the rolling MSE
        (the latest joined records) and the label coverage of their prediction's pane."""
        self._errors(self.join.add_labels(ids, ts, prices))

    def result(self) -> DriftResult | None:
        """The window ending at the newest closed pane, with labels joined since; None before one closes."""
        q = self.window.last_closed
        return None if q is None else self._evaluate(q)

    def _errors(self, joined: Joined) -> None:
        if len(joined):
            self.window.add_errors(joined.pane_ids, joined.squared, joined.absolute)  # label coverage
            self.errors.add(joined.squared, joined.absolute)

    def _evaluate(self, pane_id: int) -> DriftResult:
        closed = self.window.panes.get(pane_id)
        new_records = closed.records if closed is not None else 0
        recent = (self.window.aggregate(pane_id, self.window.panes_per_window // 2)
                  if self.calibration.recent else None)
        return evaluate(self.window.layout, self.calibration, self.window.aggregate(pane_id),
                        new_records, self.min_records, self.min_joined, self.errors.totals(), recent)

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
