"""What the page shows of one evaluation: an immutable snapshot of the result and window panes.

The monitor's loop keeps references to what it evaluated (the `DriftResult`, the window's
aggregated `Pane` and its newest half); `snapshot` turns them into tuples of plain numbers, so the
page renders on any thread while the loop goes on (`monitor.page`). Every number the page shows
comes from here:

- each column's statistic, threshold, p-value, scale and records: the result's `FeatureDrift`;
- each bar's window count: the sum of the scale's pane counts over runs of the column's bins
  (`Bar.bins`, positions in the column's slice of `PaneLayout`) or over unseen categories by name
  (`Bar.names`), so a test recomputes every bar from the pane;
- each bar's reference count: the same runs of the reference's bins (`NumericBins.reference_cdf`
  times the reference's rows, or `CategoricalProfile.counts`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote_plus

from monitor.drift import DriftResult, FeatureDrift
from monitor.histograms import Chart, category_chart, most_first, numeric_chart
from monitor.reference import PREDICTION
from monitor.windows import Pane, PaneLayout, span_text, time_text


@dataclass(frozen=True)
class Column:
    """One tested column: its test's numbers (None before the window is ready) and its chart.

    role: "feature", "prediction" or "probability"; compared: what the threshold is compared with
    (the statistic; fixed mode: the distance); history: compared / threshold at past evaluations."""

    name: str
    role: str
    test: str
    chart: Chart
    statistic: float | None = None
    distance: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    compared: float | None = None
    detected: bool | None = None
    scale: str | None = None  # "window" or "recent" (the newest half)
    records: int = 0
    unseen: tuple[tuple[str, int], ...] = ()  # (name, records), most frequent first
    history: tuple[float | None, ...] = ()

    @property
    def ratio(self) -> float | None:
        """compared / threshold: above 1 is an alarm; None when not tested or no threshold."""
        return _ratio(self.compared, self.threshold)


@dataclass(frozen=True)
class Performance:
    """Realized and estimated model error against the reference. measure: "MSE" or "error rate"."""

    measure: str
    realized: float | None
    estimated: float | None  # from the inputs, without labels; None: not known or not estimated
    reference: float | None
    joined: int  # labelled records behind `realized`
    drift: float | None = None  # (realized - reference) / reference
    threshold: float | None = None
    detected: bool | None = None
    estimated_drift: float | None = None  # the estimate's score against its no-drift value
    estimated_threshold: float | None = None
    estimated_detected: bool | None = None
    outside_share: float | None = None  # records outside the reference's support (extrapolated)


class Estimated(Protocol):
    """What the page reads of an estimated performance (`monitor.estimate.Estimate`)."""

    estimate: float | None
    score: float | None
    threshold: float | None
    detected: bool | None
    outside_share: float | None


@dataclass(frozen=True)
class Alert:
    """A flag raised by this evaluation, named as the Prometheus alert it drives; anchor: the page
    section that explains it (a column's `anchor`, or "performance")."""

    name: str
    subject: str
    anchor: str


@dataclass(frozen=True)
class Point:
    """One past evaluation: compared / threshold per column, and the error values."""

    pane: int
    ratios: tuple[tuple[str, float | None], ...]
    realized: float | None
    estimated: float | None


@dataclass(frozen=True)
class Snapshot:
    """Everything one page shows; plain values only, safe to read from any thread."""

    model: str
    task: str
    window: str  # "last 1,000 records", "5 min ending 2026-12-07 12:00:00 UTC"
    pane: int
    records: int
    ready: bool
    label_coverage: float | None
    alerts: tuple[Alert, ...]
    features: tuple[Column, ...]  # in the result's order; the page sorts them
    outputs: tuple[Column, ...]  # the prediction, then p(<class>) columns
    performance: Performance
    history: tuple[Point, ...] = ()
    calibrated: bool = True
    evaluated_ms: int | None = None  # wall-clock time of the evaluation, when the caller knows it


class History:
    """The last `size` evaluations, for the page's timelines. The loop calls `add` per evaluation;
    `points` is an immutable copy for a snapshot. A pane evaluated again (labels joined since)
    replaces its point."""

    def __init__(self, size: int = 60) -> None:
        if size < 1:
            raise ValueError(f"history size must be >= 1, got {size}")
        self._points: deque[Point] = deque(maxlen=size)

    def add(self, result: DriftResult, estimate: Estimated | None = None) -> None:
        ratios = tuple(
            (f.name, _ratio(_compared(f, result), f.threshold))
            for f in (*result.features, *result.outputs)
        )
        if self._points and self._points[-1].pane == result.pane:
            self._points.pop()
        self._points.append(
            Point(
                pane=result.pane,
                ratios=ratios,
                realized=_realized(result),
                estimated=None if estimate is None else estimate.estimate,
            )
        )

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(self._points)


def snapshot(
    result: DriftResult,
    layout: PaneLayout,
    window: Pane,
    recent: Pane | None = None,
    *,
    model: str,
    window_text: str,
    history: Sequence[Point] = (),
    estimate: Estimated | None = None,
    alerts: Sequence[Alert] | None = None,
    order: Mapping[str, Sequence[str]] | None = None,
    evaluated_ms: int | None = None,
) -> Snapshot:
    """The page's view of one evaluation.

    result: the evaluation; window / recent: the panes it tested (`PaneWindow.aggregate(q)` and
    `aggregate(q, panes // 2)`): a column reported at the "recent" scale is drawn from `recent`,
    so its picture and its statistic describe the same records. estimate: the window's MSE (error
    rate) estimated without labels, None when not estimated. alerts: default, what the result flags
    (`flags`). order: {categorical column: category texts in the schema's order}
    (`order_from_schema`), default the reference's sorted order."""
    reference = layout.reference
    panes = {"window": window, "recent": recent or window}
    tested = {f.name: f for f in (*result.features, *result.outputs)} if result.ready else {}
    past = [dict(p.ratios) for p in history]

    def column(name: str, role: str) -> Column:
        f = tested.get(name)
        pane = panes.get(f.scale, window) if f is not None else window
        bins = layout.ks_columns.get(name)
        if bins is not None:
            chart = numeric_chart(
                bins, pane.counts[layout.slices[name]], pane.records, reference.size
            )
        else:
            chart = category_chart(
                layout.chi2_columns[name], pane, layout.slices[name], (order or {}).get(name)
            )
        untested = Column(
            name=name,
            role=role,
            test="ks" if bins is not None else "chi2",
            chart=chart,
            unseen=tuple(sorted(pane.unseen.get(name, {}).items(), key=most_first)),
            history=tuple(p.get(name) for p in past),
        )
        if f is None:
            return untested
        return replace(
            untested,
            test=f.test,
            statistic=f.statistic,
            distance=f.distance,
            p_value=f.p_value,
            threshold=f.threshold,
            compared=_compared(f, result),
            detected=f.detected,
            scale=f.scale,
            records=f.records,
        )

    classification = reference.classification
    return Snapshot(
        model=model,
        task=reference.task,
        window=window_text,
        pane=result.pane,
        records=result.records,
        ready=result.ready,
        label_coverage=result.label_coverage,
        alerts=tuple(flags(result) if alerts is None else alerts),
        features=tuple(column(name, "feature") for name in reference.features),
        outputs=tuple(
            column(name, "prediction" if name == PREDICTION else "probability")
            for name in reference.outputs
        ),
        performance=Performance(
            measure="error rate" if classification else "MSE",
            realized=_realized(result),
            estimated=None if estimate is None else estimate.estimate,
            joined=result.joined,
            reference=result.reference_error_rate if classification else result.reference_mse,
            drift=result.concept_drift,
            threshold=result.concept_threshold,
            detected=result.concept_detected,
            **(
                {}
                if estimate is None
                else {
                    "estimated_drift": estimate.score,
                    "estimated_threshold": estimate.threshold,
                    "estimated_detected": estimate.detected,
                    "outside_share": estimate.outside_share,
                }
            ),
        ),
        history=tuple(history),
        calibrated=result.alpha is not None or not result.ready,
        evaluated_ms=evaluated_ms,
    )


def flags(result: DriftResult) -> tuple[Alert, ...]:
    """What the result flags, named as the Prometheus alerts (prometheus/alerts.yml) it drives."""
    out = [Alert("FeatureDataDrift", f.name, anchor(f.name)) for f in result.features if f.detected]
    out += [Alert("PredictionDrift", o.name, anchor(o.name)) for o in result.outputs if o.detected]
    if result.concept_detected:
        out.append(Alert("ConceptDrift", "model error", "performance"))
    if result.error_detected:
        out.append(Alert("ConceptErrorDrift", "distribution of the errors", "performance"))
    if result.estimate is not None and result.estimate.detected:
        out.append(
            Alert(
                "EstimatedPerformanceDrop", "estimated performance, no labels needed", "performance"
            )
        )
    return tuple(out)


def anchor(name: str) -> str:
    """The page's id of a column's section: feature-<name>, percent-encoded beyond letters, digits
    and -._~ (a space as +) so it is a valid id and URL fragment whatever the schema calls the
    column (p(yes) -> feature-p%28yes%29). Alerts link to <page>#<anchor>: their template writes
    it with Go's `urlquery`, which encodes a name the same way.

    >>> anchor("carat"), anchor("p(yes)"), anchor("table width")
    ('feature-carat', 'feature-p%28yes%29', 'feature-table+width')
    """
    return "feature-" + quote_plus(name, safe="")


def describe_window(size: int, unit: str, end_ms: int | None = None) -> str:
    """The window in words from `service.parse_span`'s (size, unit): "last 1,000 records", or
    "5 min ending 2026-12-07 12:00:00 UTC" for an event-time window ending at end_ms."""
    if unit == "records":
        return f"last {size:,} records"
    span = span_text(size)
    return span if end_ms is None else f"{span} ending {time_text(end_ms)}"


def order_from_schema(schema: Any) -> dict[str, list[str]]:
    """{categorical column: category texts in the schema's order}, the predicted class included;
    schema: a `contract.schema.Schema`."""
    from contract.rules import category_text  # the one rule for a category's text

    order = {
        f.name: [category_text(c) for c in f.categories] for f in schema.features if not f.numeric
    }
    if schema.classification:
        order[PREDICTION] = list(schema.class_texts)
    return order


def _compared(f: FeatureDrift, result: DriftResult) -> float:
    # Calibrated mode (alpha set) compares the statistic with the threshold; fixed, the distance.
    return f.statistic if result.alpha is not None else f.distance


def _ratio(compared: float | None, threshold: float | None) -> float | None:
    if compared is None or threshold is None or not threshold:
        return None
    ratio = compared / threshold
    return None if math.isnan(ratio) else ratio


def _realized(result: DriftResult) -> float | None:
    return result.rolling_error_rate if result.rolling_mse is None else result.rolling_mse
