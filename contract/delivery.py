"""Producing with back-pressure and delivery accounting, shared by every service that writes."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from contract.settings import client_config

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    """Counts filled by librdkafka's delivery callbacks (called from producer.poll/flush)."""

    delivered: int = 0
    failed: int = 0
    last_error: str | None = None
    failures: list[str] = field(default_factory=list)

    def on_delivery(self, error: KafkaError | None, _message: object) -> None:
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        self.last_error = str(error)
        if len(self.failures) < 10:  # keep a few for the summary, not all of them
            self.failures.append(str(error))


def produce(producer: Producer, topic: str, value: bytes, key: str | bytes | None, report: DeliveryReport,
            headers: Sequence[tuple[str, bytes]] | None = None) -> None:
    """Queue one message; when librdkafka's queue is full, serve callbacks until there is room."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report.on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


class BrokerUnavailable(RuntimeError):
    """The cluster did not answer within the start-up timeout."""


def wait_for_broker(environ: Mapping[str, str] | None = None, timeout: float = 120.0, interval: float = 2.0,
                    stop: threading.Event | None = None) -> bool:
    """Block until the cluster answers a metadata request, logging each retry; False if `stop` was set first.

    Services started before the broker (compose, systemd) wait here instead of crashing, and a
    SIGTERM while waiting ends the wait at once.
    """
    from confluent_kafka.admin import AdminClient

    config = client_config(environ)
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    attempt = 0
    stop = stop or threading.Event()
    while not stop.is_set():
        attempt += 1
        try:
            admin.list_topics(timeout=min(interval * 2, 10.0))
            if attempt > 1:
                log.info("Kafka at %s is reachable", config["bootstrap.servers"])
            return True
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"Kafka at {config['bootstrap.servers']} did not answer within {timeout:.0f} s: "
                    "check KAFKA_BOOTSTRAP_SERVERS and that the broker is running"
                ) from exc
            log.warning("waiting for Kafka at %s (attempt %d): %s", config["bootstrap.servers"], attempt, exc)
            stop.wait(interval)
    return False
