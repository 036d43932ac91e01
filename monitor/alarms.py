"""Each alarm logged when it starts and when it clears, with where in the stream: the log line a
person reads beside the gauges (one per change, not one per evaluation)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from monitor.drift import DriftResult

log = logging.getLogger(__name__)
SCALES = {
    "window": "window",
    "recent": "window's newest half",
    "pane": "newest pane",
}  # the error test's scales


class AlarmLog:
    """Logs each alarm when it starts and when it clears, with where in the stream."""

    def __init__(self, describe: Callable[[int], str], classification: bool) -> None:
        """describe: pane id -> the window ending there in words (`PaneWindow.describe`)."""
        self.describe, self.measure = describe, "error rate" if classification else "MSE"
        self.flagged: dict[str, bool] = {}  # alarm name -> flagged at the previous evaluation

    def follow(self, result: DriftResult) -> None:
        # alarm name -> (flagged, detail): features, then the model's outputs (the prediction, a
        # classifier's p(<class>) columns), then concept drift
        alarms = {
            f.name: (f.detected, f"{f.test} {f.statistic:.4g}, threshold {f.threshold:.4g}")
            for f in (*result.features, *result.outputs)
        }
        if result.concept_detected is not None:
            alarms["concept"] = (
                result.concept_detected,
                f"{self.measure} ratio {result.concept_drift:.4g}, "
                f"threshold {result.concept_threshold:.4g}",
            )
        if result.error_detected is not None:
            alarms["error test"] = (
                result.error_detected,
                (
                    f"{result.error_test} {result.error_statistic:.4g}, threshold {result.error_threshold:.4g}, "
                    f"over the {SCALES.get(result.error_scale, result.error_scale)} "
                    f"({result.error_records} labelled records)"
                ),
            )
        estimate = result.estimate
        if estimate is not None and estimate.detected is not None:
            alarms["estimated performance"] = (
                estimate.detected,
                (
                    f"estimated {self.measure} {estimate.estimate:.4g}, ratio {estimate.score:.4g}, threshold "
                    f"{estimate.threshold:.4g}, {estimate.outside_share:.0%} of the records outside the "
                    "reference's support; no labels needed"
                ),
            )
        where = self.describe(result.pane)
        for name, (detected, detail) in alarms.items():
            if detected != self.flagged.get(name, False):
                self.flagged[name] = detected
                log.warning(
                    "drift %s: %s (%s); window: %s",
                    "detected" if detected else "cleared",
                    name,
                    detail,
                    where,
                )
