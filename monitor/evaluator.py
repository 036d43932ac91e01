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
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from contract.rules import NOT_OBJECT
from contract.schema import Schema
from contract.service import Totals, collect_batch, freeze_startup_heap, is_record
from contract.settings import Topics, reader_config
from monitor.alarms import AlarmLog
from monitor.baseline import Baseline, build_evaluation
from monitor.checkpoint import Checkpoint, matching
from monitor.config import GAUGE_REFRESH_SECONDS, MonitorConfig
from monitor.drift import MIN_JOINED, Evaluated, evaluate_all
from monitor.metrics import MonitorMetrics
from monitor.page import PageCache, PagePublisher
from monitor.panes import PaneMerger, PaneReport
from monitor.snapshot import order_from_schema
from monitor.state import read_latest

log = logging.getLogger(__name__)

# The merger's counts (PaneMerger.counters) as counters of this process.
MERGE_COUNTERS = [
    (
        "monitor_stale_pane_reports",
        "Pane reports older than one already taken (redelivered, or from a partition's "
        "former owner)",
        "stale_reports",
    ),
    (
        "monitor_late_panes",
        "Pane reports with new predictions after their window was evaluated (merged into the "
        "later windows)",
        "late_panes",
    ),
    (
        "monitor_late_pane_records",
        "Predictions that reached the evaluator after the window ending at their pane was "
        "evaluated",
        "late_records",
    ),
    (
        "monitor_dropped_pane_records",
        "Predictions whose pane report came after the pane left every window",
        "dropped_records",
    ),
]


def run_evaluator(
    config: MonitorConfig,
    schema: Schema,
    baseline: Baseline,
    topics: Topics,
    partitions: int,
    registry: CollectorRegistry,
    stop: threading.Event,
    page: PageCache | None = None,
) -> int:
    """Merge and evaluate until `stop`; the state is saved before leaving. `page`: the cache the
    page is served from (published to after each evaluation), None for no page."""
    reference, grace_s = baseline.reference, config.grace_s
    window, calibration = build_evaluation(
        config, baseline
    )  # the single monitor's window shape and thresholds
    layout, min_records = window.layout, window.min_records
    merger = PaneMerger(layout, partitions, window.panes_per_window, grace_s)
    metrics = MonitorMetrics(
        registry,
        reference,
        {"panes": topics.monitor_panes},
        model=schema.name,
        estimator=baseline.estimator,
        page_url=config.public_url,
    )
    merge_counters = Totals(
        registry, lambda: merger.counters, MERGE_COUNTERS, {"model": schema.name}
    )
    alarms = AlarmLog(window.describe, reference.classification)
    publisher = (
        None
        if page is None
        else PagePublisher(page, schema.name, layout, window.describe, order_from_schema(schema))
    )
    key, topic = f"{config.group}/evaluator", topics.monitor_panes
    state = read_latest(topics.monitor_state, key)
    position = OFFSET_BEGINNING
    if state is not None:
        matching(state, config.window_state, f"the evaluator of group {config.group}")
        merger.load_dict(state["monitor"], time.monotonic())
        position = dict(state["offsets"]).get((topic, 0), OFFSET_BEGINNING)
        log.info(
            "restored the evaluator of group %s: last window ending at pane %s, reading %s from %s",
            config.group,
            merger.evaluated,
            topic,
            position,
        )
    merge_counters.count_from_here()
    # One evaluator per group: it assigns the pane topic's partition itself, no group join.
    consumer = Consumer(reader_config(f"{config.group}-evaluator"))
    consumer.assign([TopicPartition(topic, 0, position)])
    # The evaluator produces nothing but its state; its position in the pane topic is in that state.
    checkpoint = Checkpoint(
        state_topic=topics.monitor_state,
        dlq_topic=topics.monitor_dlq,
        partitions=config.partitions,
        interval=config.state_interval,
        stop=stop,
        metrics=metrics,
    )
    freeze_startup_heap()
    log.info(
        "evaluating %s for model %s (group %s, %d partitions, grace %.1f s, window %s step %s)",
        topic,
        schema.name,
        config.group,
        partitions,
        grace_s,
        config.window,
        config.step,
    )

    def save() -> bool:
        offsets = {(topic, 0): position} if position != OFFSET_BEGINNING else {}
        return checkpoint.save([(key, config.window_state, offsets, merger.to_dict())])

    last_save, changed = time.monotonic(), False
    stale, shown_at = True, 0.0  # reports came since the gauges were set; when they were
    try:
        while not stop.is_set():
            now = time.monotonic()
            messages = [
                m
                for m in collect_batch(consumer, config.batch_size, config.batch_timeout)
                if m.error() is None or is_record(m)
            ]
            for message in messages:
                position, changed = message.offset() + 1, True
                try:
                    report = PaneReport.from_dict(orjson.loads(message.value() or b""))
                except (
                    ValueError,
                    KeyError,
                    TypeError,
                ) as exc:  # not a worker's report: skip it, never stall on it
                    metrics.reject(topic, NOT_OBJECT)
                    log.warning(
                        "skipped %s[0]@%d, not a pane report: %s", topic, message.offset(), exc
                    )
                    continue
                merger.add(report, now)
            metrics.consume(topic, len(messages))
            due = merger.ready(time.monotonic())
            results = evaluate_all(
                layout,
                calibration,
                [merger.evaluation(q, calibration.recent) for q in due],
                min_records,
                MIN_JOINED,
            )
            metrics.count(results)
            metrics.pane_closed(results, window.pane_end_ms, time.time() * 1000)
            for result in results:
                alarms.follow(result)
            if publisher is not None:
                publisher.record(results)
            stale = stale or bool(messages)
            # the latest window again (reports of its panes keep coming as labels join): at once when a
            # window was due, otherwise at most every GAUGE_REFRESH_SECONDS, as `monitor run` does
            if (
                merger.evaluated is not None
                and stale
                and (due or time.monotonic() - shown_at >= GAUGE_REFRESH_SECONDS)
            ):
                evaluation = merger.evaluation(merger.evaluated, calibration.recent)
                latest = evaluate_all(layout, calibration, [evaluation], min_records, MIN_JOINED)[0]
                metrics.show(latest)
                if publisher is not None:
                    publisher.publish(Evaluated(latest, evaluation.window, evaluation.recent))
                metrics.count_concept(latest)
                stale, shown_at = False, time.monotonic()
            if changed and time.monotonic() - last_save >= config.state_interval:
                changed = not save()
                last_save = time.monotonic()
        if changed:
            save()
    finally:
        checkpoint.close()
        consumer.close()
    log.info("evaluator stopped at the window ending at pane %s", merger.evaluated)
    return 0
