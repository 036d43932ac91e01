"""`python -m scorer run`: the features topic in, predictions and dead letters out, for any
scikit-learn model: records are decoded and predictions laid out as the model's schema says
(`scorer.scoring.BatchCodec`, built once at start-up).

Delivery guarantee: at-least-once. A batch's offsets are stored and committed only after every
prediction and DLQ message of that batch is acknowledged by the broker, so a crash replays at
most the uncommitted batch (duplicates, never gaps). Predictions are keyed by record id, so a
replayed record lands in the same partition as its first prediction.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contract.artifacts import REFERENCE_FILE, read_reference
from contract.delivery import (
    DeliveryReport,
    discard,
    is_transient,
    produce,
    produce_all,
    producer_failure,
    resending_producer,
)
from contract.rules import REJECTION_REASONS
from contract.schema import SchemaError
from contract.service import (
    close_consumer,
    collect_batch,
    freeze_startup_heap,
    is_record,
    log_failed_commit,
)
from contract.settings import (
    DEFAULT_PARTITIONS,
    SCORER_FETCH_WAIT_MS,
    Topics,
    consumer_config,
    ensure_topics,
)
from scorer.model import LoadedModel
from scorer.predictor import PredictProcess
from scorer.scoring import (
    BatchCodec,
    DecodedBatch,
    Outputs,
    ScoredBatch,
    decode_batch,
    finish_batch,
)

log = logging.getLogger(__name__)

LATENCY_SAMPLES_PER_BATCH = 100


@dataclass(frozen=True)
class ScorerConfig:
    group: str = "scorer"
    model_dir: Path = Path("artifacts")
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8001
    batch_size: int = 50000  # a cap: a batch is what is waiting when the predict process is free
    topic_partitions: int = DEFAULT_PARTITIONS  # for output topics it has to create again

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("--metrics-port must be 0-65535 (0 disables the metrics server)")


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry, categorical: tuple[str, ...] = ()) -> None:
        self.consumed = Counter(
            "scorer_records_consumed_total", "Feature messages consumed", registry=registry
        )
        self.predictions = Counter(
            "scorer_predictions_total",
            "Predictions delivered to the predictions topic",
            registry=registry,
        )
        self.invalid = Counter(
            "scorer_invalid_records_total",
            "Records sent to the DLQ, by reason",
            ["reason"],
            registry=registry,
        )
        self.unseen = Counter(
            "scorer_unseen_category_total",
            "Scored records with a category unseen in training",
            ["feature"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "scorer_batch_duration_seconds",
            "One batch from decoding to its commit (the next is decoded and predicted meanwhile)",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.latency = Histogram(
            "scorer_event_to_prediction_seconds",
            "Features message sent (its Kafka timestamp) to prediction delivered; up to 100 records sampled per batch",
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.redeliveries = Counter(
            "scorer_batch_redeliveries_total",
            "Batches sent again after a transient delivery failure",
            registry=registry,
        )
        self.model = Gauge(
            "scorer_model_info", "The model being served", ["model_version"], registry=registry
        )
        for reason in REJECTION_REASONS:  # export zeros so rate() works before the first bad record
            self.invalid.labels(reason)
        for feature in categorical:  # and before the first unseen category
            self.unseen.labels(feature)


def deliver(
    batch: ScoredBatch, messages: list[Message], producer: Producer, topics: Topics
) -> DeliveryReport:
    """Produce a scored batch (predictions + DLQ with the original bytes) and wait for acks.

    The producer reports failures only (`resending_producer(errors_only=True)`): once flush()
    has nothing left in flight, every message not reported failed was acknowledged."""
    report = DeliveryReport()
    produce_all(producer, topics.predictions, batch.predictions, report)
    for position, rejection in batch.rejections:
        source = messages[position]
        headers = [
            ("reason", rejection.reason.encode()),
            ("detail", rejection.detail.encode()[:1000]),
            ("source_topic", source.topic().encode()),
            ("source_partition", str(source.partition()).encode()),
            ("source_offset", str(source.offset()).encode()),
        ]
        produce(producer, topics.dlq, source.value() or b"", source.key(), report, headers=headers)
    in_flight = (
        producer.flush()
    )  # without a timeout it returns when each message is acked or failed
    if in_flight:
        report.failed += in_flight
        report.last_error = (
            report.last_error or f"{in_flight} messages still in flight after flush()"
        )
    report.delivered = len(batch.predictions) + len(batch.rejections) - report.failed
    return report


def deliver_until_done(
    batch: ScoredBatch,
    messages: list[Message],
    producer: Producer,
    topics: Topics,
    metrics: ScorerMetrics,
    stop: threading.Event,
    config: ScorerConfig,
) -> tuple[Producer, bool]:
    """Deliver the batch, re-sending it with a new producer after transient failures.

    Returns the producer to keep using and whether everything was delivered (False only when
    `stop` was set first). A broker that was away or replaced (its producer ids and topics gone)
    is ridden out without a restart; a re-sent batch can duplicate the outputs delivered by the
    failed attempt (at-least-once). Failures no retry can cure (message too large, not
    authorized) raise: the batch stays uncommitted and replays after the cause is fixed.
    """
    while True:
        try:
            report = deliver(batch, messages, producer, topics)
        except (
            KafkaException,
            SystemError,
        ) as exc:  # produce() itself refuses: this producer hit a fatal error
            error = producer_failure(exc)
            if error is None or not is_transient(error):
                raise
            report = DeliveryReport(failed=1, last_error=str(error))
        if not report.failed:
            return producer, True
        if report.permanent:
            raise RuntimeError(
                f"{report.failed} outputs not delivered ({report.last_error}); offsets not committed"
            )
        metrics.redeliveries.inc()
        log.warning(
            "%d of %d outputs not delivered (%s): re-sending the batch with a new producer",
            report.failed,
            report.failed + report.delivered,
            report.last_error,
        )
        discard(producer)
        producer = resending_producer(errors_only=True)
        if stop.is_set():
            log.warning(
                "stopping with an undelivered batch: its offsets are not committed, it is scored again after restart"
            )
            return producer, False
        try:
            # A replaced broker lost the topics too; they are not auto-created (see contract.settings).
            ensure_topics([topics.predictions, topics.dlq], config.topic_partitions, timeout=5)
        except KafkaException as exc:
            log.warning("cannot check the output topics yet: %s", exc)


IDLE_WAIT_SECONDS = (
    0.1  # with nothing in hand, one wait for the next record (stop is checked between waits)
)


def consume_wait(predicting: bool) -> float:
    """How long the loop may wait in consume() for the next batch: never while a batch is being
    predicted (the records that come meanwhile are the batch after, taken as soon as the predict
    process is free again), and with nothing in hand until a first record comes.

    This is the whole batching rule: no timer fills a batch. A slow stream is scored a few
    records at a time as they come; under a backlog each batch is what piled up while the previous
    one was predicted, so batches grow with the backlog, up to --batch-size."""
    return 0.0 if predicting else IDLE_WAIT_SECONDS


def commit(consumer: Consumer, messages: list[Message]) -> None:
    """Commit past the last message of each partition in the batch (offsets are next-to-read).

    Asynchronous: a synchronous commit waits for the group coordinator without serving the
    consumer's queue, so during a rebalance (a broker replaced, a member joining) it can block
    the loop for the whole max.poll.interval. The commit reply is in within milliseconds, long
    before the next batch is scored; close() waits for commits still in flight, so a SIGTERM
    still leaves everything delivered committed.
    """
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        last[(message.topic(), message.partition())] = message.offset()
    try:
        consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._STATE:
            raise
        # A rebalance took every partition of the batch while it was in hand (the next batch is
        # consumed before this one is delivered): librdkafka stores no offset for a partition
        # this consumer no longer owns. The new owner reads from the last commit, so these
        # records are scored again: duplicates, not gaps.
        log.warning(
            "partitions of a delivered batch were revoked before its offsets were stored: "
            "its %d records will be scored again by their new owner",
            len(messages),
        )
        return
    try:
        consumer.commit(asynchronous=True)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


def record_metrics(
    metrics: ScorerMetrics, messages: list[Message], scored: ScoredBatch, started: float
) -> None:
    delivered_at = time.time()
    metrics.consumed.inc(len(messages))
    metrics.predictions.inc(len(scored.predictions))
    for _, rejection in scored.rejections:
        metrics.invalid.labels(rejection.reason).inc()
    for feature, count in scored.unseen.items():
        metrics.unseen.labels(feature).inc(count)
    # The features message's Kafka timestamp is when its producer sent it. Observing every
    # record costs as much as decoding it: the histogram takes an even sample.
    sample = messages[:: max(1, len(messages) // LATENCY_SAMPLES_PER_BATCH)]
    sent_ms = np.array([m.timestamp()[1] for m in sample], dtype=float)
    for lag in delivered_at - sent_ms[sent_ms > 0] / 1000.0:
        metrics.latency.observe(lag)
    metrics.batch_seconds.observe(time.perf_counter() - started)


REFERENCE_SAMPLE_ROWS = 2000  # what the fast encoder is checked on at start-up (~0.1 s)


def reference_sample(model_dir: Path, codec: BatchCodec) -> pd.DataFrame | None:
    """Up to 2,000 reference rows as the scorer's batch frames hold them: what
    `scorer.encoding.compile_transform` checks the fast encoder on. None when the reference cannot
    be read: the scorer then encodes with scikit-learn."""
    try:
        reference = read_reference(Path(model_dir) / REFERENCE_FILE, codec.schema)
    except (OSError, SchemaError) as exc:
        log.warning("cannot read the reference rows to check the fast encoder on (%s)", exc)
        return None
    rows = reference.head(REFERENCE_SAMPLE_ROWS)
    return pd.DataFrame({name: rows[name].tolist() for name in codec.schema.feature_names})


@dataclass
class InFlight:
    """A decoded batch whose valid records the predict process is scoring."""

    messages: list[Message]
    decoded: DecodedBatch
    started: float


def run(
    config: ScorerConfig,
    model: LoadedModel,
    codec: BatchCodec,
    topics: Topics,
    registry: CollectorRegistry,
    stop: threading.Event,
) -> int:
    """Consume until `stop` is set; the batches in hand are finished, delivered and committed first.

    `codec` is the schema's decoding and encoding, built for this model at start-up (its classes
    checked against the schema's: `scorer.model.check_against_schema`).

    The model's final step (the forest) goes to the predict process and `model` keeps only its
    transforms (`LoadedModel.hand_over_final_step`: its `predict` raises afterwards).
    Two stages overlap: while the forest predicts batch N in its own process
    (`scorer.predictor`; a classifier's classes and probabilities come back in one round trip),
    this process delivers batch N-1, then consumes, decodes and encodes (the pipeline's
    transforms) batch N+1: whatever is waiting by then, without waiting for more (`consume_wait`),
    and it goes to the predict process the moment N comes back.
    Batches are delivered and committed strictly in order, so a crash replays only what was not
    delivered and committed (at-least-once; the duplicates are at most the batch being delivered).
    """
    metrics = ScorerMetrics(registry, codec.schema.categorical)
    metrics.model.labels(model.version).set(1)
    encode, estimator = model.hand_over_final_step(
        reference_sample(config.model_dir, codec), codec.known
    )
    if encode.fast is None:
        log.info("encoding batches with scikit-learn's transform: %s", encode.reason)
    else:
        log.info(
            "encoding batches with the fast encoder (its output is scikit-learn's on the reference rows)"
        )
    predictor = PredictProcess(estimator, codec.kind)
    del estimator  # the predict process has its own copy: this one can be freed
    try:  # whatever happens below, the predict process ends with this function
        consumer = Consumer(
            {
                **consumer_config(config.group, fetch_wait_ms=SCORER_FETCH_WAIT_MS),
                "on_commit": log_failed_commit,
            }
        )
        producer = resending_producer(errors_only=True)
        consumer.subscribe([topics.features])
        log.info(
            "scoring %s -> %s (group %s, model %s version %s)",
            topics.features,
            topics.predictions,
            config.group,
            codec.schema.name,
            model.version,
        )
        freeze_startup_heap()
        in_flight: InFlight | None = None
        undelivered = False  # stopping with a batch the broker did not take: it is away

        def deliver_batch(finished: InFlight, outputs: Outputs) -> bool:
            """Deliver, commit and count a predicted batch; False when stopping left it undelivered."""
            nonlocal producer
            scored = finish_batch(
                finished.decoded, outputs, model.version, int(time.time() * 1000), codec
            )
            producer, delivered = deliver_until_done(
                scored, finished.messages, producer, topics, metrics, stop, config
            )
            if delivered:
                commit(consumer, finished.messages)
                record_metrics(metrics, finished.messages, scored, finished.started)
            return delivered

        try:
            while True:
                stopping = stop.is_set()
                # (messages,) what is waiting now; it is predicted as soon as batch N is (consume_wait)
                messages = (
                    []
                    if stopping
                    else [
                        m
                        for m in collect_batch(
                            consumer, config.batch_size, consume_wait(in_flight is not None)
                        )
                        if is_record(m)
                    ]
                )
                started = time.perf_counter()
                decoded = decode_batch([m.value() for m in messages], codec) if messages else None
                encoded = (
                    encode(decoded.frame, decoded.columns)
                    if decoded is not None and decoded.ids
                    else None
                )
                finished = in_flight
                outputs = (
                    codec.outputs(predictor.result())
                    if finished is not None and finished.decoded.ids
                    else Outputs([])
                )
                if encoded is not None:
                    predictor.submit(encoded)
                in_flight = InFlight(messages, decoded, started) if decoded is not None else None
                if finished is not None and not deliver_batch(finished, outputs):
                    undelivered = True
                    break  # stopping with the batch undelivered: uncommitted, so it is scored again after restart
                if stopping and in_flight is None:
                    break
        finally:
            producer.flush(10)
            close_consumer(
                consumer, broker_away=undelivered
            )  # leaves the group: partitions move on at once
    finally:
        predictor.close()
    log.info("scorer stopped")
    return 0
