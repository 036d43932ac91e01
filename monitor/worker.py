"""`python -m monitor worker`: one of several processes sharing the predictions and labels partitions.

Kafka does the distribution: the workers are one consumer group, the group's range assignment gives
each worker the same partition numbers of both topics (they must be co-partitioned: same partition
count, keyed by record id as the scorer and simulator key them, so a prediction and its label meet
on one worker), and partitions move to the others when a worker leaves or dies.

Per partition the worker keeps event-time panes and the label join (`monitor.panes.PartitionPanes`)
and publishes each closed pane, whole, to the pane topic (`<model>.monitor-panes`, one partition,
key = the input partition) whenever it changed; `python -m monitor evaluate` merges them.

Nothing lost, nothing counted twice: every `state_interval` seconds the worker waits for its pane
reports and dead letters to be acknowledged, then writes each partition's state with the positions
it covers to the state topic (key `<group>/partition/<p>`), then commits those offsets. The next
owner of a partition loads that state, saves it under a new epoch before reading a record, seeks to
its positions and replays the rest: its reports replace the dead owner's (see `monitor.panes`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from contract.rules import REJECTION_REASONS
from contract.schema import Schema
from contract.service import close_consumer, freeze_startup_heap, is_record, log_failed_commit
from contract.settings import Topics, consumer_config
from monitor.baseline import Baseline
from monitor.checkpoint import Checkpoint, matching
from monitor.config import MonitorConfig
from monitor.decode import Decoder
from monitor.join import ExpiryWatch
from monitor.panes import PartitionPanes
from monitor.state import Offsets, read_latest_of

log = logging.getLogger(__name__)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry, model: str, topics: Topics) -> None:
        M = ["model"]
        self.model = model
        self.consumed = Counter(
            "monitor_records_consumed",
            "Messages consumed, by topic",
            M + ["topic"],
            registry=registry,
        )
        self.invalid = Counter(
            "monitor_invalid_records",
            "Messages refused, by topic and reason (sent to the monitor DLQ)",
            M + ["topic", "reason"],
            registry=registry,
        )
        self.reports = Counter(
            "monitor_pane_reports", "Pane reports published to the pane topic", M, registry=registry
        ).labels(model)
        self.state_writes = Counter(
            "monitor_state_writes",
            "Partition state snapshots delivered (offsets committed after)",
            M,
            registry=registry,
        ).labels(model)
        self.state_failures = Counter(
            "monitor_state_write_failures",
            "Snapshots or reports the broker did not take (tried again)",
            M,
            registry=registry,
        ).labels(model)
        self.state_bytes = Gauge(
            "monitor_state_bytes",
            "Size of the last partition state snapshot (compressed)",
            M,
            registry=registry,
        ).labels(model)
        self.partitions = Gauge(
            "monitor_worker_partitions", "Input partitions this worker owns", M, registry=registry
        ).labels(model)
        for topic in (topics.predictions, topics.labels):
            self.consumed.labels(model, topic)
            for reason in REJECTION_REASONS:
                self.invalid.labels(model, topic, reason)


class Worker:
    """The worker's jobs: partitions in and out (`on_assign` / `on_revoke`), batches into panes
    (`process`), pane reports out (`publish`), state and offsets saved (`save`)."""

    def __init__(
        self,
        config: MonitorConfig,
        schema: Schema,
        baseline: Baseline,
        topics: Topics,
        metrics: WorkerMetrics,
        stop: threading.Event,
        source: Any,
    ) -> None:
        self.config, self.topics, self.metrics, self.stop = config, topics, metrics, stop
        self.source = (
            source  # the predictions, in the log's format (a shareable monitor.sources source)
        )
        self.reference, self.estimator = baseline.reference, baseline.estimator
        self.decoder = Decoder(schema)
        self.owned: dict[int, PartitionPanes] = {}
        self.positions: Offsets = {}  # (topic, partition) -> next offset, of owned partitions
        # dead letters, pane reports and partition states: acknowledged, then saved, then committed
        self.checkpoint = Checkpoint(
            state_topic=topics.monitor_state,
            dlq_topic=topics.monitor_dlq,
            partitions=config.partitions,
            interval=config.state_interval,
            stop=stop,
            metrics=metrics,
            output_topics=[(topics.monitor_panes, 1)],
        )
        self.unsaved: set[int] = set()  # partitions that read records since their last snapshot
        self.closing = False
        self.failure: BaseException | None = (
            None  # raised in a rebalance callback: re-raised by the loop
        )
        self.expiry = ExpiryWatch()

    def key(self, partition: int) -> str:
        return f"{self.config.group}/partition/{partition}"

    # -- partitions in and out ----------------------------------------------------------------------
    def guarded(self, callback):
        """librdkafka cannot carry an exception out of a rebalance callback: keep it for the loop."""

        def call(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            try:
                callback(consumer, partitions)
            except Exception as exc:  # noqa: BLE001 - re-raised by run_worker
                self.failure = exc

        return call

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        new = sorted({tp.partition for tp in partitions} - set(self.owned))
        states = (
            read_latest_of(self.topics.monitor_state, [self.key(p) for p in new]) if new else {}
        )
        for p in new:
            panes = PartitionPanes(
                p,
                self.reference,
                self.config.window_size,
                self.config.step_size,
                self.config.label_ttl_ms,
                estimator=self.estimator,
            )
            state = states[self.key(p)]
            if state is not None:
                matching(
                    state, self.config.window_state, f"partition {p} of group {self.config.group}"
                )
                panes.load_dict(state["monitor"])
                self.positions.update(state["offsets"])
            panes.take_ownership()
            self.owned[p] = panes
        if new and not self.save(new):  # the new epochs are saved before a record is read
            raise RuntimeError(
                f"cannot save the state of partitions {new}: the broker did not take it"
            )
        for tp in partitions:
            if (tp.topic, tp.partition) in self.positions:
                tp.offset = self.positions[(tp.topic, tp.partition)]
        consumer.assign(partitions)
        self.metrics.partitions.set(len(self.owned))
        log.info("took partitions %s (epochs %s)", new, [self.owned[p].epoch for p in new])

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = sorted({tp.partition for tp in partitions} & set(self.owned))
        if gone and not self.closing:
            self.publish(gone)
            self.save(gone)
        for p in gone:
            del self.owned[p]
        self.positions = {k: o for k, o in self.positions.items() if k[1] in self.owned}
        consumer.unassign()
        self.metrics.partitions.set(len(self.owned))

    # -- records in, reports out --------------------------------------------------------------------
    def process(self, messages: list[Message]) -> None:
        by_partition: dict[tuple[str, int], list[Message]] = {}
        for message in messages:
            by_partition.setdefault((message.topic(), message.partition()), []).append(message)
        touched = set()
        for (topic, p), group in by_partition.items():
            panes = self.owned.get(p)
            if panes is None:  # revoked while the batch was in hand: its next owner reads it again
                continue
            self.positions[(topic, p)] = group[-1].offset() + 1
            touched.add(p)
            self.unsaved.add(p)
            self.metrics.consumed.labels(self.metrics.model, topic).inc(len(group))
            if topic == self.topics.labels:
                ids, ts, labels, refused = self.decoder.labels([m.value() or b"" for m in group])
                if ids:
                    panes.add_labels(ids, ts, labels)
                rejected = [(group[position], why) for position, why in refused]
            else:
                read = self.source.read(group)  # the log's format: see monitor.sources
                if read.batch is not None:
                    panes.add_predictions(read.batch)
                rejected = read.rejected
            for message, rejection in rejected:
                self.checkpoint.dead_letter(message, rejection)
                self.metrics.invalid.labels(self.metrics.model, topic, rejection.reason).inc()
        self.publish(touched)
        totals = {
            key: sum(panes.counters[key] for panes in self.owned.values())
            for key in ("joined", "expired_predictions", "expired_labels")
        }
        if (expired := self.expiry.check(totals, time.monotonic())) is not None:
            log.warning(
                "%s on this worker's partitions: their partner came more than --label-ttl (%s) later in event "
                "time than the other side's records, or not at all",
                expired,
                self.config.label_ttl,
            )

    def publish(self, partitions) -> None:
        for p in partitions:
            for report in self.owned[p].publishable():
                self.checkpoint.output(
                    self.topics.monitor_panes, orjson.dumps(report.to_dict()), str(p)
                )
                self.metrics.reports.inc()
        self.checkpoint.producer.poll(0)

    # -- state --------------------------------------------------------------------------------------
    def save(self, partitions=None, consumer: Consumer | None = None) -> bool:
        """The checkpoint (monitor.checkpoint) of these partitions (default: those that read records
        since their last snapshot): reports and dead letters acknowledged, each partition's state,
        then (with `consumer`) the positions committed.

        False when the broker did not take something: the previous snapshots stay in force, and
        every live pane of these partitions is reported again (replacing, not adding)."""
        partitions = sorted(self.unsaved & set(self.owned) if partitions is None else partitions)
        states = [
            (
                self.key(p),
                self.config.window_state,
                {k: o for k, o in self.positions.items() if k[1] == p},
                self.owned[p].to_dict(),
            )
            for p in partitions
        ]
        if not self.checkpoint.save(states, consumer, self.positions):
            for p in partitions:
                self.owned[p].changed |= set(self.owned[p].window.panes)
            return False
        self.unsaved.difference_update(partitions)
        return True


def run_worker(
    config: MonitorConfig,
    schema: Schema,
    baseline: Baseline,
    topics: Topics,
    registry: CollectorRegistry,
    stop: threading.Event,
    source: Any,
) -> int:
    """Consume this worker's share until `stop`; publish, save and commit before leaving the group.
    `source`: the predictions in the log's format (`monitor.sources.prediction_source`, shareable)."""
    metrics = WorkerMetrics(registry, schema.name, topics)
    worker = Worker(config, schema, baseline, topics, metrics, stop, source)
    freeze_startup_heap()
    # range: partition p of both topics goes to the same member (the join needs both sides).
    consumer = Consumer(
        {**consumer_config(config.group, same_partitions=True), "on_commit": log_failed_commit}
    )
    consumer.subscribe(
        [*source.topics, topics.labels],
        on_assign=worker.guarded(worker.on_assign),
        on_revoke=worker.guarded(worker.on_revoke),
    )
    log.info(
        "worker of group %s: %s + %s -> %s (window %s step %s)",
        config.group,
        topics.predictions,
        topics.labels,
        topics.monitor_panes,
        config.window,
        config.step,
    )
    last_save = time.monotonic()
    saved = True
    try:
        while not stop.is_set():
            # Up to batch_size messages or batch_timeout (50 ms): at a high rate full batches come at once,
            # at a low one a batch every 50 ms, well inside the gauges' 1 s; taking whatever is waiting
            # (as the scorer does) would pay every per-batch cost for a few records at a time.
            polled = consumer.consume(num_messages=config.batch_size, timeout=config.batch_timeout)
            if worker.failure is not None:
                raise worker.failure
            messages = [m for m in polled if m.error() is None or is_record(m)]
            if messages:
                worker.process(messages)
            if worker.unsaved and time.monotonic() - last_save >= config.state_interval:
                worker.save(consumer=consumer)
                last_save = time.monotonic()
        worker.publish(list(worker.owned))
        saved = worker.save(consumer=consumer)
    finally:
        worker.closing = True
        worker.checkpoint.close()
        close_consumer(consumer, broker_away=not saved)
    log.info("worker stopped")
    return 0
