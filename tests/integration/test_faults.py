"""Faults the services must ride out without a restart by hand."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.broker import free_port, start_broker
from devstack.s3 import start_s3
from tests.support import KafkaEnv, scrape, start_monitor, stop_process, stream_records, wait_until

pytestmark = pytest.mark.broker


def test_services_wait_for_a_broker_that_is_not_there_yet(tmp_path, model_dir):
    port = free_port()
    kafka = KafkaEnv(f"127.0.0.1:{port}", uuid.uuid4().hex[:10], model_dir)
    log = tmp_path / "scorer.log"
    scorer = kafka.start(
        "scorer", "run", "--metrics-port", "0", "--group", f"s-{kafka.suffix}", log=log
    )
    broker = None
    try:
        wait_until(
            lambda: "waiting for Kafka at" in log.read_text(), 60, message="a clear waiting line"
        )
        assert scorer.poll() is None, "the scorer gave up instead of waiting"
        broker = start_broker(port, log_path=tmp_path / "tansu.log")
        assert (
            kafka.run(
                "producer", "simulate", "--count", "200", "--rate", "0", "--label-delay", "0"
            ).returncode
            == 0
        )
        predictions = kafka.consume("PREDICTIONS_TOPIC", expected=200, timeout=90)
        assert sorted(json.loads(m.value())["id"] for m in predictions) == sorted(
            f"sim-{i}" for i in range(200)
        )
        assert "is reachable" in log.read_text()
    finally:
        assert stop_process(scorer) == 0
        if broker:
            broker.stop()


def test_a_broker_that_never_comes_fails_with_a_message(tmp_path, model_dir):
    kafka = KafkaEnv(f"127.0.0.1:{free_port()}", uuid.uuid4().hex[:10], model_dir)
    result = kafka.run("scorer", "run", "--metrics-port", "0", "--startup-timeout", "3", timeout=60)
    assert result.returncode == 2
    assert (
        b"error: Kafka at" in result.stderr
        and b"did not answer within 3 s: check KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    )
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize(
    "module, args",
    [
        ("scorer", ["run", "--metrics-port", "0"]),
        ("monitor", ["run", "--metrics-port", "0"]),
        ("producer", ["simulate", "--count", "0"]),
    ],
)
def test_sigterm_while_waiting_for_the_broker_exits_0_at_once(tmp_path, model_dir, module, args):
    kafka = KafkaEnv(f"127.0.0.1:{free_port()}", uuid.uuid4().hex[:10], model_dir)
    log = tmp_path / f"{module}.log"
    process = kafka.start(module, *args, log=log)
    try:
        wait_until(
            lambda: "waiting for Kafka at" in log.read_text(), 60, message="a clear waiting line"
        )
        started = time.monotonic()
        process.terminate()
        assert process.wait(10) == 0
        assert time.monotonic() - started < 5  # the metadata request in flight (2 s) plus shutdown
    finally:
        stop_process(process)


# -- the broker dies mid-stream ---------------------------------------------------------------------
def counter(port: int, name: str, **labels: str) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), -1)


def start_services(
    kafka: KafkaEnv, tmp_path: Path
) -> tuple[subprocess.Popen, int, subprocess.Popen, int]:
    scorer_port, monitor_port = free_port(), free_port()
    scorer = kafka.start(
        "scorer",
        "run",
        "--group",
        "scorer",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(scorer_port),
        "--batch-size",
        "500",
        log=tmp_path / "scorer.log",
        TOPIC_PARTITIONS="1",
    )
    monitor = start_monitor(kafka, tmp_path / "monitor.log", "monitor", monitor_port)
    return scorer, scorer_port, monitor, monitor_port


def log_ends(clients: dict[Path, subprocess.Popen]) -> dict[Path, tuple[subprocess.Popen, int]]:
    """{log: (its process, its length now)}: where to look for what the process logs from now on."""
    return {log: (process, log.stat().st_size) for log, process in clients.items()}


def refused_since(ends: dict[Path, tuple[subprocess.Popen, int]]) -> bool:
    """Every client still running has logged librdkafka's "Connection refused" since its end in
    `ends`: it has met the dead broker."""
    return all(
        process.poll() is not None or b"Connection refused" in log.read_bytes()[end:]
        for log, (process, end) in ends.items()
    )


def recreate_topics(kafka: KafkaEnv) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    state = kafka.topics["MONITOR_STATE_TOPIC"]
    topics = [
        NewTopic(
            name, num_partitions=1, config={"cleanup.policy": "compact"} if name == state else {}
        )
        for name in kafka.topics.values()
    ]
    for future in admin.create_topics(topics).values():
        future.result(30)


def test_sigterm_after_the_broker_died_mid_stream_exits_0_in_bounded_time(tmp_path, model_dir):
    """A service asked to stop while its broker is gone does not wait for the broker: it gives up
    what cannot be delivered (the monitor's last snapshot; the previous one stays in force) and exits 0.

    The broker dies while records flow, so the monitor saving every 0.3 s is caught in the middle of
    a snapshot (the case that took 40 s: after that one failed it prepared, then tried, another) and
    the monitor that never saves on its own (`--state-interval 3600`) stops with unsaved state."""
    broker = start_broker(log_path=tmp_path / "tansu.log")
    kafka = KafkaEnv(broker.bootstrap, uuid.uuid4().hex[:10], model_dir)
    scorer, _, monitor, monitor_port = start_services(kafka, tmp_path)
    unsaved_port = free_port()
    unsaved = start_monitor(
        kafka, tmp_path / "unsaved.log", "unsaved", unsaved_port, "--state-interval", "3600"
    )
    producer = kafka.start(
        "producer",
        "simulate",
        "--count",
        "0",
        "--rate",
        "500",
        "--label-delay",
        "0",
        log=tmp_path / "producer.log",
        TOPIC_PARTITIONS="1",
    )
    try:
        wait_until(
            lambda: stream_records(monitor_port) >= 2000 and stream_records(unsaved_port) >= 2000,
            90,
            message="stream monitored",
        )
        ends = log_ends(
            {
                tmp_path / "scorer.log": scorer,
                tmp_path / "monitor.log": monitor,
                tmp_path / "unsaved.log": unsaved,
            }
        )
        broker.kill()
        producer.kill()  # not under test: it would wait its 5-minute delivery timeout
        wait_until(lambda: refused_since(ends), 30, message="every service meeting the dead broker")
        started = time.monotonic()
        for process in (scorer, monitor, unsaved):
            process.terminate()
        assert [process.wait(60) for process in (scorer, monitor, unsaved)] == [0, 0, 0]
        elapsed = time.monotonic() - started
        print(f"exit after SIGTERM with the broker gone: {elapsed:.1f} s")
        assert elapsed < 25  # one 15 s delivery timeout of a snapshot, then close
        for log in ("monitor.log", "unsaved.log"):
            assert (
                "monitor stopped without saving its last state" in (tmp_path / log).read_text()
            ), log
    finally:
        for process in (producer, unsaved, monitor, scorer):
            stop_process(process)
        broker.stop()


def test_a_replaced_memory_broker_is_reconnected_to_without_a_restart(tmp_path, model_dir):
    """Memory engine: the new broker has nothing (records, offsets, topics, the monitor's state topic).
    The services keep their processes and in-memory windows and carry on with the new stream."""
    port = free_port()
    broker = start_broker(port, log_path=tmp_path / "tansu-1.log")
    kafka = KafkaEnv(broker.bootstrap, uuid.uuid4().hex[:10], model_dir)
    scorer, scorer_port, monitor, monitor_port = start_services(kafka, tmp_path)
    try:
        before = kafka.run(
            "producer",
            "simulate",
            "--count",
            "3000",
            "--rate",
            "0",
            "--label-delay",
            "0",
            "--id-prefix",
            "before",
            TOPIC_PARTITIONS="1",
        )
        assert before.returncode == 0, before.stderr.decode()[-2000:]
        wait_until(
            lambda: stream_records(monitor_port) == 3000, 90, message="first stream monitored"
        )

        # The operator re-creates the topics on the new broker before the services reach it: a
        # consumer whose group settled while a subscribed topic was missing did not always pick the
        # topic up later on Tansu (2 of about 10 runs; docs/limits.md), and re-creating them
        # right after the new broker started still lost that race once in CI (the monitor never
        # rejoined). The services are paused across the swap, so they meet the new broker with its
        # topics in place; they still find their old connections dead and their groups gone.
        for service in (scorer, monitor):
            os.kill(service.pid, signal.SIGSTOP)
        try:
            broker.kill()
            broker = start_broker(port, log_path=tmp_path / "tansu-2.log")
            recreate_topics(kafka)
        finally:
            for service in (scorer, monitor):
                os.kill(service.pid, signal.SIGCONT)
        after = kafka.run(
            "producer",
            "simulate",
            "--count",
            "3000",
            "--rate",
            "0",
            "--label-delay",
            "0",
            "--id-prefix",
            "after",
            TOPIC_PARTITIONS="1",
        )
        assert after.returncode == 0, after.stderr.decode()[-2000:]
        wait_until(
            lambda: stream_records(monitor_port) >= 6000,
            150,
            interval=0.5,
            message="the monitor counting the new broker's stream on top of its windows",
        )
        predicted = {
            json.loads(m.value())["id"]
            for m in kafka.consume("PREDICTIONS_TOPIC", expected=0, timeout=60, idle=3)
        }
        assert predicted >= {
            f"after-{i}" for i in range(3000)
        }  # at-least-once: a re-sent batch may repeat some
        assert scorer.poll() is None and monitor.poll() is None, (
            "a service exited instead of reconnecting"
        )
        samples = scrape(monitor_port)
        assert samples[("window_records", ())] == 1000
        print(
            f"scorer batches re-sent: {counter(scorer_port, 'scorer_batch_redeliveries_total')}, "
            f"monitor snapshot failures: {samples.get(('monitor_state_write_failures_total', ()))}"
        )

        # The monitor's state reaches the new broker: a SIGTERM saves it, a restart restores it.
        wait_until(lambda: counter(monitor_port, "monitor_state_writes_total") > 0, 60)
        assert stop_process(monitor) == 0
        saved = int(
            re.search(
                r"state saved at (\d+) records seen", (tmp_path / "monitor.log").read_text()
            ).group(1)
        )
        assert saved >= 6000
        monitor = start_monitor(kafka, tmp_path / "monitor.log", "monitor", free_port())
        wait_until(
            lambda: (
                f"restored state of group monitor: {saved} records"
                in (tmp_path / "monitor.log").read_text()
            ),
            60,
            message="state restored from the new broker",
        )
    finally:
        for process in (monitor, scorer):
            stop_process(process)
        broker.stop()


def test_a_broker_on_durable_storage_killed_and_restarted_keeps_the_stream(tmp_path, model_dir):
    """s3 engine over a local S3 server: records and committed offsets survive a SIGKILL of the broker,
    and every running client (simulator, scorer, monitor) rides out the gap.

    What was in flight at the SIGKILL is not always durable on Tansu: in some runs one scorer batch
    (500 predictions) or one small simulator batch of features was gone after the restart although
    the client had been told it was delivered. The test bounds each loss to one batch and prints it;
    every feature record the broker holds must be predicted (bar that one batch), and so must
    everything committed before (a new scorer has nothing to score again)."""
    s3 = start_s3(log_path=tmp_path / "s3.log")
    port = free_port()
    broker = start_broker(
        port, log_path=tmp_path / "tansu-1.log", storage=s3.storage, env=s3.tansu_env()
    )
    # Tansu on S3 needs longer than the services' 50 ms fetch wait to read a fetch's worth from S3;
    # with 50 ms every fetch of a live topic comes back empty (see docs/operations.md, "The local broker").
    kafka = KafkaEnv(
        broker.bootstrap, uuid.uuid4().hex[:10], model_dir, (("KAFKA_FETCH_WAIT_MAX_MS", "500"),)
    )
    total, batch = 15_000, 500
    producer = kafka.start(
        "producer",
        "simulate",
        "--count",
        str(total),
        "--rate",
        "1000",
        "--label-delay",
        "0",
        log=tmp_path / "producer.log",
        TOPIC_PARTITIONS="1",
    )
    scorer, scorer_port, monitor, monitor_port = start_services(kafka, tmp_path)
    try:
        wait_until(
            lambda: counter(scorer_port, "scorer_predictions_total") >= 4000,
            90,
            message="stream under way",
        )
        ends = log_ends(
            {
                tmp_path / "producer.log": producer,
                tmp_path / "scorer.log": scorer,
                tmp_path / "monitor.log": monitor,
            }
        )
        broker.kill()
        scored_at_kill = int(counter(scorer_port, "scorer_predictions_total"))
        # The gap every client rides out: each has met the dead broker before it comes back.
        wait_until(lambda: refused_since(ends), 30, message="every client meeting the dead broker")
        broker = start_broker(
            port, log_path=tmp_path / "tansu-2.log", storage=s3.storage, env=s3.tansu_env()
        )
        assert producer.wait(120) == 0, "the simulator could not deliver across the broker restart"
        # "Caught up" is the scorer's committed offset at the end of the features log as a reader finds
        # it: not a count of 15,000 (records Tansu lost at the kill never arrive), nor Tansu's latest
        # offset (wrong on Tansu, docs/operations.md, "The local broker": 13,905 while 14,873 records could be read).
        feature_messages = kafka.consume("FEATURES_TOPIC", expected=0, timeout=60, idle=3)
        log_end = max(m.offset() for m in feature_messages) + 1
        wait_until(
            lambda: kafka.committed("scorer", "FEATURES_TOPIC")[0] >= log_end,
            120,
            interval=1,
            message=f"the scorer committing the features log to its end ({log_end})",
        )
        features = {json.loads(m.value())["id"] for m in feature_messages}
        predictions = [
            json.loads(m.value())["id"]
            for m in kafka.consume("PREDICTIONS_TOPIC", expected=0, timeout=60, idle=3)
        ]
        expected = {f"sim-{i}" for i in range(total)}
        lost_features = sorted(expected - features, key=lambda i: int(i[4:]))
        unpredicted = sorted(features - set(predictions), key=lambda i: int(i[4:]))
        print(
            f"s3 broker restart at ~{scored_at_kill} predictions: {len(lost_features)} feature records lost "
            f"{lost_features[:2]}...{lost_features[-2:]}, {len(unpredicted)} held features without a prediction "
            f"{unpredicted[:2]}...{unpredicted[-2:]}, {len(predictions) - len(set(predictions))} duplicates, "
            f"{counter(scorer_port, 'scorer_batch_redeliveries_total')} batches re-sent"
        )
        assert len(lost_features) <= batch and len(unpredicted) <= batch
        # The stream from well after the restart is complete: the services did not lose their way.
        assert {f"sim-{i}" for i in range(scored_at_kill + 3000, total)} & features <= set(
            predictions
        )
        assert (
            len(predictions) - len(set(predictions)) <= 2 * batch
        )  # the batch in flight, sent twice at most
        wait_until(
            lambda: stream_records(monitor_port) == len(predictions),
            90,
            message="monitor read everything",
        )
        assert scorer.poll() is None and monitor.poll() is None, (
            "a service exited instead of reconnecting"
        )

        # Committed offsets survived too: a new scorer in the group scores nothing again.
        assert stop_process(scorer) == 0
        committed = kafka.committed("scorer", "FEATURES_TOPIC")[0]
        scorer_port = free_port()
        scorer = kafka.start(
            "scorer",
            "run",
            "--group",
            "scorer",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(scorer_port),
            log=tmp_path / "scorer-2.log",
        )
        one_more = kafka.run(
            "producer",
            "simulate",
            "--count",
            "1",
            "--rate",
            "0",
            "--label-delay",
            "0",
            "--id-prefix",
            "one-more",
        )
        assert one_more.returncode == 0, one_more.stderr.decode()[-2000:]
        # Once it has joined and read the new record, it has read nothing else: the group's
        # offsets from before the broker's death were there. One partition, read in order: when the
        # group's commit has passed the new record at the log's end, everything it read is counted.
        wait_until(
            lambda: counter(scorer_port, "scorer_records_consumed_total") >= 1,
            90,
            message="new scorer working",
        )
        wait_until(
            lambda: kafka.committed("scorer", "FEATURES_TOPIC")[0] > committed,
            60,
            message="the new scorer committing past the new record",
        )
        assert counter(scorer_port, "scorer_records_consumed_total") == 1
    finally:
        for process in (monitor, scorer, producer):
            stop_process(process)
        broker.stop()
        s3.stop()
