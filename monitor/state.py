"""The monitor's state on a compacted Kafka topic: window panes, pending joins and the offsets they cover.

This module is the snapshot format and the state topic's I/O; when the service restores, snapshots
and commits is `monitor.checkpoint`.

A snapshot is zlib-compressed JSON
    {"version": 1, "group", "window": {"kind", "window", "step"}, "written_at" (epoch ms),
     "offsets": [[topic, partition, next offset], ...], "monitor": DriftMonitor.to_dict()}
cut into parts of at most PART_BYTES (brokers refuse messages over ~1 MB, and predictions
waiting for late labels can make a snapshot several MB). Part i is keyed `GROUP/i`, with the
snapshot's id and part count in headers; then a manifest keyed `GROUP` says {"snapshot": id,
"parts": n}. Parts precede their manifest on the one partition, so a reader that keeps the
parts of the newest snapshot id seen and assembles them at the manifest never mixes two
snapshots, and a writer that dies mid-snapshot leaves the previous manifest in force.
Compaction keeps the newest message per key. The offsets are the consumer positions the
snapshot covers: the service commits them to the group only after the snapshot is delivered, and
on restart it seeks to the snapshot's offsets (not the group's), so window and offsets always agree.

Reading: the reader first appends a barrier message (key `__barrier__/GROUP`, a fresh id) and then
reads the partition from its beginning up to that barrier; the last complete snapshot for the key
before it wins. Everything written before the read began is before the barrier, and other groups
writing to the same topic while it reads cannot keep it reading forever. The broker's end offsets
are not used: they are wrong on some brokers (Tansu, see BROKER.md).
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from contract.delivery import DeliveryReport, produce
from contract.settings import acknowledged_producer_config, client_config, reader_config

log = logging.getLogger(__name__)

VERSION = 1
# librdkafka refuses messages over message.max.bytes (1 MB by default).
PART_BYTES = 500_000

# Keys of read barriers; one per group, so compaction keeps only the latest.
BARRIER_PREFIX = "__barrier__/"

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


def encode_state(
    group: str, window: Mapping[str, Any], offsets: Offsets, monitor: Mapping[str, Any]
) -> bytes:
    payload = {
        "version": VERSION,
        "group": group,
        "window": dict(window),
        "written_at": int(time.time() * 1000),
        "offsets": [[t, p, o] for (t, p), o in sorted(offsets.items())],
        "monitor": monitor,
    }
    # orjson and fast compression: a snapshot holding 200k pending joins encodes in ~0.1 s.
    return zlib.compress(orjson.dumps(payload), 1)


def decode_state(raw: bytes) -> dict[str, Any]:
    """The snapshot dict, offsets as {(topic, partition): offset}; ValueError if unreadable."""
    try:
        state = orjson.loads(zlib.decompress(raw))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise ValueError(f"unreadable state snapshot: {exc}") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ValueError(
            f"state snapshot version {state.get('version') if isinstance(state, dict) else '?'} "
            f"is not {VERSION}"
        )
    state["offsets"] = {(t, int(p)): int(o) for t, p, o in state["offsets"]}
    return state


def create_state_topic(topic: str, timeout: float = 30.0) -> None:
    """One compacted partition (snapshots are tiny and few); left alone if it exists."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config())
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, config={"cleanup.policy": "compact"})],
        operation_timeout=timeout,
    )
    try:
        futures[topic].result(timeout)
        log.info("created compacted state topic %s", topic)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def read_latest(topic: str, key: str, timeout: float = 120.0) -> dict[str, Any] | None:
    """The newest readable snapshot for `key` written before this call, or None."""
    return read_latest_of(topic, [key], timeout)[key]


def read_latest_of(
    topic: str, keys: list[str], timeout: float = 120.0
) -> dict[str, dict[str, Any] | None]:
    """The newest readable snapshot of each key written before this call (None where there is none),
    in one pass over the state topic (a worker taking several partitions reads it once)."""
    barrier_id, barrier_key = uuid.uuid4().hex.encode(), f"{BARRIER_PREFIX}{keys[0]}".encode()
    consumer = Consumer(reader_config(f"monitor-state-reader-{uuid.uuid4().hex}"))
    latest: dict[str, bytes | None] = dict.fromkeys(keys)
    count = 0
    # per key, the newest snapshot's parts seen so far: (snapshot id, {index: bytes})
    parts: dict[bytes, tuple[bytes | None, dict[int, bytes]]] = {}
    manifests = {key.encode(): key for key in keys}
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        if len(metadata.partitions) != 1:
            raise RuntimeError(
                f"state topic {topic} has {len(metadata.partitions)} partitions; snapshots need "
                "exactly one (delete it or set MONITOR_STATE_TOPIC to a new name)"
            )
        producer = Producer(acknowledged_producer_config())
        report = DeliveryReport()
        produce(producer, topic, barrier_id, barrier_key, report)
        if producer.flush(timeout) or not report.delivered:
            raise RuntimeError(
                f"cannot write to the state topic {topic}: {report.last_error or 'flush timed out'}"
            )
        # assign(), not subscribe(): no group join, so no rebalance wait on start-up.
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        reached_barrier = False
        while not reached_barrier:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"state topic {topic}: its barrier was not read back within {timeout:.0f} s"
                )
            for message in consumer.consume(500, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                count += 1
                message_key = message.key() or b""
                if message_key.startswith(BARRIER_PREFIX.encode()):
                    if message_key == barrier_key and message.value() == barrier_id:
                        reached_barrier = True
                        break
                    continue
                owner, _, index = message_key.rpartition(b"/")
                if owner in manifests and index.isdigit():  # a part of `owner`'s snapshot
                    snapshot = dict(message.headers() or []).get("snapshot")
                    if parts.get(owner, (None, {}))[0] != snapshot:
                        parts[owner] = (snapshot, {})
                    parts[owner][1][int(index)] = message.value() or b""
                elif message_key in manifests:
                    key = manifests[message_key]
                    if message.value() is None:  # a tombstone: state deleted
                        latest[key] = None
                        continue
                    manifest = orjson.loads(message.value())
                    snapshot_id, held = parts.get(message_key, (None, {}))
                    if (
                        manifest["snapshot"].encode() == snapshot_id
                        and len(held) == manifest["parts"]
                    ):
                        latest[key] = b"".join(held[i] for i in range(manifest["parts"]))
                    else:
                        log.warning(
                            "state snapshot %s in %s is incomplete (%d of %d parts): keeping the one before",
                            manifest["snapshot"],
                            topic,
                            len(held),
                            manifest["parts"],
                        )
    finally:
        consumer.close()
    log.info("read %d state messages from %s", count, topic)
    states: dict[str, dict[str, Any] | None] = {}
    for key, raw in latest.items():
        try:
            states[key] = None if raw is None else decode_state(raw)
        except ValueError as exc:
            # A snapshot written by another version: refuse loudly rather than start from empty.
            raise RuntimeError(
                f"state for {key} in {topic}: {exc}; use a new --group to start afresh"
            ) from None
    return states


def write_state(
    producer: Producer, topic: str, key: str, value: bytes, timeout: float = 30.0
) -> int:
    """Produce a snapshot's parts, then its manifest, and wait for every ack; returns the part count.

    Raises if anything was not delivered."""
    snapshot_id = uuid.uuid4().hex
    chunks = [value[i : i + PART_BYTES] for i in range(0, len(value), PART_BYTES)] or [b""]
    report = DeliveryReport()
    for index, chunk in enumerate(chunks):
        headers = [("snapshot", snapshot_id.encode()), ("parts", str(len(chunks)).encode())]
        produce(producer, topic, chunk, f"{key}/{index}", report, headers=headers)
    produce(
        producer, topic, orjson.dumps({"snapshot": snapshot_id, "parts": len(chunks)}), key, report
    )
    remaining = producer.flush(timeout)
    if remaining or report.failed or not report.delivered:
        raise RuntimeError(
            f"state snapshot not delivered to {topic}: {report.last_error or 'flush timed out'}"
        )
    return len(chunks)
