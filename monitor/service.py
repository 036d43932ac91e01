"""`python -m monitor run`: the predictions and labels topics in, drift gauges, dead letters and state snapshots out.

One consumer reads both topics in batches (`Processor.process`):
    messages -> decoded predictions (PredictionBatch) + labels (ids, ts, labels) + rejections (`monitor.decode`)
    rejections -> the monitor DLQ (original bytes, reason headers), counted by topic and reason
    monitor.update(predictions) -> one DriftResult per closed pane (every `step`): counted
    monitor.update_labels(...)  -> joined errors feed the rolling MSE / error rate (the latest labelled records)
    monitor.result()            -> the latest window, labels included: the gauges
Until the window holds enough records (the window size for count windows, 100 records for time
windows) the drift gauges are NaN, never 0; concept-drift gauges wait for 100 labelled records.

State and offsets (`monitor.persist`): every `state_interval` seconds (and on SIGTERM and before
partitions are revoked) the dead letters are acknowledged, then the monitor's state and the
consumer positions it covers go to the compacted state topic (`monitor.state`); the group's offsets
are committed only after that snapshot is acknowledged. On start the newest snapshot for the group
is loaded and the consumer seeks to its offsets, so a crash replays exactly the records after the
snapshot into the snapshot's windows: no record counted twice, none skipped. One instance per
group: the windows are not shared between instances.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Message
from prometheus_client import CollectorRegistry

from contract.rules import Rejection
from contract.schema import Schema
from contract.service import close_consumer, freeze_startup_heap, is_record, log_failed_commit
from contract.settings import DEFAULT_PARTITIONS, Groups, Topics, consumer_config, partition_counts
from monitor.calibration import MODES
from monitor.decode import Decoder
from monitor.drift import DriftMonitor, DriftResult
from monitor.join import ExpiryWatch
from monitor.metrics import GaugeLag, MonitorMetrics
from monitor.persist import Persister, Rebalance, restore
from monitor.reference import Reference
from monitor.state import Offsets
from monitor.windows import CountWindow, PredictionBatch, TimeWindow

log = logging.getLogger(__name__)

GAUGE_REFRESH_SECONDS = 0.5

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SPAN = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")


def parse_span(text: str, name: str = "--window") -> tuple[int, str]:
    """'1000' -> (1000, 'records'); '30s' / '5m' / '1h' / '500ms' -> (milliseconds, 'ms')."""
    match = _SPAN.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{name} must be a positive record count (1000) or a duration (30s, 5m, 1h), got {text!r}")
    value, unit = int(match.group(1)), match.group(2)
    return (value, "records") if unit is None else (value * _UNITS_MS[unit], "ms")


def parse_duration_ms(text: str, name: str) -> int:
    value, unit = parse_span(text, name)
    if unit != "ms":
        raise ValueError(f"{name} must be a duration with a unit (30s, 5m, 1h), got {text!r}")
    return value


@dataclass(frozen=True)
class MonitorConfig:
    group: str = Groups.monitor  # consumer group, also the key of the state snapshots
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8000
    window: str = "1000"  # records, or a duration: event-time window
    step: str = "250"  # same kind as window
    ert: float = 10_000_000  # expected records between false alarms
    thresholds: str = "calibrated"
    label_ttl: str = "1h"  # how long a prediction waits for its label (event time)
    state_interval: float = 5.0  # seconds between state snapshots (and offset commits)
    batch_size: int = 5000
    batch_timeout: float = 0.05  # a batch is at most this late (consume() waits for a full batch or this)
    partitions: int = DEFAULT_PARTITIONS  # for the topics the monitor creates (inputs, DLQ)
    estimate: bool = True  # estimate the performance without labels (monitor.estimate)
    window_size: int = field(init=False)
    step_size: int = field(init=False)
    time_based: bool = field(init=False)
    label_ttl_ms: int = field(init=False)

    def __post_init__(self) -> None:
        window, kind = parse_span(self.window, "--window")
        step, step_kind = parse_span(self.step, "--step")
        if kind != step_kind:
            raise ValueError(f"--window {self.window} and --step {self.step} must both be record counts or both durations")
        if step > window:
            raise ValueError(f"--step ({self.step}) is longer than --window ({self.window}): records between "
                             "evaluations would never be tested; lower --step or raise --window")
        if window % step:
            raise ValueError(f"--window ({self.window}) must be a multiple of --step ({self.step}): windows are "
                             "built from whole steps")
        object.__setattr__(self, "window_size", window)
        object.__setattr__(self, "step_size", step)
        object.__setattr__(self, "time_based", kind == "ms")
        object.__setattr__(self, "label_ttl_ms", parse_duration_ms(self.label_ttl, "--label-ttl"))
        if not self.ert > 0:
            raise ValueError("--ert (expected records between false alarms) must be > 0")
        if self.thresholds not in MODES:
            raise ValueError(f"--thresholds must be one of {', '.join(MODES)}")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("--metrics-port must be 0-65535 (0 disables the metrics server)")
        if self.batch_size < 1 or self.batch_timeout <= 0:
            raise ValueError("--batch-size must be >= 1 and --batch-timeout > 0")
        if self.state_interval < 0:
            raise ValueError("--state-interval must be >= 0 seconds")
        if self.partitions < 1:
            raise ValueError("--partitions must be at least 1")
        if not self.group:
            raise ValueError("--group (MONITOR_GROUP) must not be empty")

    @property
    def window_state(self) -> dict[str, Any]:
        """What a snapshot must match to be loaded: pane ids only mean something for one window shape."""
        return {"kind": "time" if self.time_based else "count", "window": self.window_size, "step": self.step_size}


@dataclass(frozen=True)
class Baseline:
    """What the monitor compares the stream with: the reference profile and, unless it cannot be
    fitted (or was not asked for), the performance estimator; `estimate` says which, or why not."""

    reference: Reference
    estimator: Any = None
    estimate: str = "no estimated performance: not asked for (--estimate off)"


def load_baseline(schema: Schema, path: Path, estimate: bool = True) -> Baseline:
    """The no-drift profile from the model's reference rows (features, target, prediction,
    probabilities), checked against the schema (SchemaError naming the file and column otherwise),
    and the estimator fitted on the same rows (seeded: every process fits the same one)."""
    from contract.artifacts import read_reference  # pandas: only at start-up

    frame = read_reference(path, schema)
    reference = Reference.from_schema(schema, frame)
    if not estimate:
        return Baseline(reference)
    from monitor.nanny import fit_from_schema  # scikit-learn: only at start-up

    fitted = fit_from_schema(schema, frame, reference)
    return Baseline(reference, fitted.estimator, fitted.reason)


def load_reference(schema: Schema, path: Path) -> Reference:
    """The no-drift profile alone (see `load_baseline`)."""
    return load_baseline(schema, path, estimate=False).reference


def build_monitor(config: MonitorConfig, reference: Reference, estimator: Any = None) -> DriftMonitor:
    if config.time_based:
        window: CountWindow | TimeWindow = TimeWindow(reference, config.window_size, config.step_size,
                                                      estimator=estimator)
    else:
        window = CountWindow(reference, config.window_size, config.step_size, estimator=estimator)
    monitor = DriftMonitor(reference, window, ert=config.ert, mode=config.thresholds, label_ttl_ms=config.label_ttl_ms)
    if not config.time_based:
        # A count window's every evaluation has the same sizes and alpha: its thresholds (the
        # categorical columns' exact nulls take 0.1-3 s each) are computed here, before the first
        # record, not on the loop at the first evaluation.
        monitor.calibration.thresholds(config.window_size, config.step_size)
    return monitor


class AlarmLog:
    """Logs each alarm when it starts and when it clears, with where in the stream."""

    def __init__(self, config: MonitorConfig, classification: bool) -> None:
        self.config, self.measure = config, "error rate" if classification else "MSE"
        self.flagged: dict[str, bool] = {}  # alarm name -> flagged at the previous evaluation

    def follow(self, result: DriftResult) -> None:
        # alarm name -> (flagged, detail): features, then the model's outputs (the prediction, a
        # classifier's p(<class>) columns), then concept drift
        alarms = {f.name: (f.detected, f"{f.test} {f.statistic:.4g}, threshold {f.threshold:.4g}")
                  for f in (*result.features, *result.outputs)}
        if result.concept_detected is not None:
            alarms["concept"] = (result.concept_detected, f"{self.measure} ratio {result.concept_drift:.4g}, "
                                 f"threshold {result.concept_threshold:.4g}")
        estimate = result.estimate
        if estimate is not None and estimate.detected is not None:
            alarms["estimated performance"] = (estimate.detected, (
                f"estimated {self.measure} {estimate.estimate:.4g}, ratio {estimate.score:.4g}, threshold "
                f"{estimate.threshold:.4g}, {estimate.outside_share:.0%} of the records outside the reference's support; "
                "no labels needed"))
        if self.config.time_based:
            where = f"window ending at {(result.pane + 1) * self.config.step_size} ms (event time)"
        else:
            where = f"window ending at record {(result.pane + 1) * self.config.step_size}"
        for name, (detected, detail) in alarms.items():
            if detected != self.flagged.get(name, False):
                self.flagged[name] = detected
                log.warning("drift %s: %s (%s) in the %s", "detected" if detected else "cleared", name, detail, where)


class Processor:
    """The process job: one batch of messages into the windows, the join, the DLQ and the gauges."""

    def __init__(self, config: MonitorConfig, decoder: Decoder, monitor: DriftMonitor, metrics: MonitorMetrics,
                 topics: Topics, positions: Offsets, persister: Persister) -> None:
        self.decoder, self.monitor, self.metrics, self.topics = decoder, monitor, metrics, topics
        self.positions, self.persister = positions, persister
        self.alarms = AlarmLog(config, decoder.schema.classification)
        self.logged: set[tuple[str, str]] = set()  # (topic, reason) already logged once
        self.lag = GaugeLag()
        self.stale = False  # records or labels came since the gauges were last set
        self.refreshed_at = 0.0
        self.expiry, self.label_ttl = ExpiryWatch(), config.label_ttl

    def _pane_ids(self, batch: PredictionBatch, records_before: int) -> np.ndarray:
        """The pane of each prediction of a batch just added (as the window assigned them)."""
        window = self.monitor.window
        if isinstance(window, CountWindow):
            return (records_before + np.arange(len(batch), dtype=np.int64)) // window.step
        return np.asarray(batch.ts, dtype=np.int64) // window.step

    @staticmethod
    def _sent_ms(messages: list[Message], rejected: list[tuple[int, Rejection]]) -> np.ndarray:
        """Kafka timestamps (ms) of the messages the decoder accepted, in batch order."""
        sent = np.fromiter((ts for _, ts in map(Message.timestamp, messages)), np.int64, len(messages))
        return _accepted(sent, rejected)

    @staticmethod
    def _partitions(messages: list[Message], rejected: list[tuple[int, Rejection]]) -> np.ndarray:
        """Input partitions of the messages the decoder accepted, in batch order."""
        return _accepted(np.fromiter(map(Message.partition, messages), np.int64, len(messages)), rejected)

    def process(self, messages: list[Message]) -> None:
        """One batch: predictions into the windows, then labels into the join; gauges refreshed."""
        # Per-message calls mapped in C; a partition's messages come in offset order, so the last
        # offset seen per (topic, partition) wins in the dict.
        topics = list(map(Message.topic, messages))
        self.positions.update(zip(zip(topics, map(Message.partition, messages)),
                                  [offset + 1 for offset in map(Message.offset, messages)]))
        prediction_topic = self.topics.predictions
        if topics.count(prediction_topic) == len(topics):
            predictions, labels = messages, []
        else:
            predictions = [m for m, topic in zip(messages, topics) if topic == prediction_topic]
            labels = [m for m, topic in zip(messages, topics) if topic != prediction_topic]
        results = []
        if predictions:
            batch, rejected = self.decoder.predictions([value or b"" for value in map(Message.value, predictions)])
            self._reject(predictions, rejected)
            self.metrics.consume(prediction_topic, len(predictions))
            if len(batch):
                before = self.monitor.window.records
                results = self.monitor.update(replace(batch, partitions=self._partitions(predictions, rejected)))
                self.lag.add(self._pane_ids(batch, before), self._sent_ms(predictions, rejected))
        if labels:
            ids, ts, values, rejected = self.decoder.labels([value or b"" for value in map(Message.value, labels)])
            self._reject(labels, rejected)
            self.metrics.consume(self.topics.labels, len(labels))
            if ids:
                self.monitor.update_labels(ids, ts, values, self._partitions(labels, rejected))
        self.metrics.count(results)
        for result in results:
            self.alarms.follow(result)
        self.stale = True
        self.refresh(closed=bool(results))
        if isinstance(self.monitor.window, TimeWindow):
            self.metrics.pane_closed(results, self.monitor.window.step, time.time() * 1000)
        counters = self.monitor.counters
        self.metrics.follow(counters)
        if (expired := self.expiry.check(counters, time.monotonic())) is not None:
            log.warning("%s: their partner came more than --label-ttl (%s) later in event time than the other "
                        "side's records, or not at all; see monitor_expired_joins_total", expired, self.label_ttl)

    def refresh(self, closed: bool = False) -> None:
        """The gauges from the latest window, labels joined since included: at once when a pane
        closed, otherwise at most every GAUGE_REFRESH_SECONDS (the run loop calls this when idle too).

        Evaluating costs ~1 ms; at a low rate batches of a few records come hundreds of times a
        second, and re-evaluating after each took half a core at 1,000 records/s."""
        now = time.monotonic()
        if not self.stale or (not closed and now - self.refreshed_at < GAUGE_REFRESH_SECONDS):
            return
        self.stale, self.refreshed_at = False, now
        started = time.perf_counter()
        latest = self.monitor.result()
        if latest is not None:
            self.metrics.evaluation_seconds.observe(time.perf_counter() - started)
        self.metrics.show(latest)
        for seconds in self.lag.shown(self.monitor.window.last_closed, time.time() * 1000):
            self.metrics.gauge_lag.observe(seconds)
        self.metrics.count_concept(latest)

    def _reject(self, messages: list[Message], rejected: list[tuple[int, Rejection]]) -> None:
        """Refused records to the monitor DLQ, counted by topic and reason, logged once per topic and reason."""
        for position, rejection in rejected:
            message = messages[position]
            self.persister.dead_letter(message, rejection)
            self.metrics.reject(message.topic(), rejection.reason)
            if (message.topic(), rejection.reason) not in self.logged:
                self.logged.add((message.topic(), rejection.reason))
                log.warning("refused record (%s) at %s[%d]@%d sent to %s: %s (further ones are only counted in "
                            "monitor_invalid_records_total)", rejection.reason, message.topic(), message.partition(),
                            message.offset(), self.topics.monitor_dlq, rejection.detail)


def _accepted(column: np.ndarray, rejected: list[tuple[int, Rejection]]) -> np.ndarray:
    """A per-message column without the positions the decoder refused."""
    return np.delete(column, [position for position, _ in rejected]) if rejected else column


def run(config: MonitorConfig, schema: Schema, baseline: Baseline, topics: Topics, registry: CollectorRegistry,
        stop: threading.Event) -> int:
    """Consume until `stop` is set; the batch in hand is finished, its state persisted and committed."""
    reference = baseline.reference
    monitor = build_monitor(config, reference, baseline.estimator)
    # The join's clocks wait for every partition of each side (see monitor.join).
    counts = partition_counts([topics.predictions, topics.labels])
    monitor.join.expect_partitions(counts[topics.predictions], counts[topics.labels])
    metrics = MonitorMetrics(registry, reference, {"predictions": topics.predictions, "labels": topics.labels},
                             model=schema.name, estimator=baseline.estimator)
    positions = restore(monitor, topics.monitor_state, config.group, config.window_state)
    if monitor.window.estimates_dropped:
        log.info("the restored panes were estimated by another performance estimator (or none): the estimate "
                 "covers the records read from here on until they leave the window")
    metrics.show(monitor.result())
    metrics.follow(monitor.counters)
    decoder = Decoder(schema)
    freeze_startup_heap()
    persister = Persister(monitor, positions, group=config.group, window=config.window_state,
                          state_topic=topics.monitor_state, dlq_topic=topics.monitor_dlq, partitions=config.partitions,
                          interval=config.state_interval, metrics=metrics, stop=stop)
    processor = Processor(config, decoder, monitor, metrics, topics, positions, persister)
    rebalance = Rebalance(positions, persister)
    consumer = Consumer({**consumer_config(config.group), "on_commit": log_failed_commit})
    consumer.subscribe([topics.predictions, topics.labels], on_assign=rebalance.on_assign, on_revoke=rebalance.on_revoke)
    log.info("monitoring %s + %s for model %s (group %s, window %s step %s, %s thresholds, ert %g; refused records "
             "to %s)", topics.predictions, topics.labels, schema.name, config.group, config.window, config.step,
             config.thresholds, config.ert, topics.monitor_dlq)
    last_write = time.monotonic()
    saved = True
    try:
        while not stop.is_set():
            # Up to batch_size messages or batch_timeout (50 ms): at a high rate full batches come at once,
            # at a low one a batch every 50 ms, well inside the gauges' 1 s; taking whatever is waiting
            # (as the scorer does) would pay every per-batch cost for a few records at a time.
            polled = consumer.consume(num_messages=config.batch_size, timeout=config.batch_timeout)
            messages = [m for m in polled if m.error() is None or is_record(m)]
            if messages:
                processor.process(messages)
                persister.changed = True
            else:
                processor.refresh()
            if persister.changed and time.monotonic() - last_write >= config.state_interval:
                persister.persist(consumer)
                last_write = time.monotonic()
        if persister.gave_up:  # a snapshot already failed after the stop was asked for: the broker is away
            saved = False
        elif persister.changed:
            saved = persister.persist(consumer)
    finally:
        rebalance.closing = True
        persister.close()
        close_consumer(consumer, broker_away=not saved)
    if saved:
        log.info("monitor stopped: state saved at %d records seen", monitor.counters["records"])
    else:
        log.warning("monitor stopped without saving its last state: a restart resumes from the previous snapshot")
    return 0
