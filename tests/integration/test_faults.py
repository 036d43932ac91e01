"""Faults the services must ride out without a restart by hand."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from devstack.broker import free_port, start_broker
from tests.support import KafkaEnv, stop_process, wait_until

pytestmark = pytest.mark.broker


def test_services_wait_for_a_broker_that_is_not_there_yet(tmp_path, model_dir):
    port = free_port()
    kafka = KafkaEnv(f"127.0.0.1:{port}", uuid.uuid4().hex[:10], model_dir)
    log = tmp_path / "scorer.log"
    scorer = kafka.start("scorer", "run", "--metrics-port", "0", "--group", f"s-{kafka.suffix}", log=log)
    broker = None
    try:
        wait_until(lambda: "waiting for Kafka at" in log.read_text(), 60, message="a clear waiting line")
        assert scorer.poll() is None, "the scorer gave up instead of waiting"
        broker = start_broker(port, log_path=tmp_path / "tansu.log")
        assert kafka.run("producer", "simulate", "--count", "200", "--rate", "0", "--label-delay", "0").returncode == 0
        predictions = kafka.consume("PREDICTIONS_TOPIC", expected=200, timeout=90)
        assert sorted(json.loads(m.value())["id"] for m in predictions) == sorted(f"sim-{i}" for i in range(200))
        assert "is reachable" in log.read_text()
    finally:
        assert stop_process(scorer) == 0
        if broker:
            broker.stop()


def test_a_broker_that_never_comes_fails_with_a_message(tmp_path, model_dir):
    kafka = KafkaEnv(f"127.0.0.1:{free_port()}", uuid.uuid4().hex[:10], model_dir)
    result = kafka.run("scorer", "run", "--metrics-port", "0", "--startup-timeout", "3", timeout=60)
    assert result.returncode == 2
    assert b"error: Kafka at" in result.stderr and b"did not answer within 3 s: check KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("module, args", [("scorer", ["run", "--metrics-port", "0"]),
                                          ("monitor", ["run", "--metrics-port", "0"]),
                                          ("producer", ["simulate", "--count", "0"])])
def test_sigterm_while_waiting_for_the_broker_exits_0_at_once(tmp_path, model_dir, module, args):
    kafka = KafkaEnv(f"127.0.0.1:{free_port()}", uuid.uuid4().hex[:10], model_dir)
    log = tmp_path / f"{module}.log"
    process = kafka.start(module, *args, log=log)
    try:
        wait_until(lambda: "waiting for Kafka at" in log.read_text(), 60, message="a clear waiting line")
        started = time.monotonic()
        process.terminate()
        assert process.wait(10) == 0
        assert time.monotonic() - started < 3
    finally:
        stop_process(process)
