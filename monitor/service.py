"""`python -m monitor run`: the predictions and labels topics in, drift gauges and state snapshots out.

One consumer reads both topics in batches:
    messages -> decoded predictions (PredictionBatch) + labels (ids, ts, prices) + rejections
    monitor.update(predictions) -> one DriftResult per closed pane (every `step`): counted
    monitor.update_labels(...)  -> joined errors feed the rolling MSE (the latest labelled records)
    monitor.result()            -> the latest window, labels included: the gauges
Until the window holds enough records (the window size for count windows, 100 records for time
windows) the drift gauges are NaN, never 0; concept-drift gauges wait for 100 labelled records.

State and offsets: every `state_interval` seconds (and on SIGTERM) the monitor's state and the
consumer positions it covers go to the compacted state topic (see `monitor.state`); the group's
offsets are committed only after that snapshot is acknowledged. On start the newest snapshot for
the group is loaded and the consumer seeks to its offsets, so a crash replays exactly the records
after the snapshot into the snapshot's windows: no record counted twice, none skipped. One
instance per group: the windows are not shared between instances.
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from contract import wire
from contract.records import (CATEGORICAL_FEATURES, MISSING_FIELD, NOT_FINITE, NOT_OBJECT, NUMERIC_FEATURES, OUT_OF_RANGE,
                              WRONG_TYPE, InvalidRecord, Rejection, decode_label, parse_json, validate_features)
from contract.delivery import discard, producer_failure, resending_producer
from contract.service import freeze_startup_heap, is_record, log_failed_commit
from contract.settings import Topics, consumer_config
from monitor.calibration import MODES
from monitor.drift import DriftMonitor, DriftResult
from monitor.metrics import MonitorMetrics
from monitor.reference import Reference
from monitor.state import Offsets, create_state_topic, encode_state, read_latest, write_state
from monitor.windows import CountWindow, PredictionBatch, TimeWindow

log = logging.getLogger(__name__)

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
    group: str = "monitor"
    model_dir: Path = Path("artifacts")
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8000
    window: str = "1000"  # records, or a duration: event-time window
    step: str = "250"  # same kind as window
    ert: float = 10_000_000  # expected records between false alarms
    thresholds: str = "calibrated"
    label_ttl: str = "1h"  # how long a prediction waits for its label (event time)
    state_topic: str = "diamonds.monitor-state"
    state_interval: float = 5.0  # seconds between state snapshots (and offset commits)
    batch_size: int = 5000
    batch_timeout: float = 0.2
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
        if not self.state_topic:
            raise ValueError("the state topic name (MONITOR_STATE_TOPIC) must not be empty")

    @property
    def window_state(self) -> dict[str, Any]:
        """What a snapshot must match to be loaded: pane ids only mean something for one window shape."""
        return {"kind": "time" if self.time_based else "count", "window": self.window_size, "step": self.step_size}


class StateMismatch(ValueError):
    """The group's snapshot was written for another window shape or reference."""


def load_reference(model_dir: Path) -> Reference:
    """The no-drift profile from the model's held-out rows (features, predictions, prices)."""
    from scorer.model import load_reference as read_heldout

    frame = read_heldout(model_dir)
    return Reference.from_arrays(
        numeric={c: frame[c].to_numpy(np.float64) for c in NUMERIC_FEATURES},
        categorical={c: frame[c].to_numpy(str) for c in CATEGORICAL_FEATURES},
        predictions=frame["prediction"].to_numpy(np.float64),
        labels=frame["price"].to_numpy(np.float64),
    )


def build_monitor(config: MonitorConfig, reference: Reference) -> DriftMonitor:
    if config.time_based:
        window: CountWindow | TimeWindow = TimeWindow(reference, config.window_size, config.step_size)
    else:
        window = CountWindow(reference, config.window_size, config.step_size)
    return DriftMonitor(reference, window, ert=config.ert, mode=config.thresholds, label_ttl_ms=config.label_ttl_ms)


# -- decoding: bytes -> columns, bad records become data ------------------------------------------
# Per batch of thousands: msgspec's typed decoders (`contract.wire`, the same rules as
# contract.records) build every record in C; a batch holding a record they refuse goes record by
# record, and each refusal through the full validation (`_prediction` / `decode_label`), which
# gives the verdict and names the reason. The typed decoders only ever accept what the full
# validation accepts, so no invalid record slips through.


def _prediction(raw: bytes) -> tuple[str, int, float, float, float, float, str, str, str]:
    """(id, ts, prediction, carat, depth, table, cut, color, clarity) of one prediction message;
    raises InvalidRecord naming why it is refused."""
    obj = parse_json(raw)
    if not isinstance(obj, dict):
        raise InvalidRecord(NOT_OBJECT, f"prediction must be a JSON object, got {type(obj).__name__}")
    features = obj.get("features")
    if not isinstance(features, dict):
        raise InvalidRecord(MISSING_FIELD if features is None else WRONG_TYPE, "'features' must be an object")
    record = validate_features({**features, **{k: obj[k] for k in ("id", "ts") if k in obj}})
    if isinstance(record, Rejection):
        raise InvalidRecord(record.reason, record.detail)
    prediction = obj.get("prediction")
    if isinstance(prediction, bool) or not isinstance(prediction, (int, float)):
        raise InvalidRecord(MISSING_FIELD if prediction is None else WRONG_TYPE, "'prediction' must be a number")
    try:
        prediction = float(prediction)
    except OverflowError:  # an integer too large for a float
        raise InvalidRecord(OUT_OF_RANGE, "'prediction' is too large") from None
    if not math.isfinite(prediction):
        raise InvalidRecord(NOT_FINITE, f"'prediction' is {prediction}")
    return (record.id, record.ts, prediction, record.carat, record.depth, record.table,
            record.cut, record.color, record.clarity)


def _prediction_or_rejection(raw: bytes) -> wire.Prediction | Rejection:
    """The contract's verdict on a record the typed decoder refused (it may still be valid: an integer id, say)."""
    try:
        record_id, ts, prediction, carat, depth, table, cut, color, clarity = _prediction(raw)
    except InvalidRecord as invalid:
        return invalid.rejection
    return wire.Prediction(record_id, ts, prediction, wire.Features(carat=carat, cut=cut, color=color, clarity=clarity,
                                                                    depth=depth, table=table))


def _label_or_rejection(raw: bytes) -> wire.Label | Rejection:
    label = decode_label(raw)
    return label if isinstance(label, Rejection) else wire.Label(label.id, label.ts, label.price)


def decode_predictions(values: list[bytes]) -> tuple[PredictionBatch, list[tuple[int, Rejection]]]:
    """Columns of the valid predictions, and (position, rejection) of the others.

    See `contract.wire.decode_records`; refusals go to `_prediction` for the verdict. Columns are
    read one at a time (map + attrgetter): a tuple per record would cost more in garbage
    collection than the decoding itself."""
    records, rejections = wire.decode_records(values, wire.prediction_decoder, _prediction_or_rejection)
    n, field = len(records), wire.field
    features = list(map(field["features"], records))
    batch = PredictionBatch(
        ids=np.array(list(map(field["id"], records)), dtype=object),
        ts=np.fromiter(map(field["ts"], records), np.int64, n),
        predictions=np.fromiter(map(field["prediction"], records), np.float64, n),
        numeric={c: np.fromiter(map(field[c], features), np.float64, n) for c in NUMERIC_FEATURES},
        categorical={c: np.array(list(map(field[c], features)), dtype=object) for c in CATEGORICAL_FEATURES},
    )
    return batch, rejections


def decode_labels(values: list[bytes]) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[int, Rejection]]]:
    """(ids, ts (k,) int64, prices (k,) float64) of the valid labels, and the rejections; as for predictions."""
    records, rejections = wire.decode_records(values, wire.label_decoder, _label_or_rejection)
    n, field = len(records), wire.field
    return (list(map(field["id"], records)), np.fromiter(map(field["ts"], records), np.int64, n),
            np.fromiter(map(field["price"], records), np.float64, n), rejections)


class _Runner:
    """The loop's mutable parts: monitor, positions covered, metrics, reasons already logged."""

    def __init__(self, config: MonitorConfig, reference: Reference, topics: Topics, registry: CollectorRegistry,
                 stop: threading.Event | None = None) -> None:
        self.config, self.topics = config, topics
        self.stop = stop or threading.Event()
        self.gave_up = False  # a snapshot failed once stopping had begun: no further try
        self.monitor = build_monitor(config, reference)
        self.metrics = MonitorMetrics(registry, reference, {"predictions": topics.predictions, "labels": topics.labels})
        self.positions: Offsets = {}
        self.changed = False  # records processed since the last snapshot
        self.closing = False  # set before consumer.close(): the last snapshot is already written
        self.producer: Producer | None = None
        self.logged: set[tuple[str, str]] = set()
        self.flagged: dict[str, bool] = {}  # alarm name -> flagged at the previous evaluation

    def restore(self) -> None:
        """Load the group's newest snapshot; a missing one is logged, a mismatching one refused."""
        state = read_latest(self.config.state_topic, self.config.group)
        if state is None:
            log.info("no state for group %s in %s: starting with empty windows", self.config.group, self.config.state_topic)
            return
        if state["window"] != self.config.window_state:
            raise StateMismatch(f"the state of group {self.config.group} was written for window {state['window']}, "
                                f"not {self.config.window_state}: use the same --window/--step or a new --group")
        try:
            self.monitor.load_dict(state["monitor"])
        except ValueError as exc:
            raise StateMismatch(f"state of group {self.config.group}: {exc}") from None
        self.positions = dict(state["offsets"])
        counters = self.monitor.counters
        log.info("restored state of group %s: %d records seen, %d pending joins, offsets %s",
                 self.config.group, counters["records"], counters["pending"],
                 {f"{t}[{p}]": o for (t, p), o in sorted(self.positions.items())})

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Resume where the windows are (the restored snapshot's positions, or what this process
        # has read), not at the group's committed offsets, which may lag them (a commit that did
        # not land): those records would be counted twice. The exception is a broker that lost
        # the group (a replaced memory broker: no committed offset at all for a partition we have
        # read), whose logs start again at 0 and are read from their start.
        held = [tp for tp in partitions if (tp.topic, tp.partition) in self.positions]
        committed = {}
        if held:
            try:
                committed = {(tp.topic, tp.partition): tp.offset
                             for tp in consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in held], timeout=10)}
            except KafkaException as exc:
                log.warning("cannot read the group's committed offsets (%s): resuming at the monitor's own positions", exc)
        for tp in held:
            key = (tp.topic, tp.partition)
            if committed.get(key, 0) < 0 and self.positions[key] > 0:
                log.warning("the group has no committed offset for %s[%d] although the monitor read it up to %d: the "
                            "broker lost the group (replaced?); reading that partition from its start",
                            tp.topic, tp.partition, self.positions[key])
                tp.offset = OFFSET_BEGINNING
            else:
                tp.offset = self.positions[key]
        consumer.assign(partitions)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Snapshot and commit before partitions go (not while closing: run() has saved already)."""
        if self.changed and not self.closing:
            self.persist(consumer)
        consumer.unassign()

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
            batch, rejected = decode_predictions([value or b"" for value in map(Message.value, predictions)])
            self._reject(predictions, rejected)
            self.metrics.consumed.labels(self.topics.predictions).inc(len(predictions))
            if len(batch):
                results = self.monitor.update(batch)
        if labels:
            ids, ts, prices, rejected = decode_labels([value or b"" for value in map(Message.value, labels)])
            self._reject(labels, rejected)
            self.metrics.consumed.labels(self.topics.labels).inc(len(labels))
            if ids:
                self.monitor.update_labels(ids, ts, prices)
        self.metrics.count(results)
        for result in results:
            self._log_changes(result)
        started = time.perf_counter()
        latest = self.monitor.result()
        if latest is not None:
            self.metrics.evaluation_seconds.observe(time.perf_counter() - started)
        self.metrics.show(latest)
        self.metrics.count_concept(latest)
        self.metrics.follow(self.monitor.counters)

    def _log_changes(self, result: DriftResult) -> None:
        """Log each alarm when it starts and when it clears, with where in the stream."""
        alarms = {f.name: (f.detected, f"{f.test} {f.statistic:.4g}, threshold {f.threshold:.4g}") for f in result.features}
        if result.prediction_detected is not None:
            alarms["prediction"] = (result.prediction_detected, f"ks {result.prediction_drift:.4g}, threshold "
                                    f"{result.prediction_threshold:.4g}")
        if result.concept_detected is not None:
            alarms["concept"] = (result.concept_detected, f"MSE ratio {result.concept_drift:.4g}, threshold "
                                 f"{result.concept_threshold:.4g}")
        if self.config.time_based:
            where = f"window ending at {(result.pane + 1) * self.config.step_size} ms (event time)"
        else:
            where = f"window ending at record {(result.pane + 1) * self.config.step_size}"
        for name, (detected, detail) in alarms.items():
            if detected != self.flagged.get(name, False):
                self.flagged[name] = detected
                log.warning("drift %s: %s (%s) in the %s", "detected" if detected else "cleared", name, detail, where)

    def _reject(self, messages: list[Message], rejected: list[tuple[int, Rejection]]) -> None:
        for position, rejection in rejected:
            message = messages[position]
            self.metrics.invalid.labels(message.topic()).inc()
            if (message.topic(), rejection.reason) not in self.logged:  # once per topic and reason
                self.logged.add((message.topic(), rejection.reason))
                log.warning("skipping undecodable record (%s) at %s[%d]@%d: %s (further ones are only counted "
                            "in monitor_invalid_records_total)", rejection.reason, message.topic(),
                            message.partition(), message.offset(), rejection.detail)

    def persist(self, consumer: Consumer) -> bool:
        """Snapshot, wait for its ack, then commit the same offsets to the group; False if not delivered.

        A failed snapshot is not fatal: the previous one stays in force with its offsets (a restart
        would replay from there), and the next interval tries again with a new producer and, if
        the broker lost it, a re-created state topic. Once stopping has begun there is no next
        interval: nothing is prepared for one and no other try is made (the broker may be gone).
        """
        value = encode_state(self.config.group, self.config.window_state, self.positions, self.monitor.to_dict())
        try:
            write_state(self.producer, self.config.state_topic, self.config.group, value)
        except (RuntimeError, KafkaException, SystemError) as exc:  # not acknowledged, or the producer is dead
            if isinstance(exc, SystemError) and producer_failure(exc) is None:
                raise
            self.metrics.state_failures.inc()
            discard(self.producer)
            if self.stop.is_set():
                self.gave_up = True
                log.warning("last state snapshot not saved: %s", exc)
                return False
            log.warning("state snapshot not saved, trying again in %.0f s: %s", self.config.state_interval, exc)
            self.producer = resending_producer()
            try:
                create_state_topic(self.config.state_topic, timeout=10)
            except KafkaException as create_error:
                log.warning("cannot check the state topic yet: %s", create_error)
            return False
        self.changed = False
        self.metrics.state_writes.inc()
        self.metrics.state_bytes.set(len(value))
        # Asynchronous (see scorer.service.commit: a synchronous commit can block through a
        # rebalance). The snapshot, not the group, is what a restart resumes from; the committed
        # offsets serve lag tools and later assignments, so a failed commit is only logged.
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.positions.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("offset commit failed (state snapshot is delivered): %s", exc)
        return True


def run(config: MonitorConfig, reference: Reference, topics: Topics, registry: CollectorRegistry,
        stop: threading.Event) -> int:
    """Consume until `stop` is set; the batch in hand is finished, its state persisted and committed."""
    runner = _Runner(config, reference, topics, registry, stop)
    runner.restore()
    runner.metrics.show(runner.monitor.result())
    runner.metrics.follow(runner.monitor.counters)
    freeze_startup_heap()
    consumer = Consumer({**consumer_config(config.group), "on_commit": log_failed_commit})
    runner.producer = resending_producer()
    consumer.subscribe([topics.predictions, topics.labels], on_assign=runner.on_assign, on_revoke=runner.on_revoke)
    log.info("monitoring %s + %s (group %s, window %s step %s, %s thresholds, ert %g)", topics.predictions,
             topics.labels, config.group, config.window, config.step, config.thresholds, config.ert)
    last_write = time.monotonic()
    saved = True
    try:
        while not stop.is_set():
            polled = consumer.consume(num_messages=config.batch_size, timeout=config.batch_timeout)
            messages = [m for m in polled if m.error() is None or is_record(m)]
            if messages:
                runner.process(messages)
                runner.changed = True
            if runner.changed and time.monotonic() - last_write >= config.state_interval:
                runner.persist(consumer)
                last_write = time.monotonic()
        if runner.gave_up:  # a snapshot already failed after the stop was asked for: the broker is away
            saved = False
        elif runner.changed:
            saved = runner.persist(consumer)
    finally:
        runner.closing = True
        runner.producer.flush(10)
        consumer.close()
    if saved:
        log.info("monitor stopped: state saved at %d records seen", runner.monitor.counters["records"])
    else:
        log.warning("monitor stopped without saving its last state: a restart resumes from the previous snapshot")
    return 0
