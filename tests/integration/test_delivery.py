"""The scorer's delivery accounting against the real broker, with a producer that reports failures only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from contract.delivery import resending_producer
from contract.rules import Rejection
from contract.settings import Topics, ensure_topics
from scorer.scoring import ScoredBatch
from scorer.service import deliver

pytestmark = pytest.mark.broker


@dataclass
class SourceMessage:
    """The parts of a consumed features message that a DLQ entry copies."""

    offset_: int

    def topic(self) -> str:
        return "features"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_

    def value(self) -> bytes:
        return b"not json"

    def key(self) -> bytes:
        return b"k"


def count_messages(bootstrap: str, topic: str, expected: int) -> int:
    """Messages in the topic: read until `expected` are in, then 1 s more for any extra."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        count, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            count += sum(1 for m in consumer.consume(1000, 0.2) if m.error() is None)
            if count >= expected:
                deadline = min(deadline, time.monotonic() + 1)
        return count
    finally:
        consumer.close()


def scored(count: int, rejected: int) -> tuple[ScoredBatch, list[SourceMessage]]:
    batch = ScoredBatch(
        predictions=[(f"id-{i}", b'{"prediction": %d}' % i) for i in range(count)],
        rejections=[(i, Rejection("not_json", "test")) for i in range(rejected)],
    )
    return batch, [SourceMessage(i) for i in range(rejected)]


def test_errors_only_delivery_counts_acknowledged_and_failed_messages(kafka, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    # A topic that does not exist is declared so after 0.2 s instead of librdkafka's 30 s.
    monkeypatch.setenv("KAFKA_TOPIC_METADATA_PROPAGATION_MAX_MS", "200")
    ensure_topics([kafka.topics["PREDICTIONS_TOPIC"], kafka.topics["DLQ_TOPIC"]])
    topics = Topics(predictions=kafka.topics["PREDICTIONS_TOPIC"], dlq=kafka.topics["DLQ_TOPIC"])
    producer = resending_producer(errors_only=True)

    report = deliver(*scored(3000, 7), producer, topics)
    assert (report.delivered, report.failed, report.last_error) == (3007, 0, None)
    assert count_messages(kafka.bootstrap, topics.predictions, 3000) == 3000
    assert count_messages(kafka.bootstrap, topics.dlq, 7) == 7

    # The DLQ topic missing (allow.auto.create.topics is off): its messages fail, the rest is counted as delivered.
    missing = Topics(predictions=topics.predictions, dlq=f"missing-{kafka.suffix}")
    report = deliver(*scored(2000, 5), producer, missing)
    assert (report.delivered, report.failed) == (2000, 5)
    assert "Unknown topic" in report.last_error, report.last_error
    assert count_messages(kafka.bootstrap, topics.predictions, 5000) == 5000
