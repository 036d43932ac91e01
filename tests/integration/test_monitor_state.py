"""Snapshots of any size survive the round trip through the state topic, and a writer that dies
mid-snapshot leaves the previous snapshot in force."""
from __future__ import annotations

import secrets
import threading
import time

import pytest
from confluent_kafka import Producer

from monitor.state import PART_BYTES, create_state_topic, encode_state, read_latest, write_state

pytestmark = pytest.mark.broker


def big_state(marker: str) -> bytes:
    # Random hex compresses only to half: about 2.5 MB, six parts.
    pending = [[secrets.token_hex(16), 1, 2.0, 3] for _ in range(120_000)]
    return encode_state("g", {"kind": "count", "window": 1000, "step": 250}, {("t", 0): 7},
                        {"marker": marker, "join": {"predictions": pending}})


def test_a_snapshot_larger_than_a_message_round_trips_and_a_torn_one_is_ignored(kafka, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    topic = f"state-{kafka.suffix}"
    create_state_topic(topic)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})

    first = big_state("first")
    assert len(first) > 4 * PART_BYTES
    assert write_state(producer, topic, "g", first) == -(-len(first) // PART_BYTES)
    write_state(producer, topic, "other-group", encode_state("other-group", {}, {}, {"marker": "other"}))
    state = read_latest(topic, "g")
    assert state["monitor"]["marker"] == "first" and state["offsets"] == {("t", 0): 7}
    assert len(state["monitor"]["join"]["predictions"]) == 120_000

    # A second snapshot whose writer died after two parts: no manifest, so the first stays in force.
    torn = big_state("torn")
    for index in range(2):
        producer.produce(topic, torn[index * PART_BYTES:(index + 1) * PART_BYTES], key=f"g/{index}",
                         headers=[("snapshot", b"torn-id"), ("parts", b"5")])
    producer.flush(10)
    assert read_latest(topic, "g")["monitor"]["marker"] == "first"

    write_state(producer, topic, "g", encode_state("g", {}, {}, {"marker": "small"}))
    assert read_latest(topic, "g")["monitor"]["marker"] == "small"
    assert read_latest(topic, "other-group")["monitor"]["marker"] == "other"
    assert read_latest(topic, "missing") is None


def test_another_group_writing_all_the_time_does_not_keep_a_reader_reading(kafka, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    topic = f"state-{kafka.suffix}"
    create_state_topic(topic)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    write_state(producer, topic, "mine", encode_state("mine", {}, {}, {"marker": "mine"}))
    stop = threading.Event()

    def busy_neighbour() -> None:  # another monitor group snapshotting every 50 ms
        other = Producer({"bootstrap.servers": kafka.bootstrap})
        while not stop.is_set():
            write_state(other, topic, "busy", encode_state("busy", {}, {}, {"marker": secrets.token_hex(8)}))
            time.sleep(0.05)

    writer = threading.Thread(target=busy_neighbour, daemon=True)
    writer.start()
    try:
        time.sleep(1)
        started = time.monotonic()
        assert read_latest(topic, "mine", timeout=20)["monitor"]["marker"] == "mine"
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        writer.join(10)


def test_a_state_topic_with_several_partitions_is_refused_with_a_message(kafka, monkeypatch):
    from confluent_kafka.admin import AdminClient, NewTopic

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    topic = f"state-{kafka.suffix}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3)])[topic].result(30)
    with pytest.raises(RuntimeError, match=f"state topic {topic} has 3 partitions; snapshots need exactly one"):
        read_latest(topic, "g", timeout=10)
