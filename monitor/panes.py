"""Time windows over several workers: per-partition panes on the workers, merged by one evaluator. No I/O.

    worker, per input partition p:  PartitionPanes(p, ...)  predictions and labels of partition p
        .add_predictions(batch) / .add_labels(ids, ts, labels)
        .publishable() -> [PaneReport]    closed panes changed since last published, with p's watermark
    evaluator:  PaneMerger(layout, partitions, panes_per_window, grace_s)
        .add(report, now)                 the newest report of each (partition, pane) replaces the one before
        .ready(now) -> [pane ids]         windows to evaluate, in order (every partition past the pane,
                                          or `grace_s` since the first one passed it)
        .evaluation(q) -> Evaluation      the window ending at pane q, summed over partitions

Exactly once without transactions: a report carries partition p's WHOLE pane (not an increment), and
a version (epoch, seq). The merger keeps, per partition, only reports of a version above the last it
took, and per (partition, pane) the newest report; so a report sent twice, or a pane sent again by the
partition's next owner while it replays the records after its state snapshot, replaces what it
repeats instead of adding to it. Each new owner of a partition takes epoch = the snapshot's epoch + 1
(and saves it before it reads a record), so a dead or slow former owner's reports cannot override it.

Panes merge by addition (`Pane.merge`), so the merged window equals one monitor's over the same
event-time stream, concept-drift sums included (time windows measure the errors of the window's
own predictions, see `drift.DriftMonitor`), and so do the error test's bin counts (integers:
exactly). A report from a worker that kept no error counts merges as zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from monitor import errortest
from monitor.drift import Evaluation, stream_counters
from monitor.join import Joined, LabelJoin
from monitor.reference import Reference
from monitor.windows import Pane, PaneLayout, PredictionBatch, TimeWindow, add_counts


@dataclass(frozen=True)
class PaneReport:
    """Partition `partition`'s pane `pane` (None: a watermark only) as of version (epoch, seq);
    `newest`: the partition's newest pane, so every pane before it is closed there."""

    partition: int
    epoch: int
    seq: int
    newest: int
    pane: Pane | None

    @property
    def version(self) -> tuple[int, int]:
        return self.epoch, self.seq

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "epoch": self.epoch,
            "seq": self.seq,
            "newest": self.newest,
            "pane": None if self.pane is None else self.pane.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> PaneReport:
        pane = state["pane"]
        return cls(
            int(state["partition"]),
            int(state["epoch"]),
            int(state["seq"]),
            int(state["newest"]),
            None if pane is None else Pane.from_dict(pane),
        )


class PartitionPanes:
    """One input partition's time panes and label join, as a worker keeps them.

    The window (`TimeWindow`) and the join (`LabelJoin`) are the single monitor's, fed with this
    partition's records only; `changed` remembers the panes touched since they were last reported."""

    def __init__(
        self,
        partition: int,
        reference: Reference,
        window_ms: int,
        step_ms: int,
        label_ttl_ms: int = 3_600_000,
        max_pending: int = 200_000,
        estimator: Any = None,
    ) -> None:
        self.partition = partition
        self.window = TimeWindow(reference, window_ms, step_ms, estimator=estimator)
        self.join = LabelJoin(
            label_ttl_ms,
            max_pending,
            classification=reference.classification,
            error_test=reference.error_test,
        )
        self.reference = reference
        self.epoch = 0  # this owner's epoch; `take_ownership` moves it past the snapshot's
        self.seq = 0  # reports made in this epoch
        self.changed: set[int] = set()
        self.reported_newest: int | None = None  # the watermark last reported

    def take_ownership(self) -> None:
        """A new owner: reports from now on outrank every earlier owner's."""
        self.epoch += 1
        self.seq = 0
        self.reported_newest = None  # report the watermark again under the new epoch

    def add_predictions(self, batch: PredictionBatch) -> None:
        pane_ids, _ = self.window.update(batch)
        self.changed.update(np.unique(pane_ids[pane_ids >= 0]).tolist())
        confidences = (
            self.reference.confidences(batch.probabilities)
            if self.reference.classification
            else None
        )
        self._errors(
            self.join.add_predictions(
                batch.ids, batch.ts, batch.predictions, pane_ids, confidences=confidences
            )
        )

    def add_labels(self, ids: list[str], ts: ArrayLike, labels: ArrayLike) -> None:
        self._errors(self.join.add_labels(ids, ts, labels))

    def _errors(self, joined: Joined) -> None:
        if len(joined):
            self.window.add_errors(joined.pane_ids, joined.squared, joined.absolute, joined.bins)
            self.changed.update(
                q for q in np.unique(joined.pane_ids).tolist() if q in self.window.panes
            )

    def publishable(self) -> list[PaneReport]:
        """Reports of the closed panes changed since last reported (the newest pane is still filling),
        or of the watermark alone when it moved; then panes that left the window are forgotten."""
        newest = self.window.newest
        if newest is None:
            return []
        ready = sorted(q for q in self.changed if q < newest and q in self.window.panes)
        self.changed -= set(ready)
        self.changed &= set(self.window.panes)
        # Each report's watermark promises only what is reported by then: a reader that takes pane
        # 5's report must not think pane 6 is complete before pane 6's report has come.
        marks = [*ready[1:], newest]
        reports = [self._report(mark, self.window.panes[q]) for q, mark in zip(ready, marks)]
        if not reports and newest != self.reported_newest:
            reports.append(self._report(newest, None))
        self.reported_newest = newest
        self.window.expire()
        return reports

    def _report(self, newest: int, pane: Pane | None) -> PaneReport:
        self.seq += 1
        return PaneReport(self.partition, self.epoch, self.seq, newest, pane)

    @property
    def counters(self) -> dict[str, int]:
        return stream_counters(self.window, self.join)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "epoch": self.epoch,
            "seq": self.seq,
            "changed": sorted(self.changed),
            "window": self.window.to_dict(),
            "join": self.join.to_dict(),
        }

    def load_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["partition"]) != self.partition:
            raise ValueError(f"state is for partition {state['partition']}, not {self.partition}")
        self.window.load_dict(state["window"])
        self.join.load_dict(state["join"])
        self.epoch, self.seq = int(state["epoch"]), int(state["seq"])
        self.changed = set(map(int, state["changed"]))


class PaneMerger:
    """The evaluator's view: the newest report of every (partition, pane), merged into windows.

    partitions: how many input partitions report (the predictions topic's). A window ending at pane q
    is evaluated once every partition's watermark is past q, or `grace_s` after the first one passed
    it (an idle or slow partition cannot hold the gauges back for longer). A pane report that arrives
    after its window was evaluated is still merged into the later windows that hold the pane and
    counted (`late_panes`, `late_records`: predictions the evaluated window missed); one whose pane
    has left every window is counted in `dropped_records`."""

    def __init__(
        self, layout: PaneLayout, partitions: int, panes_per_window: int, grace_s: float
    ) -> None:
        if partitions < 1 or grace_s < 0:
            raise ValueError(
                f"partitions must be >= 1 and grace >= 0, got {partitions} and {grace_s}"
            )
        self.layout, self.partitions = layout, partitions
        self.panes_per_window, self.grace_s = panes_per_window, grace_s
        self.reports: dict[int, dict[int, Pane]] = {}  # pane id -> partition -> its newest pane
        self.versions: dict[int, tuple[int, int]] = {}  # partition -> newest version taken
        self.watermarks: dict[int, int] = {}  # partition -> newest pane it reported
        self.passed_at: dict[
            int, float
        ] = {}  # pane id -> when a first partition's watermark passed it
        self.evaluated: int | None = None  # the last pane whose window was evaluated
        self.start: int | None = None  # the first pane any report named
        self.stale = self.late_panes = self.late_records = self.dropped_records = 0

    # -- taking reports -----------------------------------------------------------------------------
    def add(self, report: PaneReport, now: float) -> bool:
        """Take a report unless an equal or newer version of its partition was taken; True if taken."""
        if report.version <= self.versions.get(report.partition, (-1, -1)):
            self.stale += 1
            return False
        self.versions[report.partition] = report.version
        if report.pane is not None:
            self._replace(report.partition, report.pane)
        self._advance(report.partition, report.newest, now)
        return True

    def _replace(self, partition: int, pane: Pane) -> None:
        q = pane.id
        if self.start is None:
            self.start = q
        if self.evaluated is not None and q <= self.evaluated - self.panes_per_window:
            self.dropped_records += pane.records  # no window holds it any more
            return
        held = self.reports.setdefault(q, {})
        before = held.get(partition)
        added = pane.records - (before.records if before is not None else 0)
        if self.evaluated is not None and q <= self.evaluated and added > 0:
            self.late_panes += 1
            self.late_records += added
        held[partition] = pane

    def _advance(self, partition: int, newest: int, now: float) -> None:
        leading = max(self.watermarks.values(), default=None)
        self.watermarks[partition] = max(newest, self.watermarks.get(partition, newest))
        if self.start is None:
            self.start = newest
        first = self.start if leading is None else leading
        for q in range(max(first, self.start), self.watermarks[partition]):
            self.passed_at.setdefault(q, now)

    # -- evaluating ---------------------------------------------------------------------------------
    def ready(self, now: float) -> list[int]:
        """Panes whose windows are due, oldest first; they count as evaluated from here on."""
        if self.start is None:
            return []
        due = []
        q = self.start if self.evaluated is None else self.evaluated + 1
        while q in self.passed_at:
            everyone = len(self.watermarks) == self.partitions and min(self.watermarks.values()) > q
            if not (everyone or now - self.passed_at[q] >= self.grace_s):
                break
            due.append(q)
            q += 1
        if due:
            self.evaluated = due[-1]
            self._expire()
        return due

    def merged(self, q: int) -> Pane:
        """Pane q over every partition that reported it."""
        total = self.layout.empty(q)
        for pane in self.reports.get(q, {}).values():
            total = total.merge(pane)
        total.id = q
        return total

    def aggregate(self, upto: int, panes: int | None = None) -> Pane:
        span = self.panes_per_window if panes is None else min(panes, self.panes_per_window)
        total = self.layout.empty(upto)
        for q in range(upto - span + 1, upto + 1):
            total = total.merge(self.merged(q))
        total.id = upto
        return total

    def scale_counts(self, upto: int) -> dict[str, np.ndarray]:
        """The error test's counts per scale of the window ending at pane `upto`, summed over
        partitions (`PaneWindow.scale_counts`)."""
        panes = []
        for q in range(upto - self.panes_per_window + 1, upto + 1):
            total = np.zeros(self.layout.errors, np.int64)
            for pane in self.reports.get(q, {}).values():
                total = add_counts(total, pane.error_counts)
            panes.append(total)
        return errortest.scale_counts(panes)

    def evaluation(self, q: int, recent: bool) -> Evaluation:
        """What the window ending at pane q tests, as `DriftMonitor` builds it for a time window (the
        error test's counts whenever the layout has an error test: `evaluate_all` runs it only when
        the calibration has it on)."""
        window = self.aggregate(q)
        return Evaluation(
            window,
            self.merged(q).records,
            (window.joined, window.sse, window.sae),
            self.aggregate(q, self.panes_per_window // 2) if recent else None,
            self.scale_counts(q) if self.layout.errors else None,
        )

    def _expire(self) -> None:
        oldest = self.evaluated - self.panes_per_window + 1
        for q in [q for q in self.reports if q < oldest]:
            del self.reports[q]
        for q in [q for q in self.passed_at if q <= self.evaluated]:
            del self.passed_at[q]

    @property
    def counters(self) -> dict[str, int]:
        records = sum(p.records for panes in self.reports.values() for p in panes.values())
        return {
            "window_records_held": records,
            "stale_reports": self.stale,
            "late_panes": self.late_panes,
            "late_records": self.late_records,
            "dropped_records": self.dropped_records,
        }

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "reports": [
                [q, p, pane.to_dict()]
                for q, held in self.reports.items()
                for p, pane in held.items()
            ],
            "versions": [[p, *v] for p, v in self.versions.items()],
            "watermarks": [[p, q] for p, q in self.watermarks.items()],
            "passed": sorted(self.passed_at),
            "evaluated": self.evaluated,
            "start": self.start,
            "counts": [self.stale, self.late_panes, self.late_records, self.dropped_records],
        }

    def load_dict(self, state: Mapping[str, Any], now: float) -> None:
        """Restore `to_dict` output; the grace of panes still waiting starts again at `now`."""
        self.reports = {}
        for q, p, pane in state["reports"]:
            self.reports.setdefault(int(q), {})[int(p)] = Pane.from_dict(pane)
        self.versions = {int(p): (int(e), int(s)) for p, e, s in state["versions"]}
        self.watermarks = {int(p): int(q) for p, q in state["watermarks"]}
        self.passed_at = {int(q): now for q in state["passed"]}
        self.evaluated, self.start = state["evaluated"], state["start"]
        self.stale, self.late_panes, self.late_records, self.dropped_records = map(
            int, state["counts"]
        )
