"""The monitor's state on a compacted Kafka topic: window panes, pending joins and the offsets they cover.

One message per snapshot, keyed by consumer group, value = zlib-compressed JSON
    {"version": 1, "group", "window": {"kind", "window", "step"}, "written_at" (epoch ms),
     "offsets": [[topic, partition, next offset], ...], "monitor": DriftMonitor.to_dict()}
Compaction keeps the newest snapshot per group. The offsets are the consumer positions the
snapshot covers: the service commits them to the group only after the snapshot is delivered, and
on restart it seeks to the snapshot's offsets (not the group's), so window and offsets always agree.

Reading: the topic is read from its beginning until no message came for `idle` seconds, and the
last snapshot for the key wins. The broker's end offsets are not used: they are wrong on some
brokers (Tansu, see BROKER.md), and counting until idle works on all of them.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
import zlib
from typing import Any, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from contract.delivery import DeliveryReport, produce
from contract.settings import client_config

log = logging.getLogger(__name__)

VERSION = 1
# librdkafka refuses messages over message.max.bytes (1 MB by default); a snapshot is ~10-50 kB
# compressed, more only when hundreds of thousands of predictions wait for labels.
MAX_STATE_BYTES = 900_000

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


class StateTooLarge(RuntimeError):
    """A snapshot over MAX_STATE_BYTES: skipped (offsets stay uncommitted), not fatal."""


def encode_state(group: str, window: Mapping[str, Any], offsets: Offsets, monitor: Mapping[str, Any]) -> bytes:
    payload = {
        "version": VERSION,
        "group": group,
        "window": dict(window),
        "written_at": int(time.time() * 1000),
        "offsets": [[t, p, o] for (t, p), o in sorted(offsets.items())],
        "monitor": monitor,
    }
    return zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)


def decode_state(raw: bytes) -> dict[str, Any]:
    """The snapshot dict, offsets as {(topic, partition): offset}; ValueError if unreadable."""
    try:
        state = json.loads(zlib.decompress(raw))
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"unreadable state snapshot: {exc}") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ValueError(f"state snapshot version {state.get('version') if isinstance(state, dict) else '?'} "
                         f"is not {VERSION}")
    state["offsets"] = {(t, int(p)): int(o) for t, p, o in state["offsets"]}
    return state


def create_state_topic(topic: str, timeout: float = 30.0) -> None:
    """One compacted partition (snapshots are tiny and few); left alone if it exists."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config())
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, config={"cleanup.policy": "compact"})],
                                  operation_timeout=timeout)
    try:
        futures[topic].result(timeout)
        log.info("created compacted state topic %s", topic)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def read_latest(topic: str, key: str, idle: float = 2.0, timeout: float = 120.0) -> dict[str, Any] | None:
    """The newest readable snapshot for `key`, or None; reads from the start until `idle` s of silence."""
    consumer = Consumer({**client_config(), "group.id": f"monitor-state-reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    latest: bytes | None = None
    count = 0
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        # assign(), not subscribe(): no group join, so no rebalance wait on start-up.
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() - last < idle:
            if time.monotonic() > deadline:
                raise RuntimeError(f"state topic {topic} still sending after {timeout:.0f} s")
            for message in consumer.consume(500, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                last = time.monotonic()
                count += 1
                if message.key() == key.encode():
                    latest = message.value()  # a None value is a tombstone: state deleted
    finally:
        consumer.close()
    log.info("read %d state messages from %s", count, topic)
    if latest is None:
        return None
    try:
        return decode_state(latest)
    except ValueError as exc:
        # A snapshot written by another version: refuse loudly rather than start from empty.
        raise RuntimeError(f"state for group {key} in {topic}: {exc}; use a new --group to start afresh") from None


def write_state(producer: Producer, topic: str, key: str, value: bytes, timeout: float = 30.0) -> None:
    """Produce one snapshot and wait for its acknowledgement; raises if it was not delivered."""
    if len(value) > MAX_STATE_BYTES:
        raise StateTooLarge(f"state snapshot is {len(value)} bytes (limit {MAX_STATE_BYTES}): "
                           "lower --label-ttl so fewer predictions wait for labels")
    report = DeliveryReport()
    produce(producer, topic, value, key, report)
    remaining = producer.flush(timeout)
    if remaining or report.failed or not report.delivered:
        raise RuntimeError(f"state snapshot not delivered to {topic}: {report.last_error or 'flush timed out'}")
