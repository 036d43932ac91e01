"""Evaluating a window against the reference, and the monitor that ties window, join and budget.

Result semantics: when the window holds fewer than `min_records` records, `ready` is False and
every statistic, threshold and detection is None (never a reassuring 0 or False); likewise the
concept-drift fields are None while fewer than `min_joined` records of the window have labels.
Gauges should then be absent or NaN, not zero.

What is tested: every feature (`DriftResult.features`) and every model output (`outputs`): a
regression model's prediction (KS); a classifier's predicted class (chi-square against the
reference's predicted-class frequencies; a class it never predicted counts as an unseen category)
and, when the messages carry them, each class's probability (KS, columns named `p(<class>)`).
Concept drift: the rolling MSE against the held-out MSE (regression), or the rolling error rate
against the held-out error rate (classification); see `calibration` for both nulls. With
`DriftMonitor(error_test=True)` (calibrated mode) also the error test on the joined records
(`monitor.errortest`: how the errors are distributed, not only their mean) at three scales, the
window, its newest half and its newest pane, each a test in the Bonferroni split; the `error_*`
fields report the scale with the largest statistic / threshold, None while fewer than
`min_joined` joined records are in every scale (and always None with the test off).

Two scales (calibrated mode, windows of 2 panes or more; see `calibration`): every feature and
output is tested on the whole window and on its newest half (`recent`: the last panes // 2
panes, 500 of 1,000 records at the defaults), each against its own threshold for its own n, with
the budget split over both scales' tests (15 at the defaults instead of 8). A column is detected
when either scale exceeds its threshold. Each FeatureDrift, and the prediction fields, report the
scale with the larger statistic / threshold ratio: its statistic, distance, p-value and threshold,
with `scale` ("window" or "recent") and `records` (records behind that statistic) naming it, so
"detected" always equals "statistic > threshold" as shown. `data_drift` (the tutorial's mean
score) stays the mean of the whole window's feature distances. Fixed mode tests the whole window only.

The shell's loop:
    monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250))   # or TimeWindow(...)
    results = monitor.update(PredictionBatch(ids, ts, predictions, numeric, categorical, probabilities))
    monitor.update_labels(ids, ts, labels)      # whenever labels arrive, before or after
    gauges <- results[-1] (or monitor.result() for the latest closed window, labels included)
    persist monitor.to_dict() (JSON-friendly); on restart monitor.load_dict(state)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from monitor.calibration import Calibration
from monitor.columns import column_tests
from monitor.estimate import Estimate
from monitor.join import ErrorWindow, Joined, LabelJoin
from monitor.reference import Reference
from monitor.windows import (
    CountWindow,
    EncodedBatch,
    Pane,
    PaneLayout,
    PaneWindow,
    PredictionBatch,
    TimeWindow,
)


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
    detected: (
        bool  # either scale exceeded its threshold (= statistic > threshold of the reported scale)
    )
    scale: str = (
        "window"  # the reported scale: "window" (whole window) or "recent" (its newest half)
    )
    records: int = 0  # records behind the reported statistic


@dataclass(frozen=True, kw_only=True)
class DriftResult:
    """The evaluation of the window ending at pane `pane`; None = not enough data to say. Built by
    keyword: what a window that is not ready yet has not tested stays None.

    `features` are the model's inputs only (data_drift, share_detected and dataset_detected look at
    nothing else); `outputs` are its outputs: the prediction column, then for a classifier with
    probabilities one `p(<class>)` column per class. The prediction_* fields describe the
    prediction column; `prediction_detected` is True when it OR any probability column is flagged.
    Concept drift: regression compares the rolling MSE with the reference MSE, classification the
    rolling error rate with the reference error rate (the *_mse fields are None then, and the
    *_error_rate fields None for regression)."""

    pane: int
    records: int  # predictions in the window
    ready: bool  # records >= min_records
    alpha: float | None  # per-test false-alarm probability (calibrated mode)
    features: tuple[FeatureDrift, ...] = ()  # empty when not ready
    data_drift: float | None = None  # mean feature distance: the tutorial's dataset score
    share_detected: float | None = None
    dataset_detected: bool | None = None
    prediction_drift: float | None = (
        None  # regression: KS D of predictions; classification: chi2 of the predicted class
    )
    prediction_threshold: float | None = None
    prediction_detected: bool | None = None  # the prediction or any class probability flagged
    joined: int  # labelled records behind rolling_mse / rolling_error_rate (the latest joined, see ErrorWindow)
    label_coverage: float | None  # share of the window's predictions whose label has arrived
    rolling_mse: float | None
    rolling_mae: float | None
    reference_mse: float | None  # regression: the held-out MSE (None for a classifier)
    concept_drift: float | None  # (rolling - reference) / reference: MSE, or error rate
    concept_threshold: float | None
    concept_detected: bool | None
    prediction_scale: str | None = (
        None  # scale of prediction_drift: "window" or "recent" (see FeatureDrift)
    )
    outputs: tuple[
        FeatureDrift, ...
    ] = ()  # the prediction, then p(<class>) columns; empty when not ready
    rolling_error_rate: float | None = (
        None  # classification: share of the latest joined records misclassified
    )
    reference_error_rate: float | None = None  # classification: the held-out error rate
    # The performance estimated without labels (`monitor.estimate`), of the scale with the larger
    # score / threshold ratio (see FeatureDrift); None without an estimator or before the window is ready.
    estimate: Estimate | None = None
    estimate_scale: str | None = None
    # The error test on the joined records (`monitor.errortest`; `DriftMonitor(error_test=True)`), of
    # the scale with the largest statistic / threshold; None with the test off or too few joined.
    error_test: str | None = (
        None  # "residual_ks" (regression) or "weighted_errors" (classification)
    )
    error_statistic: float | None = None
    error_threshold: float | None = None
    error_pvalue: float | None = None  # the KS test's; the weighted errors have a threshold only
    error_detected: bool | None = None  # any scale over its threshold
    error_scale: str | None = None  # "window", "recent" or "pane"
    error_records: int | None = None  # joined records behind error_statistic

    @property
    def estimate_detected(self) -> bool | None:
        return None if self.estimate is None else self.estimate.detected

    @property
    def drift_detected(self) -> bool:
        """Any alarm: dataset, prediction or concept drift (either concept test), or a drop in the
        estimated performance."""
        return bool(
            self.dataset_detected
            or self.prediction_detected
            or self.concept_detected
            or self.error_detected
            or self.estimate_detected
        )


class Evaluated(NamedTuple):
    """A result and the panes it tested: the whole window and its newest half (None without the
    recent scale)."""

    result: DriftResult
    window: Pane
    recent: Pane | None


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation tests, captured when its pane closes: the aggregated window, the records
    new since the previous evaluation (they set alpha), the (joined, sum squared, sum absolute)
    errors of the latest labelled records (an ErrorWindow), the window's newest panes (the recent
    scale) or None, and the error test's counts per scale ({"window": (B,) int64, "recent": ...,
    "pane": ...}, `errortest.scale_counts`) or None without an error test."""

    window: Pane
    new_records: int
    errors: tuple[int, float, float]
    recent: Pane | None = None
    error_counts: Mapping[str, np.ndarray] | None = None


def evaluate_all(
    layout: PaneLayout,
    calibration: Calibration,
    evaluations: Sequence[Evaluation],
    min_records: int = 1000,
    min_joined: int = 100,
) -> list[DriftResult]:
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
        concept.update(_error_test(calibration, item.error_counts, alpha, min_joined))
        if n < floor:
            results.append(
                DriftResult(pane=window.id, records=n, ready=False, alpha=alpha, **concept)
            )
            continue
        first = len(rows)
        rows.append((window, "window", alpha or 0.0))
        if calibration.recent and item.recent is not None and floor / 2 <= item.recent.records < n:
            rows.append((item.recent, "recent", alpha or 0.0))
        plans.append((len(results), first, len(rows), window, alpha, concept))
        results.append(None)
    if not rows:
        return results  # type: ignore[return-value]
    tested = column_tests(
        layout, calibration, [pane for pane, _, _ in rows], [a for _, _, a in rows]
    )
    # Plain lists from here: 7 columns x 2 scales is too small for numpy's per-call cost.
    statistic, distance, p_value, threshold = (
        x.tolist() for x in (tested.statistic, tested.distance, tested.p_value, tested.threshold)
    )
    compared = statistic if calibration.calibrated else distance
    inputs = len(layout.reference.features)  # result columns: features..., then outputs...
    for position, first, stop, window, alpha, concept in plans:
        columns = []
        for c, (name, test) in enumerate(zip(tested.names, tested.tests)):
            # the scale with the larger statistic / threshold (NaN lowest; first of ties: the window)
            s = max(range(first, stop), key=lambda s: _ratio(statistic[s][c], threshold[s][c]))
            columns.append(
                FeatureDrift(
                    name,
                    test,
                    statistic[s][c],
                    distance[s][c],
                    p_value[s][c],
                    threshold[s][c],
                    compared[s][c] > threshold[s][c],
                    rows[s][1],
                    rows[s][0].records,
                )
            )
        features, outputs = columns[:inputs], columns[inputs:]
        prediction = outputs[0]
        data_drift = sum(distance[first][:inputs]) / len(
            features
        )  # the mean of the whole window's distances
        detected = sum(f.detected for f in features)
        dataset = (
            detected > 0 if calibration.calibrated else data_drift > calibration.fixed_threshold
        )
        estimate, estimate_scale = _estimate(layout, calibration, rows[first:stop], alpha)
        results[position] = DriftResult(
            pane=window.id,
            records=window.records,
            ready=True,
            alpha=alpha,
            features=tuple(features),
            data_drift=data_drift,
            share_detected=detected / len(features),
            dataset_detected=dataset,
            prediction_drift=prediction.statistic,
            prediction_threshold=prediction.threshold,
            prediction_detected=any(o.detected for o in outputs),
            prediction_scale=prediction.scale,
            outputs=tuple(outputs),
            estimate=estimate,
            estimate_scale=estimate_scale,
            **concept,
        )
    return results  # type: ignore[return-value]


def _estimate(
    layout: PaneLayout,
    calibration: Calibration,
    scales: Sequence[tuple[Pane, str, float]],
    alpha: float | None,
) -> tuple[Estimate | None, str | None]:
    """The estimated performance of the window's scales, the one with the larger score / threshold
    ratio (the first of ties: the whole window); (None, None) without an estimator. Each scale
    counts only its estimated records (all of them, unless restored from another estimator's panes)."""
    estimator = layout.estimator
    if estimator is None:
        return None, None
    judged = []
    for pane, scale, _ in scales:
        if not pane.estimated:
            continue
        estimate = estimator.evaluate(
            pane.estimates, pane.estimated, alpha if calibration.calibrated else None
        )
        if not calibration.calibrated:  # the tutorial's rule, as for concept drift: 10% worse
            estimate = replace(
                estimate,
                threshold=calibration.fixed_threshold,
                detected=estimate.score > calibration.fixed_threshold,
            )
        judged.append((estimate, scale))
    if not judged:
        return None, None
    return max(judged, key=lambda item: _ratio(item[0].score, item[0].threshold))


def _ratio(statistic: float, threshold: float) -> float:
    """Statistic over threshold; NaN sorts below any number."""
    ratio = statistic / threshold if threshold else math.inf
    return ratio if ratio == ratio else -math.inf


def _error_test(
    calibration: Calibration,
    counts: Mapping[str, np.ndarray] | None,
    alpha: float | None,
    min_joined: int,
) -> dict[str, Any]:
    """The error test's DriftResult fields: its scale with the largest statistic / threshold among
    those holding at least `min_joined` joined records (`ErrorTest.evaluate`); {} (all None) with
    the test off or no such scale."""
    test = calibration.error_test
    if test is None or counts is None or not alpha:
        return {}
    found = test.evaluate(counts, alpha, min_records=min_joined)
    if found is None:
        return {}
    return {
        "error_test": found.test,
        "error_statistic": found.statistic,
        "error_threshold": found.threshold,
        "error_pvalue": found.p_value,
        "error_detected": found.detected,
        "error_scale": found.scale,
        "error_records": found.records,
    }


def _concept(
    reference: Reference,
    calibration: Calibration,
    window: Pane,
    alpha: float | None,
    min_joined: int,
    errors: tuple[int, float, float],
) -> dict:
    # errors: (joined, sum of squared, sum of absolute errors) of the latest joined records; for a
    # classifier both sums are the number misclassified (see `join`).
    k, sse, sae = errors
    n = window.records
    classification = reference.classification
    out: dict[str, Any] = {
        "joined": k,
        # How many of the window's own predictions have their label yet.
        "label_coverage": window.joined / n if n else None,
        "reference_mse": None if classification else reference.mse,
        "reference_error_rate": reference.error_rate,
        "rolling_mse": None,
        "rolling_mae": None,
        "rolling_error_rate": None,
        "concept_drift": None,
        "concept_threshold": None,
        "concept_detected": None,
    }
    if k >= max(min_joined, 1):
        if classification:
            rate = sse / k
            ratio = (rate - calibration.baseline_error_rate) / calibration.baseline_error_rate
            threshold = calibration.error_rate_ratio(k, alpha or 0.0)
            out.update(rolling_error_rate=rate)
        else:
            mse = sse / k
            ratio = (mse - reference.mse) / reference.mse
            threshold = calibration.mse_ratio(k, alpha or 0.0)
            out.update(rolling_mse=mse, rolling_mae=sae / k)
        out.update(
            concept_drift=ratio, concept_threshold=threshold, concept_detected=ratio > threshold
        )
    return out


MIN_JOINED = 100  # labelled records a window needs before its concept-drift tests run


def window_calibration(
    window: PaneWindow, ert: float = 10_000_000, mode: str = "calibrated", error_panes: int = 0
) -> Calibration:
    """The calibration a window's evaluations need: its columns' tests at its sizes, the
    newest-half scale when it has at least 2 panes, thresholds prefetched when its sizes vary,
    the estimate's test when its panes carry estimates, and `error_panes` panes of the error test
    (0: none)."""
    layout = window.layout
    return Calibration(
        layout.reference,
        ert,
        mode,
        recent=window.panes_per_window >= 2,
        prefetch=window.sizes_vary,
        estimated=layout.estimator is not None,
        error_panes=error_panes,
    )


def stream_counters(window: Any, join: LabelJoin) -> dict[str, int]:
    """The monotonic totals of a window and its label join that the shell's *_total counters
    show (a whole monitor's, or one partition's panes')."""
    return {
        "records": window.records,
        "late_records": window.late_records,
        "late_errors": window.late_errors,
        "joined": join.joined,
        "expired_predictions": join.expired_predictions,
        "expired_labels": join.expired_labels,
        "duplicate_predictions": join.duplicates,
        "pending": join.pending,
    }


class DriftMonitor:
    """A window of prediction panes, the label join feeding it errors, and calibrated tests.

    min_records: window records needed to evaluate (default: `window` for a CountWindow, 100 for a
    TimeWindow); min_joined: labelled records needed for concept drift (default 100).
    concept_window / concept_step: with a CountWindow the rolling MSE (error rate for a classifier)
    covers the latest `concept_window` joined records (default: the window's size and step),
    whenever their labels came. With a TimeWindow it covers the window's own predictions whose labels
    have arrived (a label later than the window is counted in `late_errors`): event-time panes add
    up, so several workers' windows merge exactly (`monitor.panes`).
    error_test: also test the joined errors' distribution (`monitor.errortest`, calibrated mode only;
    off by default, so a monitor built without it keeps its thresholds): over the same joined
    records as the rolling MSE, a count window's complete concept panes (`ErrorWindow.scale_counts`)
    or a time window's own panes (`PaneWindow.scale_counts`). Its scales join the Bonferroni split.

    A classifier's monitor, on a toy reference (3 classes, one rare) and a calm stream drawn from it:

    >>> rng = np.random.default_rng(0)
    >>> m = 4000
    >>> classes = rng.choice(["a", "b", "rare"], m, p=[0.6, 0.38, 0.02])
    >>> reference = Reference.from_arrays({"x": rng.normal(0, 1, m)}, {"c": rng.choice(["u", "v"], m)},
    ...                                   classes, np.where(rng.random(m) < 0.9, classes, "a"),
    ...                                   task="classification", classes=("a", "b", "rare"))
    >>> monitor = DriftMonitor(reference, CountWindow(reference, window=1000, step=250))
    >>> monitor.calibration.tests  # 2 scales x (2 features + the predicted class) + the error rate
    7
    >>> picked = rng.integers(0, m, 2000)
    >>> ids = np.array([f"r{i}" for i in range(2000)], dtype=object)
    >>> ts = np.arange(2000) * 100
    >>> batch = PredictionBatch(ids, ts, classes[picked], {"x": rng.normal(0, 1, 2000)},
    ...                         {"c": rng.choice(["u", "v"], 2000)})
    >>> results = monitor.update(batch)  # 8 panes of 250 closed: 8 evaluations
    >>> len(results), results[-1].ready, results[-1].drift_detected
    (8, True, False)
    >>> [o.name for o in results[-1].outputs], results[-1].outputs[0].test
    (['prediction'], 'chi2')
    >>> monitor.update_labels(ids, ts, np.where(np.arange(2000) % 2 == 0, "b", "a"))  # half the labels wrong
    >>> latest = monitor.result()
    >>> latest.joined, round(latest.rolling_error_rate, 3), round(latest.reference_error_rate, 3)
    (750, 0.511, 0.039)
    >>> round(latest.concept_drift, 2), round(latest.concept_threshold, 2), latest.concept_detected
    (12.18, 1.0, True)
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
        min_joined: int = MIN_JOINED,
        concept_window: int | None = None,
        concept_step: int | None = None,
        partitions: tuple[int, int] = (1, 1),
        error_test: bool = False,
    ) -> None:
        if window.layout.reference is not reference:
            raise ValueError("window was built for another reference")
        if min_records is None:
            min_records = window.min_records
        if min_records < 1 or min_joined < 1:
            raise ValueError(
                f"min_records and min_joined must be >= 1, got {min_records} and {min_joined}"
            )
        self.reference, self.window = reference, window
        # Joined errors, in join order; their error-test bins are counted whether the test is on or
        # not, so the panes and the saved state have one layout.
        size, step = window.error_sizes()
        self.errors = ErrorWindow(
            concept_window or size, concept_step or step, bins=window.layout.errors
        )
        # The newest-half scale needs at least 2 panes per window (see `calibration`). A count
        # window's sizes and level never change; a time window's move with its records.
        self.calibration = window_calibration(
            window, ert, mode, window.error_panes(self.errors) if error_test else 0
        )
        self.join = LabelJoin(
            label_ttl_ms,
            max_pending,
            classification=reference.classification,
            partitions=partitions,
            error_test=reference.error_test,
        )
        self.classes = frozenset(reference.classes)
        self.unseen_labels = 0  # classifier labels whose class is not among the reference's classes
        self.min_records, self.min_joined = min_records, min_joined
        # The last `result()` with the panes it tested (aggregated copies the window never touches
        # again): what the page draws, read from other threads.
        self.evaluated: Evaluated | None = None

    def update(self, batch: PredictionBatch) -> list[DriftResult]:
        """Add n predictions; returns one result per pane this batch closed (oldest first).

        A count window takes the batch one step at a time, so each evaluation sees only the
        labels joined by records up to its own end (a batch can hold records far past it). What
        each evaluation tests is captured as its pane closes; the tests of all run at the end."""
        encoded = self.window.layout.encode(
            batch
        )  # once for the batch: numpy's per-call cost is per step otherwise
        pending = []
        for start, stop in self.window.spans(
            len(batch)
        ):  # a count window's steps; a time window's whole batch
            whole = (start, stop) == (0, len(batch))
            pending += self._update(
                batch if whole else batch.rows(start, stop),
                encoded if whole else encoded.rows(start, stop),
            )
        return evaluate_all(
            self.window.layout, self.calibration, pending, self.min_records, self.min_joined
        )

    def _update(self, batch: PredictionBatch, encoded: EncodedBatch) -> list[Evaluation]:
        pane_ids, closed = self.window.update(batch, encoded)
        # a classifier's confidence per record, kept with its pending prediction (its label may come later)
        confidences = (
            self.reference.confidences(batch.probabilities)
            if self.reference.classification
            else None
        )
        self._errors(
            self.join.add_predictions(
                batch.ids, batch.ts, batch.predictions, pane_ids, batch.partitions, confidences
            )
        )
        evaluations = [self._evaluation(q) for q in closed]
        self.window.expire()
        if evaluations and self.calibration.prefetch:  # a time window
            self._anticipate(evaluations[-1])
        return evaluations

    def _anticipate(self, latest: Evaluation) -> None:
        """Have the next step's categorical thresholds computed in the background: a full window
        holds about as many records as this one (5% fewer is another grid point near its edge), at
        about this pane's level (5% more or fewer records); a window still filling up holds one
        pane more. Points it will not need cost CPU the other processes on the machine want."""
        calibration, records = self.calibration, latest.new_records
        level = calibration.alpha(records)
        nearby_levels = {calibration.alpha(round(records * f)) for f in (0.95, 1.05)} - {level}
        filling = latest.window.records < 0.9 * records * self.window.panes_per_window
        for scale in (latest.window, latest.recent):
            if scale is None or not scale.records:
                continue
            n = scale.records
            for nearby in (n, round(n * 0.95)) + ((n + records,) if filling else ()):
                calibration.prefetch_chi2(nearby, level)
            for nearby_level in nearby_levels:
                calibration.prefetch_chi2(n, nearby_level)

    def update_labels(
        self, ids: Sequence[str], ts: ArrayLike, labels: ArrayLike, partitions: ArrayLike | int = 0
    ) -> None:
        """Add k labels (id, event ts ms, true value: (k,) float64, or a classifier's (k,) object array
        of class texts; their input partition, one or (k,)); joined errors feed the rolling MSE or
        error rate (the latest joined records) and the label coverage of their prediction's pane. A
        class the model does not know is counted (`counters["unseen_labels"]`) and joins as a
        misclassification."""
        if self.reference.classification:
            labels = np.asarray(labels, dtype=object)
            self.unseen_labels += len(labels) - sum(map(self.classes.__contains__, labels.tolist()))
        self._errors(self.join.add_labels(ids, ts, labels, partitions))

    def result(self) -> DriftResult | None:
        """The window ending at the newest closed pane, with labels joined since; None before one closes."""
        q = self.window.last_closed
        if q is None:
            return None
        evaluation = self._evaluation(q)
        result = evaluate_all(
            self.window.layout, self.calibration, [evaluation], self.min_records, self.min_joined
        )[0]
        self.evaluated = Evaluated(result, evaluation.window, evaluation.recent)
        return result

    def _errors(self, joined: Joined) -> None:
        if len(joined):
            self.window.add_errors(
                joined.pane_ids, joined.squared, joined.absolute, joined.bins
            )  # label coverage
            self.errors.add(joined.squared, joined.absolute, joined.bins)

    def _evaluation(self, pane_id: int) -> Evaluation:
        closed = self.window.panes.get(pane_id)
        recent = (
            self.window.aggregate(pane_id, self.window.panes_per_window // 2)
            if self.calibration.recent
            else None
        )
        window = self.window.aggregate(pane_id)
        errors = self.window.errors_of(pane_id, window, self.errors)  # see PaneWindow.errors_of
        error_counts = None
        if self.calibration.error_test is not None:
            error_counts = self.window.error_counts_of(pane_id, self.errors)
        return Evaluation(
            window, closed.records if closed is not None else 0, errors, recent, error_counts
        )

    @property
    def counters(self) -> dict[str, int]:
        """Monotonic totals for the shell's *_total counters."""
        return {**stream_counters(self.window, self.join), "unseen_labels": self.unseen_labels}

    def to_dict(self) -> dict[str, Any]:
        """Window panes and pending join entries, JSON-friendly."""
        return {
            "window": self.window.to_dict(),
            "join": self.join.to_dict(),
            "errors": self.errors.to_dict(),
            "unseen_labels": self.unseen_labels,
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        self.window.load_dict(state["window"])
        self.join.load_dict(state["join"])
        self.errors.load_dict(state["errors"])
        self.unseen_labels = int(
            state.get("unseen_labels", 0)
        )  # absent from snapshots before classification
