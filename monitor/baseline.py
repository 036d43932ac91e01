"""What the monitor compares the stream with, built once at start by every process alike.

`load_baseline` reads the model's reference rows (checked against the schema), profiles them
(`monitor.reference.Reference`) and fits the performance estimator on the same rows (seeded, so
`run`, every `worker` and the `evaluate` process fit the same one and their panes add up);
`build_monitor` turns a configuration and a baseline into the core's `DriftMonitor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.schema import Schema
from monitor.calibration import Calibration
from monitor.config import MonitorConfig
from monitor.drift import DriftMonitor, window_calibration
from monitor.reference import Reference
from monitor.windows import PaneWindow, make_window


@dataclass(frozen=True)
class Baseline:
    """The reference profile and, unless it cannot be fitted (or was not asked for), the performance
    estimator; `estimate` says which estimator, or why there is none (one line for the start-up log)."""

    reference: Reference
    estimator: Any = None
    estimate: str = "no estimated performance: not asked for (--estimate off)"


def load_baseline(schema: Schema, path: Path, estimate: bool = True) -> Baseline:
    """The reference profile of the model's reference rows (SchemaError naming the file and column
    when they do not fit the schema) and the estimator fitted on them."""
    from contract.artifacts import read_reference  # pandas: only at start-up

    frame = read_reference(path, schema)
    reference = Reference.from_schema(schema, frame)
    if not estimate:
        return Baseline(reference)
    from monitor.nanny import fit_from_schema  # scikit-learn: only at start-up

    fitted = fit_from_schema(schema, frame, reference)
    return Baseline(reference, fitted.estimator, fitted.reason)


def load_reference(schema: Schema, path: Path) -> Reference:
    """The reference profile alone (see `load_baseline`)."""
    return load_baseline(schema, path, estimate=False).reference


def build_window(config: MonitorConfig, baseline: Baseline) -> PaneWindow:
    """The configured window (by count or by event time), its panes summing the baseline's estimates."""
    return make_window(
        config.window_state["kind"],
        baseline.reference,
        config.window_size,
        config.step_size,
        baseline.estimator,
    )


def build_evaluation(config: MonitorConfig, baseline: Baseline) -> tuple[PaneWindow, Calibration]:
    """What evaluating merged panes takes (`monitor evaluate`): the window (its layout, span and
    words) and its calibration, thresholds prepared; no label join, no rolling errors."""
    window = build_window(config, baseline)
    calibration = window_calibration(
        window, config.ert, config.thresholds, window.error_panes(None) if config.error_test else 0
    )
    window.prepare(calibration)
    return window, calibration


def build_monitor(config: MonitorConfig, baseline: Baseline) -> DriftMonitor:
    monitor = DriftMonitor(
        baseline.reference,
        build_window(config, baseline),
        ert=config.ert,
        mode=config.thresholds,
        label_ttl_ms=config.label_ttl_ms,
        error_test=config.error_test,
    )
    monitor.window.prepare(
        monitor.calibration
    )  # a count window's thresholds, before the first record
    return monitor
