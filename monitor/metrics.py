"""Prometheus gauges and counters of the drift monitor, set from the core's `DriftResult`.

Every metric carries the label `model` (the schema's name) first, so several models share one
Prometheus; `drift_model_info{model,task}` is 1 for each (a Grafana variable lists the models).

Gauges describe the latest evaluated window (`DriftMonitor.result()`: the window ending at the
newest closed pane; concept drift over the latest joined labels, however late). Until that window holds enough records
(`min_records`: the window size for count windows, 100 for time windows) every drift gauge is NaN,
and the concept-drift gauges stay NaN until 100 labelled records have joined: NaN says
"not known yet", where 0 would be a reassuring lie. `reference_mse` (regression) and
`reference_error_rate` (classification) are known from the start.

The model's task decides the concept-drift gauges: regression exports rolling_mse and
reference_mse; classification rolling_error_rate, reference_error_rate, the per-class probability
tests (drift_probability_*{class}, when the messages carry probabilities) and
monitor_unseen_labels_total. prediction_drift_statistic is the KS D of predictions (regression)
or the chi-square of the predicted class (classification).

The error test on the joined records (`monitor.errortest`; `DriftMonitor(error_test=True)`) exports
concept_error_statistic{test} (test "residual_ks": the KS D of the standardized signed errors, or
"weighted_errors": the confidence-weighted error mean), concept_error_threshold,
concept_error_pvalue (the KS test's; NaN for the weighted errors, which have a threshold only),
concept_error_detected, concept_error_records (joined records behind the statistic, at its
scale) and concept_error_detections_total; NaN until `min_joined` records have joined, and
always with the test off.

Counters count evaluations (one per closed pane, i.e. every step) and what they flagged, so a
transient alarm between two scrapes is never lost: alert on `increase(..._detections_total[5m])`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contract.rules import REJECTION_REASONS
from monitor.drift import DriftResult, FeatureDrift
from monitor.reference import Reference, probability_column

NAN = math.nan


def _value(x: float | bool | None) -> float:
    """None (not enough data) becomes NaN; bools become 0/1."""
    return NAN if x is None else float(x)


class GaugeLag:
    """How long predictions wait for the gauges: the oldest Kafka timestamp of each pane not yet shown.

    A pane is shown once the gauges' window ends at or after it (`shown(last_closed)`); its lag is
    then measured from its oldest prediction, which bounds the lag of every prediction in it."""

    def __init__(self) -> None:
        self.oldest_ms: dict[
            int, int
        ] = {}  # pane id -> oldest Kafka timestamp of its predictions (ms)

    def add(self, pane_ids: np.ndarray, sent_ms: np.ndarray) -> None:
        """Predictions now in the windows: their panes (n,) and Kafka timestamps in ms (n,); -1 pane = dropped."""
        keep = (pane_ids >= 0) & (sent_ms > 0)
        if not keep.any():
            return
        panes, first = np.unique(pane_ids[keep], return_inverse=True)
        oldest = np.full(len(panes), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(oldest, first, sent_ms[keep])
        for pane, ms in zip(panes.tolist(), oldest.tolist()):
            self.oldest_ms[pane] = min(ms, self.oldest_ms.get(pane, ms))

    def shown(self, last_closed: int | None, now_ms: float) -> list[float]:
        """Seconds waited by the oldest prediction of each pane the gauges now include for the first time."""
        if last_closed is None:
            return []
        done = [pane for pane in self.oldest_ms if pane <= last_closed]
        return [(now_ms - self.oldest_ms.pop(pane)) / 1000.0 for pane in done]


class MonitorMetrics:
    """Every metric the monitor exports, registered in `registry`; features and classes fixed at start-up.

    topics: {role: topic} of the topics consumed (their counters start at 0)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        reference: Reference,
        topics: Mapping[str, str],
        model: str = "diamonds",
        estimator: Any = None,
        reasons: Mapping[str, Sequence[str]] | None = None,
        page_url: str | None = None,
    ) -> None:
        """topics: role -> topic; reasons: topic -> the reasons its messages can be refused for (each
        series made at 0 from the start; default contract.rules.REJECTION_REASONS); page_url: where
        people open the monitor's page (--public-url), for the alerts' links."""
        self.reference, self.model = reference, model
        self.classification = reference.classification
        self.tests = {name: "ks" for name in reference.numeric} | {
            name: "chi2" for name in reference.categorical
        }
        self.probability_classes = {
            probability_column(c): c for c in reference.probabilities
        }  # p(<class>) -> class
        r = registry
        M = ["model"]
        # -- the latest window: NaN until it holds enough records ---------------------------------
        self.data_drift = Gauge(
            "data_drift",
            "Mean per-feature distance (KS D or total variation): the tutorial's dataset drift score",
            M,
            registry=r,
        ).labels(model)
        self.feature_statistic = Gauge(
            "drift_feature_statistic",
            "Per-feature test statistic: KS D (numeric) or Pearson X2 (categorical)",
            M + ["feature", "test"],
            registry=r,
        )
        self.feature_pvalue = Gauge(
            "drift_feature_pvalue",
            "Per-feature p-value of the test against the reference",
            M + ["feature"],
            registry=r,
        )
        self.feature_threshold = Gauge(
            "drift_feature_threshold",
            "Per-feature alarm threshold (on the statistic; fixed mode: on the distance)",
            M + ["feature"],
            registry=r,
        )
        self.feature_detected = Gauge(
            "drift_feature_detected",
            "1 if the feature drifted in the latest window, else 0",
            M + ["feature"],
            registry=r,
        )
        self.share_detected = Gauge(
            "drift_share_detected", "Share of features flagged in the latest window", M, registry=r
        ).labels(model)
        self.dataset_detected = Gauge(
            "drift_dataset_detected",
            "1 if the dataset drifted (calibrated: any feature; fixed: mean distance > 0.1)",
            M,
            registry=r,
        ).labels(model)
        prediction_test = (
            "Pearson X2 of the window's predicted classes"
            if self.classification
            else "KS D of the window's predictions"
        )
        self.prediction_statistic = Gauge(
            "prediction_drift_statistic",
            f"{prediction_test} against the reference's",
            M,
            registry=r,
        ).labels(model)
        self.prediction_threshold = Gauge(
            "prediction_drift_threshold",
            "Alarm threshold on prediction_drift_statistic",
            M,
            registry=r,
        ).labels(model)
        self.prediction_detected = Gauge(
            "prediction_drift_detected",
            "1 if the predictions (or any class probability) drifted in the latest window",
            M,
            registry=r,
        ).labels(model)
        measure = "error rate" if self.classification else "MSE"
        self.concept_drift = Gauge(
            "concept_drift",
            f"(rolling {measure} - reference {measure}) / reference {measure} over the latest labelled records",
            M,
            registry=r,
        ).labels(model)
        self.concept_threshold = Gauge(
            "concept_drift_threshold", "Alarm threshold on concept_drift", M, registry=r
        ).labels(model)
        self.concept_detected = Gauge(
            "concept_drift_detected", "1 if concept_drift exceeds its threshold", M, registry=r
        ).labels(model)
        if self.classification:
            self.rolling_error_rate = Gauge(
                "rolling_error_rate",
                "Share of the latest labelled records whose predicted class is not the label (see concept_drift)",
                M,
                registry=r,
            ).labels(model)
            self.reference_error_rate = Gauge(
                "reference_error_rate",
                "Error rate of the model on the held-out reference rows",
                M,
                registry=r,
            ).labels(model)
            self.probability_statistic = Gauge(
                "drift_probability_statistic",
                "KS D of the window's probabilities of the class against the reference's",
                M + ["class"],
                registry=r,
            )
            self.probability_threshold = Gauge(
                "drift_probability_threshold",
                "Alarm threshold on drift_probability_statistic",
                M + ["class"],
                registry=r,
            )
            self.probability_detected = Gauge(
                "drift_probability_detected",
                "1 if the class's probabilities drifted in the latest window",
                M + ["class"],
                registry=r,
            )
            self.unseen_labels = Counter(
                "monitor_unseen_labels",
                "Labels whose class the model does not know (joined as misclassified)",
                M,
                registry=r,
            ).labels(model)
        else:
            self.rolling_mse = Gauge(
                "rolling_mse",
                "MSE of the latest labelled records (see concept_drift)",
                M,
                registry=r,
            ).labels(model)
            self.reference_mse = Gauge(
                "reference_mse", "MSE of the model on the held-out reference rows", M, registry=r
            ).labels(model)
        # -- the error test on the joined records (see `monitor.errortest`) ------------------------
        test = reference.error_test.name if reference.error_test is not None else "none"
        error_help = {
            "statistic": "Statistic of the error test on the latest labelled records (test residual_ks: KS D of the "
            "standardized signed errors; weighted_errors: the mean confidence-weighted error), at the "
            "scale of concept_error_records",
            "threshold": "Alarm threshold on concept_error_statistic",
            "pvalue": "p-value of concept_error_statistic (KS only; NaN for the weighted errors)",
            "detected": "1 if the error test flagged any of its scales (window, newest half, newest pane)",
            "records": "Labelled records behind concept_error_statistic",
        }
        self.error_gauges = [  # (gauge, DriftResult field)
            (
                Gauge(
                    f"concept_error_{name}",
                    text,
                    M + (["test"] if name == "statistic" else []),
                    registry=r,
                ).labels(model, *([test] if name == "statistic" else [])),
                f"error_{name}",
            )
            for name, text in error_help.items()
        ]
        self.error_detections = Counter(
            "concept_error_detections",
            "Windows (one per step) flagged by the error "
            "test, at their evaluation or later when delayed labels push them over",
            M,
            registry=r,
        ).labels(model)
        # -- performance estimated without labels: only with an estimator (see `monitor.estimate`) -
        self.estimated: list[tuple[Any, str]] = []  # (gauge, Estimate field)
        if estimator is not None:
            kind = "error rate" if self.classification else "MSE"
            fields = (
                [("error_rate", "estimate", "Error rate"), ("accuracy", "accuracy", "Accuracy")]
                if self.classification
                else [("mse", "estimate", "MSE"), ("mae", "mae", "Mean absolute error")]
            )
            if "tp" in estimator.names:  # a binary model: the expected confusion matrix
                fields += [
                    ("precision", "precision", "Precision"),
                    ("recall", "recall", "Recall"),
                    ("f1", "f1", "F1"),
                ]
            for name, attribute, text in fields:
                gauge = Gauge(
                    f"estimated_{name}",
                    f"{text} of the latest window estimated without labels, from the "
                    "model's inputs and outputs",
                    M,
                    registry=r,
                ).labels(model)
                self.estimated.append((gauge, attribute))
            self.estimated += [
                (
                    Gauge(
                        "estimated_concept_drift",
                        f"(estimated {kind} - its no-drift value) / its no-drift value: the "
                        "tutorial's relative score, before labels arrive",
                        M,
                        registry=r,
                    ).labels(model),
                    "score",
                ),
                (
                    Gauge(
                        "estimated_concept_drift_threshold",
                        "Alarm threshold on estimated_concept_drift (one-sided: a "
                        "drop in performance)",
                        M,
                        registry=r,
                    ).labels(model),
                    "threshold",
                ),
                (
                    Gauge(
                        "estimated_concept_drift_detected",
                        "1 if estimated_concept_drift exceeds its threshold",
                        M,
                        registry=r,
                    ).labels(model),
                    "detected",
                ),
                (
                    Gauge(
                        "outside_support_ratio",
                        "Share of the latest window's records outside the reference's support "
                        "(unseen categories, numbers beyond the observed range): the estimate extrapolates there",
                        M,
                        registry=r,
                    ).labels(model),
                    "outside_share",
                ),
            ]
            self.estimated_detections = Counter(
                "estimated_concept_drift_detections",
                "Evaluations that flagged a drop in the estimated performance",
                M,
                registry=r,
            ).labels(model)
        self.label_coverage = Gauge(
            "label_coverage_ratio", "Share of the window's records joined to a label", M, registry=r
        ).labels(model)
        self.window_records = Gauge(
            "window_records", "Predictions in the latest evaluated window", M, registry=r
        ).labels(model)
        self.stream_records = Gauge(
            "monitor_stream_records",
            "Predictions that entered the windows since the group's first state (restored on restart)",
            M,
            registry=r,
        ).labels(model)
        self.info = Gauge(
            "drift_model_info",
            "1 for each monitored model, labelled with its task",
            M + ["task"],
            registry=r,
        )
        # -- counters over evaluations --------------------------------------------------------------
        self.feature_detections = Counter(
            "drift_feature_detections",
            "Evaluations that flagged the feature",
            M + ["feature"],
            registry=r,
        )
        self.dataset_detections = Counter(
            "drift_dataset_detections", "Evaluations that flagged dataset drift", M, registry=r
        ).labels(model)
        self.prediction_detections = Counter(
            "prediction_drift_detections",
            "Evaluations that flagged prediction drift",
            M,
            registry=r,
        ).labels(model)
        # Metrics with the model label only are bound to this model (`self.late.inc()`); those with
        # more labels take them after the model (`self.feature_detected.labels(model, name)`).
        self.concept_detections = Counter(
            "concept_drift_detections",
            "Windows (one per step) flagged for concept drift, at their "
            "evaluation or later when delayed labels push them over",
            M,
            registry=r,
        ).labels(model)
        self.gauge_lag = Histogram(
            "monitor_prediction_to_gauge_seconds",
            "Per evaluated pane: from its oldest prediction's Kafka timestamp "
            "to the gauges that include it (a bound on every prediction of the pane)",
            M,
            registry=r,
            buckets=(
                0.05,
                0.1,
                0.15,
                0.2,
                0.25,
                0.3,
                0.4,
                0.5,
                0.6,
                0.75,
                1,
                1.5,
                2,
                3,
                5,
                10,
                30,
                60,
                300,
            ),
        ).labels(model)
        self.pane_lag = Histogram(
            "monitor_pane_close_to_gauge_seconds",
            "Time windows: from the end of an evaluated pane's event-time "
            "interval to the gauges that include it (event time read as wall-clock time)",
            M,
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 3600),
        ).labels(model)
        self.evaluations = Counter(
            "monitor_evaluations",
            "Window evaluations (one per closed pane: every step)",
            M,
            registry=r,
        ).labels(model)
        self.evaluation_seconds = Histogram(
            "monitor_evaluation_duration_seconds",
            "One evaluation of the window against the reference",
            M,
            registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        ).labels(model)
        # -- the stream -----------------------------------------------------------------------------
        self.consumed = Counter(
            "monitor_records_consumed", "Messages consumed, by topic", M + ["topic"], registry=r
        )
        self.invalid = Counter(
            "monitor_invalid_records",
            "Messages refused, by topic and reason (sent to the monitor DLQ)",
            M + ["topic", "reason"],
            registry=r,
        )
        self.late = Counter(
            "monitor_late_records",
            "Predictions dropped: their event-time pane had left the window",
            M,
            registry=r,
        ).labels(model)
        self.late_errors = Counter(
            "monitor_late_labels",
            "Labels joined after their prediction's pane left the window (in the rolling MSE, not in label coverage)",
            M,
            registry=r,
        ).labels(model)
        self.expired = Counter(
            "monitor_expired_joins",
            "Pending predictions or labels whose partner never came (TTL or size bound)",
            M + ["side"],
            registry=r,
        )
        self.duplicates = Counter(
            "monitor_duplicate_predictions",
            "Predictions redelivered while still waiting for a label",
            M,
            registry=r,
        ).labels(model)
        self.pending = Gauge(
            "monitor_pending_joins",
            "Predictions and labels waiting for their partner",
            M,
            registry=r,
        ).labels(model)
        self.state_writes = Counter(
            "monitor_state_writes",
            "State snapshots delivered to the state topic (offsets committed after each)",
            M,
            registry=r,
        ).labels(model)
        self.state_failures = Counter(
            "monitor_state_write_failures",
            "State snapshots the broker did not take (tried again at the next interval)",
            M,
            registry=r,
        ).labels(model)
        self.state_bytes = Gauge(
            "monitor_state_bytes", "Size of the last state snapshot (compressed)", M, registry=r
        ).labels(model)

        self.info.labels(model, reference.task).set(1)
        if page_url:  # the alerts' templates read the url label: <url>#feature-<name>
            Gauge(
                "monitor_page",
                "The monitor's page, at the address its --public-url gives (label url)",
                M + ["url"],
                registry=r,
            ).labels(model, page_url).set(1)
        for topic in topics.values():  # zeros from the start so rate() works at once
            self.consumed.labels(model, topic)
            for reason in (reasons or {}).get(topic, REJECTION_REASONS):
                self.invalid.labels(model, topic, reason)
        for side in ("predictions", "labels"):
            self.expired.labels(model, side)
        for name in self.tests:
            self.feature_detections.labels(model, name)
        if self.classification:
            self.reference_error_rate.set(reference.error_rate)
        else:
            self.reference_mse.set(reference.mse)
        self.show(None)
        self._seen: dict[str, int] | None = None
        self._concept_pane = -1  # newest pane already counted in concept_detections
        self._error_pane = -1  # newest pane already counted in concept_error_detections

    def consume(self, topic: str, count: int = 1) -> None:
        """Count `count` messages consumed from `topic`."""
        self.consumed.labels(self.model, topic).inc(count)

    def reject(self, topic: str, reason: str, count: int = 1) -> None:
        """Count `count` messages of `topic` refused for `reason` (one of contract.rules.REJECTION_REASONS)."""
        self.invalid.labels(self.model, topic, reason).inc(count)

    def count_concept(self, result: DriftResult | None) -> None:
        """Count a window's concept alarms once (each test's): labels often arrive after its pane
        closed."""
        if result is not None and result.concept_detected and result.pane > self._concept_pane:
            self._concept_pane = result.pane
            self.concept_detections.inc()
        if result is not None and result.error_detected and result.pane > self._error_pane:
            self._error_pane = result.pane
            self.error_detections.inc()

    def show(self, result: DriftResult | None) -> None:
        """Set the window gauges from the latest result; None or not ready -> NaN."""
        model = self.model
        ready = result is not None and result.ready
        by_name = {f.name: f for f in result.features} if ready else {}
        for name, test in self.tests.items():
            f = by_name.get(name)
            self.feature_statistic.labels(model, name, test).set(NAN if f is None else f.statistic)
            self.feature_pvalue.labels(model, name).set(NAN if f is None else f.p_value)
            self.feature_threshold.labels(model, name).set(NAN if f is None else f.threshold)
            self.feature_detected.labels(model, name).set(NAN if f is None else float(f.detected))
        get = (lambda field: getattr(result, field)) if result is not None else (lambda field: None)
        gauges = [
            (self.data_drift, "data_drift"),
            (self.share_detected, "share_detected"),
            (self.dataset_detected, "dataset_detected"),
            (self.prediction_statistic, "prediction_drift"),
            (self.prediction_threshold, "prediction_threshold"),
            (self.prediction_detected, "prediction_detected"),
            (self.concept_drift, "concept_drift"),
            (self.concept_threshold, "concept_threshold"),
            (self.concept_detected, "concept_detected"),
            (self.label_coverage, "label_coverage"),
            (self.window_records, "records"),
        ]
        gauges.append(
            (self.rolling_error_rate, "rolling_error_rate")
            if self.classification
            else (self.rolling_mse, "rolling_mse")
        )
        gauges += self.error_gauges
        for gauge, field in gauges:
            gauge.set(_value(get(field)))
        estimate = result.estimate if result is not None else None
        for gauge, attribute in self.estimated:
            gauge.set(_value(None if estimate is None else getattr(estimate, attribute)))
        if self.probability_classes:
            outputs: dict[str, FeatureDrift] = {o.name: o for o in result.outputs} if ready else {}
            for column, cls in self.probability_classes.items():
                o = outputs.get(column)
                self.probability_statistic.labels(model, cls).set(NAN if o is None else o.statistic)
                self.probability_threshold.labels(model, cls).set(NAN if o is None else o.threshold)
                self.probability_detected.labels(model, cls).set(
                    NAN if o is None else float(o.detected)
                )

    def pane_closed(
        self, results: list[DriftResult], end_ms: Callable[[int], int | None], now_ms: float
    ) -> None:
        """How long after each evaluated pane's end (in event time; `PaneWindow.pane_end_ms`, None for
        a count window's) its gauges came."""
        for result in results:
            if (end := end_ms(result.pane)) is not None:
                self.pane_lag.observe(max(now_ms - end, 0) / 1000.0)

    def count(self, results: list[DriftResult]) -> None:
        """Count the evaluations of closed panes and what each flagged."""
        model = self.model
        self.evaluations.inc(len(results))
        for result in results:
            for f in result.features:
                if f.detected:
                    self.feature_detections.labels(model, f.name).inc()
            if result.dataset_detected:
                self.dataset_detections.inc()
            if result.prediction_detected:
                self.prediction_detections.inc()
            if result.estimate_detected:
                self.estimated_detections.inc()
            self.count_concept(result)

    def follow(self, counters: Mapping[str, int]) -> None:
        """Advance the Prometheus counters by the core's counters' growth since the last call.

        The core's totals are restored with its state; the first call only takes them as the base,
        so this process's counters start at 0 like any Prometheus counter."""
        model = self.model
        seen, self._seen = self._seen, dict(counters)
        self.stream_records.set(counters["records"])
        self.pending.set(counters["pending"])
        if seen is None:
            return
        self.late.inc(counters["late_records"] - seen["late_records"])
        self.late_errors.inc(counters["late_errors"] - seen["late_errors"])
        self.expired.labels(model, "predictions").inc(
            counters["expired_predictions"] - seen["expired_predictions"]
        )
        self.expired.labels(model, "labels").inc(
            counters["expired_labels"] - seen["expired_labels"]
        )
        self.duplicates.inc(counters["duplicate_predictions"] - seen["duplicate_predictions"])
        if self.classification:
            self.unseen_labels.inc(counters.get("unseen_labels", 0) - seen.get("unseen_labels", 0))
