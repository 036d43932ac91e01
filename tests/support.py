"""Helpers for tests that talk to the local broker: per-test topics, CLI runs, draining topics."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class KafkaEnv:
    """Environment for one test: its own topics on the shared local broker."""

    bootstrap: str
    suffix: str
    model_dir: Path

    @property
    def topics(self) -> dict[str, str]:
        return {
            "FEATURES_TOPIC": f"features-{self.suffix}",
            "LABELS_TOPIC": f"labels-{self.suffix}",
            "PREDICTIONS_TOPIC": f"predictions-{self.suffix}",
            "DLQ_TOPIC": f"dlq-{self.suffix}",
        }

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            # First join of a group takes about half the session timeout on Tansu.
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "MODEL_DIR": str(self.model_dir),
            "PYTHONUNBUFFERED": "1",
            **self.topics,
            **extra,
        }

    def run(self, module: str, *args: str, timeout: float = 120, input: bytes | None = None, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], env=self.env(**extra), cwd=ROOT,
                              capture_output=True, timeout=timeout, input=input)

    def start(self, module: str, *args: str, log: Path, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", module, *args], env=self.env(**extra), cwd=ROOT,
                                stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def consume(self, topic_env: str, expected: int, timeout: float = 90.0, idle: float = 0.0) -> list[Message]:
        """Read a topic from the start until `expected` messages (or, with `idle`, quiet for that long)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "session.timeout.ms": 6000})
        topic = self.topics[topic_env]
        deadline = time.monotonic() + timeout
        while topic not in consumer.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            time.sleep(0.2)
        consumer.subscribe([topic])
        messages: list[Message] = []
        last = time.monotonic()
        try:
            while time.monotonic() < deadline:
                if expected and len(messages) >= expected:
                    break
                if idle and messages and time.monotonic() - last > idle:
                    break
                for message in consumer.consume(1000, 0.5):
                    if message.error():
                        assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                        continue
                    messages.append(message)
                    last = time.monotonic()
        finally:
            consumer.close()
        return messages


def wait_until(condition, timeout: float, interval: float = 0.2, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout} s")
        time.sleep(interval)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode
