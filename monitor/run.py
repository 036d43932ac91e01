"""`python -m monitor run`: the predictions and labels topics in, drift gauges, dead letters and state snapshots out.

One consumer reads both topics in batches (`Processor.process`):
    messages -> decoded predictions (PredictionBatch) + labels (ids, ts, labels) + rejections (`monitor.decode`)
    rejections -> the monitor DLQ (original bytes, reason headers), counted by topic and reason
    monitor.update(predictions) -> one DriftResult per closed pane (every `step`): counted
    monitor.update_labels(...)  -> joined errors feed the rolling MSE / error rate (the latest labelled records)
    monitor.result()            -> the latest window, labels included: the gauges
Until the window holds enough records (the window size for count windows, 100 records for time
windows) the drift gauges are NaN, never 0; concept-drift gauges wait for 100 labelled records.

State and offsets (`monitor.checkpoint`): every `state_interval` seconds (and on SIGTERM and
before partitions are revoked) the dead letters are acknowledged, then the monitor's state and the
consumer positions it covers go to the compacted state topic (key: the group); the group's offsets
are committed only after that snapshot is acknowledged. On start the newest snapshot for the group
is loaded and the consumer seeks to its offsets, so a crash replays exactly the records after the
snapshot into the snapshot's windows: no record counted twice, none skipped. One instance per
group: the windows are not shared between instances.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry

from contract.rules import Rejection
from contract.schema import Schema
from contract.service import close_consumer, freeze_startup_heap, is_record, log_failed_commit
from contract.settings import Topics, consumer_config, partition_counts
from monitor.alarms import AlarmLog
from monitor.baseline import Baseline, build_monitor
from monitor.checkpoint import Checkpoint, StateMismatch, matching
from monitor.config import GAUGE_REFRESH_SECONDS, MonitorConfig
from monitor.decode import Decoder
from monitor.drift import DriftMonitor
from monitor.join import ExpiryWatch
from monitor.metrics import GaugeLag, MonitorMetrics
from monitor.page import PageCache, PagePublisher
from monitor.snapshot import order_from_schema
from monitor.state import Offsets, read_latest

log = logging.getLogger(__name__)


def restore(
    monitor: DriftMonitor, source: Any, state_topic: str, group: str, window: dict
) -> Offsets:
    """Load the group's newest snapshot into `monitor` (and what `source` held); the positions it
    covers ({} when there is none). A snapshot of another window shape or reference is refused
    (StateMismatch)."""
    state = read_latest(state_topic, group)
    if state is None:
        log.info("no state for group %s in %s: starting with empty windows", group, state_topic)
        return {}
    matching(state, window, f"group {group}")
    try:
        monitor.load_dict(state["monitor"])
        source.load_dict(state["monitor"].get("source"))
    except ValueError as exc:
        raise StateMismatch(f"state of group {group}: {exc}") from None
    positions = dict(state["offsets"])
    counters = monitor.counters
    log.info(
        "restored state of group %s: %d records seen, %d pending joins, offsets %s",
        group,
        counters["records"],
        counters["pending"],
        {f"{t}[{p}]": o for (t, p), o in sorted(positions.items())},
    )
    return positions


class Rebalance:
    """The rebalance job: where the consumer resumes when partitions come, a snapshot before they go.

    `closing` is set before consumer.close(): the last snapshot is already written then."""

    def __init__(self, positions: Offsets, save) -> None:
        self.positions, self.save = (
            positions,
            save,
        )  # save(consumer) -> bool: the checkpoint, if anything changed
        self.closing = False

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
                committed = {
                    (tp.topic, tp.partition): tp.offset
                    for tp in consumer.committed(
                        [TopicPartition(tp.topic, tp.partition) for tp in held], timeout=10
                    )
                }
            except KafkaException as exc:
                log.warning(
                    "cannot read the group's committed offsets (%s): resuming at the monitor's own positions",
                    exc,
                )
        for tp in held:
            key = (tp.topic, tp.partition)
            if committed.get(key, 0) < 0 and self.positions[key] > 0:
                log.warning(
                    "the group has no committed offset for %s[%d] although the monitor read it up to %d: the "
                    "broker lost the group (replaced?); reading that partition from its start",
                    tp.topic,
                    tp.partition,
                    self.positions[key],
                )
                tp.offset = OFFSET_BEGINNING
            else:
                tp.offset = self.positions[key]
        consumer.assign(partitions)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Snapshot and commit before partitions go (not while closing: run() has saved already)."""
        if not self.closing:
            self.save(consumer)
        consumer.unassign()


class Processor:
    """The process job: one batch of messages into the windows, the join, the DLQ and the gauges."""

    def __init__(
        self,
        config: MonitorConfig,
        decoder: Decoder,
        monitor: DriftMonitor,
        metrics: MonitorMetrics,
        topics: Topics,
        positions: Offsets,
        checkpoint: Checkpoint,
        source: Any,
        page: PagePublisher | None = None,
    ) -> None:
        self.decoder, self.monitor, self.metrics, self.topics = decoder, monitor, metrics, topics
        self.source = source  # the predictions, in the log's format (monitor.sources)
        self.page = page  # the page's publisher (monitor.page), None for no page
        self.positions, self.checkpoint = positions, checkpoint
        self.alarms = AlarmLog(monitor.window.describe, decoder.schema.classification)
        self.logged: set[tuple[str, str]] = set()  # (topic, reason) already logged once
        self.lag = GaugeLag()
        self.stale = False  # records or labels came since the gauges were last set
        self.refreshed_at = 0.0
        self.expiry, self.label_ttl = ExpiryWatch(), config.label_ttl

    def process(self, messages: list[Message]) -> None:
        """One batch: predictions into the windows, then labels into the join; gauges refreshed."""
        # Per-message calls mapped in C; a partition's messages come in offset order, so the last
        # offset seen per (topic, partition) wins in the dict.
        topics = list(map(Message.topic, messages))
        self.positions.update(
            zip(
                zip(topics, map(Message.partition, messages)),
                [offset + 1 for offset in map(Message.offset, messages)],
            )
        )
        labels_topic = self.topics.labels
        if labels_topic not in topics:
            predictions, labels = messages, []
        else:
            predictions = [m for m, topic in zip(messages, topics) if topic != labels_topic]
            labels = [m for m, topic in zip(messages, topics) if topic == labels_topic]
        results = []
        if predictions:
            for topic in set(topics) - {labels_topic}:
                self.metrics.consume(topic, topics.count(topic))
            read = self.source.read(predictions)  # the log's format: see monitor.sources
            self._reject(read.rejected)
            if read.batch is not None:
                before = self.monitor.window.records
                results = self.monitor.update(read.batch)
                self.lag.add(self.monitor.window.pane_ids_of(read.batch, before), read.sent_ms)
        if labels:
            ids, ts, values, rejected = self.decoder.labels(
                [value or b"" for value in map(Message.value, labels)]
            )
            self._reject([(labels[position], why) for position, why in rejected])
            self.metrics.consume(labels_topic, len(labels))
            if ids:
                partitions = np.delete(
                    np.fromiter(map(Message.partition, labels), np.int64, len(labels)),
                    [position for position, _ in rejected],
                )
                self.monitor.update_labels(ids, ts, values, partitions)
        self.metrics.count(results)
        for result in results:
            self.alarms.follow(result)
        if self.page is not None:
            self.page.record(results)
        self.stale = True
        self.refresh(closed=bool(results))
        self.metrics.pane_closed(results, self.monitor.window.pane_end_ms, time.time() * 1000)
        counters = self.monitor.counters
        self.metrics.follow(counters)
        if (expired := self.expiry.check(counters, time.monotonic())) is not None:
            log.warning(
                "%s: their partner came more than --label-ttl (%s) later in event time than the other "
                "side's records, or not at all; see monitor_expired_joins_total",
                expired,
                self.label_ttl,
            )

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
            if self.page is not None:
                self.page.publish(self.monitor.evaluated)
        self.metrics.show(latest)
        for seconds in self.lag.shown(self.monitor.window.last_closed, time.time() * 1000):
            self.metrics.gauge_lag.observe(seconds)
        self.metrics.count_concept(latest)

    def _reject(self, rejected: list[tuple[Message, Rejection]]) -> None:
        """Refused records to the monitor DLQ, counted by topic and reason, logged once per topic and reason."""
        for message, rejection in rejected:
            self.checkpoint.dead_letter(message, rejection)
            self.metrics.reject(message.topic(), rejection.reason)
            if (message.topic(), rejection.reason) not in self.logged:
                self.logged.add((message.topic(), rejection.reason))
                log.warning(
                    "refused record (%s) at %s[%d]@%d sent to %s: %s (further ones are only counted in "
                    "monitor_invalid_records_total)",
                    rejection.reason,
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    self.topics.monitor_dlq,
                    rejection.detail,
                )


def run(
    config: MonitorConfig,
    schema: Schema,
    baseline: Baseline,
    topics: Topics,
    registry: CollectorRegistry,
    stop: threading.Event,
    source: Any,
    page: PageCache | None = None,
) -> int:
    """Consume until `stop` is set; the batch in hand is finished, its state persisted and committed.
    `source`: the predictions in the log's format (`monitor.sources.prediction_source`); `page`: the
    cache the page is served from (published to after each evaluation), None for no page."""
    reference = baseline.reference
    monitor = build_monitor(config, baseline)
    # The joins' clocks wait for every partition of each side (see monitor.join, monitor.pairing).
    counts = partition_counts([*source.topics, topics.labels])
    source.expect_partitions(counts)
    monitor.join.expect_partitions(source.partitions, counts[topics.labels])
    metrics = MonitorMetrics(
        registry,
        reference,
        {**{t: t for t in source.topics}, "labels": topics.labels},
        model=schema.name,
        estimator=baseline.estimator,
        reasons={t: source.reasons for t in source.topics},
        page_url=config.public_url,
    )
    publisher = (
        None
        if page is None
        else PagePublisher(
            page,
            schema.name,
            monitor.window.layout,
            monitor.window.describe,
            order_from_schema(schema),
        )
    )
    positions = restore(monitor, source, topics.monitor_state, config.group, config.window_state)
    if monitor.window.estimates_dropped:
        log.info(
            "the restored panes were estimated by another performance estimator (or none): the estimate "
            "covers the records read from here on until they leave the window"
        )
    restored = monitor.result()
    metrics.show(restored)
    if restored is not None and publisher is not None:
        publisher.publish(monitor.evaluated)
    metrics.follow(monitor.counters)
    decoder = Decoder(schema)
    freeze_startup_heap()
    checkpoint = Checkpoint(
        state_topic=topics.monitor_state,
        dlq_topic=topics.monitor_dlq,
        partitions=config.partitions,
        interval=config.state_interval,
        stop=stop,
        metrics=metrics,
    )
    processor = Processor(
        config, decoder, monitor, metrics, topics, positions, checkpoint, source, publisher
    )

    def save(consumer: Consumer) -> bool:
        """The checkpoint (see monitor.checkpoint) of the windows, what the source holds (a paired
        format's pending halves) and the positions they cover, if they changed."""
        if not checkpoint.changed:
            return True
        state = {**monitor.to_dict(), "source": source.to_dict()}
        return checkpoint.save(
            [(config.group, config.window_state, positions, state)], consumer, positions
        )

    rebalance = Rebalance(positions, save)
    consumer = Consumer({**consumer_config(config.group), "on_commit": log_failed_commit})
    consumer.subscribe(
        [*source.topics, topics.labels],
        on_assign=rebalance.on_assign,
        on_revoke=rebalance.on_revoke,
    )
    log.info(
        "monitoring %s + %s for model %s (group %s, window %s step %s, %s thresholds, ert %g; refused records "
        "to %s)",
        " + ".join(source.topics),
        topics.labels,
        schema.name,
        config.group,
        config.window,
        config.step,
        config.thresholds,
        config.ert,
        topics.monitor_dlq,
    )
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
                checkpoint.changed = True
            else:
                processor.refresh()
            if checkpoint.changed and time.monotonic() - last_write >= config.state_interval:
                save(consumer)
                last_write = time.monotonic()
        if (
            checkpoint.gave_up
        ):  # a snapshot already failed after the stop was asked for: the broker is away
            saved = False
        else:
            saved = save(consumer)
    finally:
        rebalance.closing = True
        checkpoint.close()
        close_consumer(consumer, broker_away=not saved)
    if saved:
        log.info("monitor stopped: state saved at %d records seen", monitor.counters["records"])
    else:
        log.warning(
            "monitor stopped without saving its last state: a restart resumes from the previous snapshot"
        )
    return 0
