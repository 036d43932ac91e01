"""Prometheus gauges and counters of the drift monitor, set from the core's `DriftResult`.

Gauges describe the latest evaluated window (`DriftMonitor.result()`: the window ending at the
newest closed pane; concept drift over the latest joined labels, however late). Until that window holds enough records
(`min_records`: the window size for count windows, 100 for time windows) every drift gauge is NaN,
and the concept-drift gauges stay NaN until 100 labelled records have joined: NaN says
"not known yet", where 0 would be a reassuring lie. `reference_mse` is known from the start.

Counters count evaluations (one per closed pane, i.e. every step) and what they flagged, so a
transient alarm between two scrapes is never lost: alert on `increase(..._detections_total[5m])`.
"""
from __future__ import annotations

import math
from typing import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.drift import DriftResult
from monitor.reference import Reference

NAN = math.nan


def _value(x: float | bool | None) -> float:
    """None (not enough data) becomes NaN; bools become 0/1."""
    return NAN if x is None else float(x)


class MonitorMetrics:
    """Every metric the monitor exports, registered in `registry`; features fixed at start-up."""

    def __init__(self, registry: CollectorRegistry, reference: Reference, topics: Mapping[str, str]) -> None:
        self.reference = reference
        self.tests = {name: "ks" for name in reference.numeric} | {name: "chi2" for name in reference.categorical}
        r = registry
        # -- the latest window: NaN until it holds enough records ---------------------------------
        self.data_drift = Gauge("data_drift", "Mean per-feature distance (KS D or total variation): the tutorial's dataset drift score", registry=r)
        self.feature_statistic = Gauge("drift_feature_statistic", "Per-feature test statistic: KS D (numeric) or Pearson X2 (categorical)", ["feature", "test"], registry=r)
        self.feature_pvalue = Gauge("drift_feature_pvalue", "Per-feature p-value of the test against the reference", ["feature"], registry=r)
        self.feature_threshold = Gauge("drift_feature_threshold", "Per-feature alarm threshold (on the statistic; fixed mode: on the distance)", ["feature"], registry=r)
        self.feature_detected = Gauge("drift_feature_detected", "1 if the feature drifted in the latest window, else 0", ["feature"], registry=r)
        self.share_detected = Gauge("drift_share_detected", "Share of features flagged in the latest window", registry=r)
        self.dataset_detected = Gauge("drift_dataset_detected", "1 if the dataset drifted (calibrated: any feature; fixed: mean distance > 0.1)", registry=r)
        self.prediction_statistic = Gauge("prediction_drift_statistic", "KS D of the window's predictions against the reference predictions", registry=r)
        self.prediction_threshold = Gauge("prediction_drift_threshold", "Alarm threshold on prediction_drift_statistic", registry=r)
        self.prediction_detected = Gauge("prediction_drift_detected", "1 if the predictions drifted in the latest window", registry=r)
        self.concept_drift = Gauge("concept_drift", "(rolling MSE - reference MSE) / reference MSE over the latest labelled records", registry=r)
        self.rolling_mse = Gauge("rolling_mse", "MSE of the latest labelled records (see concept_drift)", registry=r)
        self.reference_mse = Gauge("reference_mse", "MSE of the model on the held-out reference rows", registry=r)
        self.concept_threshold = Gauge("concept_drift_threshold", "Alarm threshold on concept_drift", registry=r)
        self.concept_detected = Gauge("concept_drift_detected", "1 if concept_drift exceeds its threshold", registry=r)
        self.label_coverage = Gauge("label_coverage_ratio", "Share of the window's records joined to a label", registry=r)
        self.window_records = Gauge("window_records", "Predictions in the latest evaluated window", registry=r)
        self.stream_records = Gauge("monitor_stream_records", "Predictions that entered the windows since the group's first state (restored on restart)", registry=r)
        # -- counters over evaluations --------------------------------------------------------------
        self.feature_detections = Counter("drift_feature_detections", "Evaluations that flagged the feature", ["feature"], registry=r)
        self.dataset_detections = Counter("drift_dataset_detections", "Evaluations that flagged dataset drift", registry=r)
        self.prediction_detections = Counter("prediction_drift_detections", "Evaluations that flagged prediction drift", registry=r)
        self.concept_detections = Counter("concept_drift_detections", "Windows (one per step) flagged for concept drift, at their "
                                          "evaluation or later when delayed labels push them over", registry=r)
        self.evaluations = Counter("monitor_evaluations", "Window evaluations (one per closed pane: every step)", registry=r)
        self.evaluation_seconds = Histogram(
            "monitor_evaluation_duration_seconds", "One evaluation of the window against the reference", registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
        # -- the stream -----------------------------------------------------------------------------
        self.consumed = Counter("monitor_records_consumed", "Messages consumed, by topic", ["topic"], registry=r)
        self.invalid = Counter("monitor_invalid_records", "Undecodable messages skipped, by topic (reasons in the log)", ["topic"], registry=r)
        self.late = Counter("monitor_late_records", "Predictions dropped: their event-time pane had left the window", registry=r)
        self.late_errors = Counter("monitor_late_labels", "Labels joined after their prediction's pane left the window (in the rolling MSE, not in label coverage)", registry=r)
        self.expired = Counter("monitor_expired_joins", "Pending predictions or labels whose partner never came (TTL or size bound)", ["side"], registry=r)
        self.duplicates = Counter("monitor_duplicate_predictions", "Predictions redelivered while still waiting for a label", registry=r)
        self.pending = Gauge("monitor_pending_joins", "Predictions and labels waiting for their partner", registry=r)
        self.state_writes = Counter("monitor_state_writes", "State snapshots delivered to the state topic (offsets committed after each)", registry=r)
        self.state_failures = Counter("monitor_state_write_failures", "State snapshots the broker did not take (tried again at the next interval)", registry=r)
        self.state_bytes = Gauge("monitor_state_bytes", "Size of the last state snapshot (compressed)", registry=r)

        for role, topic in topics.items():  # zeros from the start so rate() works at once
            self.consumed.labels(topic)
            self.invalid.labels(topic)
        for side in ("predictions", "labels"):
            self.expired.labels(side)
        for name in self.tests:
            self.feature_detections.labels(name)
        self.reference_mse.set(reference.mse)
        self.show(None)
        self._seen: dict[str, int] | None = None
        self._concept_pane = -1  # newest pane already counted in concept_detections

    def count_concept(self, result: DriftResult | None) -> None:
        """Count a window's concept alarm once: labels often arrive after its pane closed."""
        if result is not None and result.concept_detected and result.pane > self._concept_pane:
            self._concept_pane = result.pane
            self.concept_detections.inc()

    def show(self, result: DriftResult | None) -> None:
        """Set the window gauges from the latest result; None or not ready -> NaN."""
        ready = result is not None and result.ready
        by_name = {f.name: f for f in result.features} if ready else {}
        for name, test in self.tests.items():
            f = by_name.get(name)
            self.feature_statistic.labels(name, test).set(NAN if f is None else f.statistic)
            self.feature_pvalue.labels(name).set(NAN if f is None else f.p_value)
            self.feature_threshold.labels(name).set(NAN if f is None else f.threshold)
            self.feature_detected.labels(name).set(NAN if f is None else float(f.detected))
        get = (lambda field: getattr(result, field)) if result is not None else (lambda field: None)
        self.data_drift.set(_value(get("data_drift")))
        self.share_detected.set(_value(get("share_detected")))
        self.dataset_detected.set(_value(get("dataset_detected")))
        self.prediction_statistic.set(_value(get("prediction_drift")))
        self.prediction_threshold.set(_value(get("prediction_threshold")))
        self.prediction_detected.set(_value(get("prediction_detected")))
        self.concept_drift.set(_value(get("concept_drift")))
        self.rolling_mse.set(_value(get("rolling_mse")))
        self.concept_threshold.set(_value(get("concept_threshold")))
        self.concept_detected.set(_value(get("concept_detected")))
        self.label_coverage.set(_value(get("label_coverage")))
        self.window_records.set(_value(get("records")))

    def count(self, results: list[DriftResult]) -> None:
        """Count the evaluations of closed panes and what each flagged."""
        self.evaluations.inc(len(results))
        for result in results:
            for f in result.features:
                if f.detected:
                    self.feature_detections.labels(f.name).inc()
            if result.dataset_detected:
                self.dataset_detections.inc()
            if result.prediction_detected:
                self.prediction_detections.inc()
            self.count_concept(result)

    def follow(self, counters: Mapping[str, int]) -> None:
        """Advance the Prometheus counters by the core's counters' growth since the last call.

        The core's totals are restored with its state; the first call only takes them as the base,
        so this process's counters start at 0 like any Prometheus counter."""
        seen, self._seen = self._seen, dict(counters)
        self.stream_records.set(counters["records"])
        self.pending.set(counters["pending"])
        if seen is None:
            return
        self.late.inc(counters["late_records"] - seen["late_records"])
        self.late_errors.inc(counters["late_errors"] - seen["late_errors"])
        self.expired.labels("predictions").inc(counters["expired_predictions"] - seen["expired_predictions"])
        self.expired.labels("labels").inc(counters["expired_labels"] - seen["expired_labels"])
        self.duplicates.inc(counters["duplicate_predictions"] - seen["duplicate_predictions"])
