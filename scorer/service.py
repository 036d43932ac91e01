"""`python -m scorer run`: the features topic in, predictions and dead letters out.

Delivery guarantee: at-least-once. A batch's offsets are stored and committed only after every
prediction and DLQ message of that batch is acknowledged by the broker, so a crash replays at
most the uncommitted batch (duplicates, never gaps). Predictions are keyed by record id, so a
replayed record lands in the same partition as its first prediction.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contract.delivery import DeliveryReport, produce
from contract.records import REJECTION_REASONS
from contract.settings import Topics, consumer_config, producer_config
from scorer.model import LoadedModel
from scorer.scoring import DecodedBatch, ScoredBatch, decode_batch, finish_batch, predict_decoded

log = logging.getLogger(__name__)

LATENCY_SAMPLES_PER_BATCH = 100


@dataclass(frozen=True)
class ScorerConfig:
    group: str = "scorer"
    model_dir: Path = Path("artifacts")
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8001
    batch_size: int = 5000
    batch_timeout: float = 0.5  # longest time spent filling one batch while records keep arriving

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        if self.batch_timeout <= 0:
            raise ValueError("--batch-timeout must be > 0 seconds")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("--metrics-port must be 0-65535 (0 disables the metrics server)")


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter("scorer_records_consumed_total", "Feature messages consumed", registry=registry)
        self.predictions = Counter("scorer_predictions_total", "Predictions delivered to the predictions topic", registry=registry)
        self.invalid = Counter("scorer_invalid_records_total", "Records sent to the DLQ, by reason", ["reason"], registry=registry)
        self.unseen = Counter("scorer_unseen_category_total", "Scored records with a category unseen in training",
                              ["feature"], registry=registry)
        self.batch_seconds = Histogram("scorer_batch_duration_seconds", "Decode, predict, deliver and commit one batch",
                                       registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.latency = Histogram("scorer_event_to_prediction_seconds", "Features message sent (its Kafka timestamp) to prediction delivered; up to 100 records sampled per batch",
                                 registry=registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.model = Gauge("scorer_model_info", "The model being served", ["model_version"], registry=registry)
        for reason in REJECTION_REASONS:  # export zeros so rate() works before the first bad record
            self.invalid.labels(reason)


def _check(message: Message) -> bool:
    """True for a record; False for a benign event; raises on an error the service cannot survive."""
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    if error.fatal() or not error.retriable():
        raise KafkaException(error)
    log.warning("consumer: %s", error)
    return False


def deliver(batch: ScoredBatch, messages: list[Message], producer: Producer, topics: Topics) -> DeliveryReport:
    """Produce a scored batch (predictions + DLQ with the original bytes) and wait for acks."""
    report = DeliveryReport()
    for key, value in batch.predictions:
        produce(producer, topics.predictions, value, key, report)
    for position, rejection in batch.rejections:
        source = messages[position]
        headers = [("reason", rejection.reason.encode()), ("detail", rejection.detail.encode()[:1000]),
                   ("source_topic", source.topic().encode()), ("source_partition", str(source.partition()).encode()),
                   ("source_offset", str(source.offset()).encode())]
        produce(producer, topics.dlq, source.value() or b"", source.key(), report, headers=headers)
    producer.flush()
    return report


POLL_SLICE_SECONDS = 0.02


def collect_batch(consumer: Consumer, size: int, max_wait: float) -> list[Message]:
    """Up to `size` messages: as many as are ready, topping up while the broker keeps delivering.

    librdkafka's consume() waits for the full count or the timeout; in short slices a slow
    stream is scored within ~20 ms instead of waiting `max_wait` for a batch that never fills.
    """
    batch: list[Message] = []
    deadline = time.monotonic() + max_wait
    while len(batch) < size:
        wanted = size - len(batch)
        got = consumer.consume(num_messages=wanted, timeout=POLL_SLICE_SECONDS)
        batch.extend(got)
        if (batch and len(got) < wanted) or time.monotonic() >= deadline:
            break
    return batch


def commit(consumer: Consumer, messages: list[Message]) -> None:
    """Commit past the last message of each partition in the batch (offsets are next-to-read)."""
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        last[(message.topic(), message.partition())] = message.offset()
    consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


@dataclass
class _InFlight:
    """A batch whose prediction is running on the predictor thread."""

    messages: list[Message]
    decoded: DecodedBatch
    predictions: Future | None = None
    started: float = 0.0


class _Scorer:
    """The run loop's state: at most one batch in flight between `predict` and commit.

    While the model predicts batch N on the predictor thread (the forest's tree traversal
    releases the GIL), the main thread delivers and commits batch N-1 and decodes batch N+1.
    Batch N's outputs are produced only after batch N-1 is committed, so a crash still
    duplicates at most one batch.
    """

    def __init__(self, config: ScorerConfig, model: LoadedModel, topics: Topics, metrics: ScorerMetrics,
                 consumer: Consumer, producer: Producer, predictor: ThreadPoolExecutor) -> None:
        self.config, self.model, self.topics, self.metrics = config, model, topics, metrics
        self.consumer, self.producer, self.predictor = consumer, producer, predictor
        self.in_flight: _InFlight | None = None

    def start(self, messages: list[Message]) -> None:
        """Decode a new batch and set its prediction going, finishing the one before it."""
        batch = _InFlight(messages, decode_batch([m.value() for m in messages]), started=time.perf_counter())
        previous, self.in_flight = self.in_flight, None
        if previous is not None:
            previous.predictions.result()  # one prediction at a time on the predictor thread
        batch.predictions = self.predictor.submit(predict_decoded, batch.decoded, self.model.predict)
        if previous is not None:
            self.finish(previous)
        self.in_flight = batch

    def finish_in_flight(self) -> None:
        if self.in_flight is not None:
            batch, self.in_flight = self.in_flight, None
            self.finish(batch)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called inside consume() on a rebalance: commit what is in hand while we still own it.
        self.finish_in_flight()

    def finish(self, batch: _InFlight) -> None:
        """Deliver a batch's predictions and dead letters, then commit its offsets."""
        scored = finish_batch(batch.decoded, batch.predictions.result(), self.model.version, int(time.time() * 1000))
        report = deliver(scored, batch.messages, self.producer, self.topics)
        if report.failed:
            # Not committing makes the batch replay after restart; stopping loudly beats
            # running on while outputs are lost.
            raise RuntimeError(f"{report.failed} outputs not delivered ({report.last_error}); offsets not committed")
        commit(self.consumer, batch.messages)
        self.record(batch, scored)

    def record(self, batch: _InFlight, scored: ScoredBatch) -> None:
        metrics, messages = self.metrics, batch.messages
        delivered_at = time.time()
        metrics.consumed.inc(len(messages))
        metrics.predictions.inc(len(scored.predictions))
        for _, rejection in scored.rejections:
            metrics.invalid.labels(rejection.reason).inc()
        for feature, count in scored.unseen.items():
            metrics.unseen.labels(feature).inc(count)
        # The features message's Kafka timestamp is when its producer sent it. Observing
        # every record costs as much as decoding it: the histogram takes an even sample.
        sample = messages[:: max(1, len(messages) // LATENCY_SAMPLES_PER_BATCH)]
        sent_ms = np.array([m.timestamp()[1] for m in sample], dtype=float)
        for lag in delivered_at - sent_ms[sent_ms > 0] / 1000.0:
            metrics.latency.observe(lag)
        metrics.batch_seconds.observe(time.perf_counter() - batch.started)


def run(config: ScorerConfig, model: LoadedModel, topics: Topics, registry: CollectorRegistry,
        stop: threading.Event) -> int:
    """Consume until `stop` is set; the batches in hand are finished, delivered and committed first."""
    metrics = ScorerMetrics(registry)
    metrics.model.labels(model.version).set(1)
    consumer = Consumer(consumer_config(config.group))
    producer = Producer(producer_config())
    log.info("scoring %s -> %s (group %s, model %s)", topics.features, topics.predictions, config.group, model.version)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict") as predictor:
        scorer = _Scorer(config, model, topics, metrics, consumer, producer, predictor)
        consumer.subscribe([topics.features], on_revoke=scorer.on_revoke)
        try:
            while not stop.is_set():
                messages = [m for m in collect_batch(consumer, config.batch_size, config.batch_timeout) if _check(m)]
                if messages:
                    scorer.start(messages)
                else:
                    scorer.finish_in_flight()  # a lull: deliver now rather than wait for the next batch
            scorer.finish_in_flight()
        finally:
            scorer.in_flight = None  # on an error, leave it uncommitted: it replays after restart
            producer.flush(10)
            consumer.close()  # leaves the group now, so partitions move to other instances at once
    log.info("scorer stopped")
    return 0
