"""`python -m monitor evaluate`: the one process that merges the workers' panes and exports the gauges.

It reads the pane topic (`monitor.worker`), keeps the newest report of every (partition, pane)
(`monitor.panes.PaneMerger`), evaluates the window ending at pane q once every partition of the
predictions topic is past q or `--grace` has passed since the first one was, runs the same
calibrated tests as `monitor run` (`monitor.drift.evaluate_all`) and exports the same gauges.
Reports that come after their window was evaluated are merged into the later windows and counted
(`monitor_late_pane_records_total`); reports whose pane left every window are counted as dropped.

State: every `state_interval` seconds the merger and its position in the pane topic go to the state
topic (key `<group>/evaluator`); a restarted evaluator loads them and reads on from there, so it
evaluates the same windows (a report read twice replaces itself).
"""
from __future__ import annotations

import logging
import threading
import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from contract.delivery import discard, resending_producer
from contract.rules import NOT_OBJECT
from contract.schema import Schema
from contract.service import collect_batch, freeze_startup_heap, is_record
from contract.settings import Topics, reader_config
from monitor.drift import evaluate_all
from monitor.metrics import MonitorMetrics
from monitor.panes import PaneMerger, PaneReport
from monitor.persist import StateMismatch
from monitor.service import GAUGE_REFRESH_SECONDS, AlarmLog, Baseline, MonitorConfig, build_monitor
from monitor.state import encode_state, read_latest, write_state
from monitor.worker import panes_topic

log = logging.getLogger(__name__)


class MergeCounters:
    """The merger's counts as Prometheus counters (advanced by their growth, restored totals as base)."""

    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        M = ["model"]
        self.counters = {
            "stale_reports": Counter("monitor_stale_pane_reports", "Pane reports older than one already taken "
                                     "(redelivered, or from a partition's former owner)", M, registry=registry).labels(model),
            "late_panes": Counter("monitor_late_panes", "Pane reports with new predictions after their window was "
                                  "evaluated (merged into the later windows)", M, registry=registry).labels(model),
            "late_records": Counter("monitor_late_pane_records", "Predictions that reached the evaluator after the "
                                    "window ending at their pane was evaluated", M, registry=registry).labels(model),
            "dropped_records": Counter("monitor_dropped_pane_records", "Predictions whose pane report came after the "
                                       "pane left every window", M, registry=registry).labels(model),
        }
        self.seen: dict[str, int] | None = None

    def follow(self, counts: dict[str, int]) -> None:
        if self.seen is not None:
            for name, counter in self.counters.items():
                counter.inc(counts[name] - self.seen[name])
        self.seen = dict(counts)


def run_evaluator(config: MonitorConfig, schema: Schema, baseline: Baseline, topics: Topics, partitions: int,
                  grace_s: float, registry: CollectorRegistry, stop: threading.Event) -> int:
    """Merge and evaluate until `stop`; the state is saved before leaving."""
    reference = baseline.reference
    monitor = build_monitor(config, reference, baseline.estimator)  # its layout and calibration: the single monitor's
    layout, calibration = monitor.window.layout, monitor.calibration
    merger = PaneMerger(layout, partitions, monitor.window.panes_per_window, grace_s)
    metrics = MonitorMetrics(registry, reference, {"panes": panes_topic(topics)}, model=schema.name,
                             estimator=baseline.estimator)
    merge_counters = MergeCounters(registry, schema.name)
    alarms = AlarmLog(config, reference.classification)
    key, topic = f"{config.group}/evaluator", panes_topic(topics)
    state = read_latest(topics.monitor_state, key)
    position = OFFSET_BEGINNING
    if state is not None:
        if state["window"] != config.window_state:
            raise StateMismatch(f"the evaluator state of group {config.group} was written for window "
                                f"{state['window']}, not {config.window_state}: use the same --window/--step or a new --group")
        merger.load_dict(state["monitor"], time.monotonic())
        position = dict(state["offsets"]).get((topic, 0), OFFSET_BEGINNING)
        log.info("restored the evaluator of group %s: last window ending at pane %s, reading %s from %s",
                 config.group, merger.evaluated, topic, position)
    merge_counters.follow(merger.counters)
    # One evaluator per group: it assigns the pane topic's partition itself, no group join.
    consumer = Consumer(reader_config(f"{config.group}-evaluator"))
    consumer.assign([TopicPartition(topic, 0, position)])
    producer = resending_producer()
    freeze_startup_heap()
    log.info("evaluating %s for model %s (group %s, %d partitions, grace %.1f s, window %s step %s)", topic,
             schema.name, config.group, partitions, grace_s, config.window, config.step)

    def save() -> bool:
        nonlocal producer
        offsets = {(topic, 0): position} if position != OFFSET_BEGINNING else {}
        try:
            write_state(producer, topics.monitor_state, key, encode_state(key, config.window_state, offsets, merger.to_dict()))
        except (RuntimeError, KafkaException) as exc:
            log.warning("evaluator state not saved, trying again: %s", exc)
            metrics.state_failures.inc()
            discard(producer)
            producer = resending_producer()
            return False
        metrics.state_writes.inc()
        return True

    last_save, changed = time.monotonic(), False
    stale, shown_at = True, 0.0  # reports came since the gauges were set; when they were
    try:
        while not stop.is_set():
            now = time.monotonic()
            messages = [m for m in collect_batch(consumer, config.batch_size, config.batch_timeout)
                        if m.error() is None or is_record(m)]
            for message in messages:
                position, changed = message.offset() + 1, True
                try:
                    report = PaneReport.from_dict(orjson.loads(message.value() or b""))
                except (ValueError, KeyError, TypeError) as exc:  # not a worker's report: skip it, never stall on it
                    metrics.reject(topic, NOT_OBJECT)
                    log.warning("skipped %s[0]@%d, not a pane report: %s", topic, message.offset(), exc)
                    continue
                merger.add(report, now)
            metrics.consume(topic, len(messages))
            due = merger.ready(time.monotonic())
            results = evaluate_all(layout, calibration, [merger.evaluation(q, calibration.recent) for q in due],
                                   monitor.min_records, monitor.min_joined)
            metrics.count(results)
            metrics.pane_closed(results, config.step_size, time.time() * 1000)
            for result in results:
                alarms.follow(result)
            stale = stale or bool(messages)
            # the latest window again (reports of its panes keep coming as labels join): at once when a
            # window was due, otherwise at most every GAUGE_REFRESH_SECONDS, as `monitor run` does
            if merger.evaluated is not None and stale and (due or time.monotonic() - shown_at >= GAUGE_REFRESH_SECONDS):
                latest = evaluate_all(layout, calibration, [merger.evaluation(merger.evaluated, calibration.recent)],
                                      monitor.min_records, monitor.min_joined)[0]
                metrics.show(latest)
                metrics.count_concept(latest)
                stale, shown_at = False, time.monotonic()
            merge_counters.follow(merger.counters)
            if changed and time.monotonic() - last_save >= config.state_interval:
                changed = not save()
                last_save = time.monotonic()
        if changed:
            save()
    finally:
        producer.flush(10)
        consumer.close()
    log.info("evaluator stopped at the window ending at pane %s", merger.evaluated)
    return 0
