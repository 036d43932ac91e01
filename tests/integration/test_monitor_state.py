"""Snapshots of any size survive the round trip through the state topic, a writer that dies
mid-snapshot leaves the previous snapshot in force, and a restart restores only a snapshot of its
own window shape."""

from __future__ import annotations

import secrets
import threading
import time

import numpy as np
import pytest
from confluent_kafka import Producer

from monitor.state import PART_BYTES, create_state_topic, encode_state, read_latest, write_state
from tests.support import wait_until


def big_state(marker: str) -> bytes:
    # Random hex compresses only to half: about 2.5 MB, six parts.
    pending = [[secrets.token_hex(16), 1, 2.0, 3] for _ in range(120_000)]
    return encode_state(
        "g",
        {"kind": "count", "window": 1000, "step": 250},
        {("t", 0): 7},
        {"marker": marker, "join": {"predictions": pending}},
    )


@pytest.mark.broker
def test_a_snapshot_larger_than_a_message_round_trips_and_a_torn_one_is_ignored(kafka, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    topic = f"state-{kafka.suffix}"
    create_state_topic(topic)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})

    first = big_state("first")
    assert len(first) > 4 * PART_BYTES
    assert write_state(producer, topic, "g", first) == -(-len(first) // PART_BYTES)
    write_state(
        producer, topic, "other-group", encode_state("other-group", {}, {}, {"marker": "other"})
    )
    state = read_latest(topic, "g")
    assert state["monitor"]["marker"] == "first" and state["offsets"] == {("t", 0): 7}
    assert len(state["monitor"]["join"]["predictions"]) == 120_000

    # A second snapshot whose writer died after two parts: no manifest, so the first stays in force.
    torn = big_state("torn")
    for index in range(2):
        producer.produce(
            topic,
            torn[index * PART_BYTES : (index + 1) * PART_BYTES],
            key=f"g/{index}",
            headers=[("snapshot", b"torn-id"), ("parts", b"5")],
        )
    producer.flush(10)
    assert read_latest(topic, "g")["monitor"]["marker"] == "first"

    write_state(producer, topic, "g", encode_state("g", {}, {}, {"marker": "small"}))
    assert read_latest(topic, "g")["monitor"]["marker"] == "small"
    assert read_latest(topic, "other-group")["monitor"]["marker"] == "other"
    assert read_latest(topic, "missing") is None


@pytest.mark.broker
def test_another_group_writing_all_the_time_does_not_keep_a_reader_reading(kafka, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    topic = f"state-{kafka.suffix}"
    create_state_topic(topic)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    write_state(producer, topic, "mine", encode_state("mine", {}, {}, {"marker": "mine"}))
    stop, written = threading.Event(), [0]

    def busy_neighbour() -> None:  # another monitor group snapshotting every 50 ms
        other = Producer({"bootstrap.servers": kafka.bootstrap})
        while not stop.is_set():
            write_state(
                other, topic, "busy", encode_state("busy", {}, {}, {"marker": secrets.token_hex(8)})
            )
            written[0] += 1
            stop.wait(
                0.05
            )  # pacing the neighbour's writes (its --state-interval), no event to await

    writer = threading.Thread(target=busy_neighbour, daemon=True)
    writer.start()
    try:
        wait_until(lambda: written[0] >= 20, 60, message="the neighbour's first 20 snapshots")
        started = time.monotonic()
        assert read_latest(topic, "mine", timeout=20)["monitor"]["marker"] == "mine"
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        writer.join(10)


@pytest.mark.broker
def test_a_state_topic_with_several_partitions_is_refused_with_a_message(kafka, monkeypatch):
    from confluent_kafka.admin import AdminClient, NewTopic

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    topic = f"state-{kafka.suffix}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3)])[topic].result(30)
    with pytest.raises(
        RuntimeError, match=f"state topic {topic} has 3 partitions; snapshots need exactly one"
    ):
        read_latest(topic, "g", timeout=10)


def test_the_state_reader_gives_its_consumer_and_its_producer_their_own_kafka_settings(monkeypatch):
    """No broker: the clients are stand-ins that record their configuration."""
    import monitor.state as state

    monkeypatch.setenv("KAFKA_SESSION_TIMEOUT_MS", "6000")  # consumers only
    monkeypatch.setenv("KAFKA_LINGER_MS", "1")  # producers only
    monkeypatch.setenv("KAFKA_CLIENT_ID", "mine")  # both
    configs = {}

    class Built(Exception):
        """Both clients built: the read stops here."""

    class Topic:
        error, partitions = None, {0: None}

    class StandInConsumer:
        def __init__(self, config):
            configs["consumer"] = config

        def list_topics(self, topic, timeout):
            return type("Metadata", (), {"topics": {topic: Topic()}})()

        def close(self):
            pass

    def stand_in_producer(config):
        configs["producer"] = config
        raise Built

    monkeypatch.setattr(state, "Consumer", StandInConsumer)
    monkeypatch.setattr(state, "Producer", stand_in_producer)
    with pytest.raises(Built):
        read_latest("state", "g")
    consumer, producer = configs["consumer"], configs["producer"]
    assert (
        consumer["session.timeout.ms"] == "6000"
        and "linger.ms" not in consumer
        and consumer["client.id"] == "mine"
    )
    assert (
        producer["linger.ms"] == "1"
        and "session.timeout.ms" not in producer
        and producer["client.id"] == "mine"
    )


@pytest.mark.broker
def test_restore_loads_the_groups_snapshot_and_refuses_another_window_shape(
    kafka, monkeypatch, model_dir
):
    from contract.artifacts import REFERENCE_FILE, SCHEMA_FILE
    from contract.schema_file import load_schema
    from contract.settings import Topics
    from monitor.baseline import Baseline, build_monitor, load_reference
    from monitor.checkpoint import StateMismatch
    from monitor.config import MonitorConfig
    from monitor.run import restore
    from monitor.sources import JsonPredictions
    from monitor.windows import PredictionBatch

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    topic = f"state-{kafka.suffix}"
    create_state_topic(topic)
    schema = load_schema(model_dir / SCHEMA_FILE)
    baseline = Baseline(load_reference(schema, model_dir / REFERENCE_FILE))
    config = MonitorConfig()
    monitor = build_monitor(config, baseline)
    source = JsonPredictions(schema, Topics.for_model(schema.name))
    assert (
        restore(monitor, source, topic, "g", config.window_state) == {}
    )  # nothing saved yet: empty windows
    saved = build_monitor(config, baseline)
    n = 300
    saved.update(
        PredictionBatch(
            np.array([f"r{i}" for i in range(n)], dtype=object),
            np.arange(n),
            np.full(n, 500.0),
            {c: np.full(n, v) for c, v in (("carat", 0.5), ("depth", 61.0), ("table", 57.0))},
            {
                c: np.full(n, v, dtype=object)
                for c, v in (("cut", "Ideal"), ("color", "E"), ("clarity", "SI1"))
            },
        )
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    write_state(
        producer,
        topic,
        "g",
        encode_state("g", config.window_state, {("p", 0): 42}, saved.to_dict()),
    )
    assert restore(monitor, source, topic, "g", config.window_state) == {("p", 0): 42}
    assert (
        monitor.counters["records"] == n
        and monitor.counters["pending"] == n
        and monitor.result() == saved.result()
    )
    other = MonitorConfig(window="2000", step="500")
    with pytest.raises(StateMismatch, match="use the same --window/--step or a new --group"):
        restore(build_monitor(other, baseline), source, topic, "g", other.window_state)
