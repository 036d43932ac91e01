"""Producing with back-pressure and delivery accounting, shared by every service that writes."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer

from contract.settings import RESEND_AFTER_MS, client_config, producer_config

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    """Counts filled by librdkafka's delivery callbacks (called from producer.poll/flush)."""

    delivered: int = 0
    failed: int = 0
    last_error: str | None = None
    failures: list[str] = field(default_factory=list)
    permanent: int = 0  # failures that sending again cannot fix (too large, not authorized, ...)

    def on_delivery(self, error: KafkaError | None, _message: object) -> None:
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        self.last_error = str(error)
        if not is_transient(error):
            self.permanent += 1
        if len(self.failures) < 10:  # keep a few for the summary, not all of them
            self.failures.append(str(error))


# Failures a new attempt can cure (a delivery with a new producer, a consumer by polling on):
# the broker was away, was replaced (its producer ids and topics gone), or moved a partition.
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError._MAX_POLL_EXCEEDED,
        # The producer itself is dead (e.g. fenced after a broker lost its ids): a new one is the cure.
        KafkaError._FATAL,
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
    }
)


def is_transient(error: KafkaError) -> bool:
    return error.code() in _TRANSIENT_CODES or (error.retriable() and not error.fatal())


def producer_failure(exc: BaseException) -> KafkaError | None:
    """The KafkaError behind an exception from produce()/flush(), or None if it is not one.

    A fatal producer error raised while librdkafka runs a Python callback surfaces as a
    SystemError whose cause is the KafkaException."""
    for candidate in (exc, exc.__cause__):
        if (
            isinstance(candidate, KafkaException)
            and candidate.args
            and isinstance(candidate.args[0], KafkaError)
        ):
            return candidate.args[0]
    return None


def resending_producer(errors_only: bool = False) -> Producer:
    """A producer for the services that re-send what failed (scorer, monitor): it gives up on a
    message after RESEND_AFTER_MS, and the caller sends again with a new one.

    `errors_only`: delivery callbacks for failed messages only (librdkafka's
    delivery.report.only.error). A callback per acknowledged message costs the scorer ~1 us a
    record; after a flush() that returns 0, whatever was not reported failed was delivered."""
    config = producer_config(message_timeout_ms=RESEND_AFTER_MS)
    if errors_only:
        config["delivery.report.only.error"] = True
    return Producer(config)


def discard(producer: Producer) -> None:
    """Drop what a failed producer still holds before it is replaced."""
    with contextlib.suppress(KafkaException):  # a fatal producer may refuse even that
        producer.purge()


def produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: str | bytes | None,
    report: DeliveryReport,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> None:
    """Queue one message; when librdkafka's queue is full, serve callbacks until there is room."""
    while True:
        try:
            producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=report.on_delivery
            )
            return
        except BufferError:
            producer.poll(0.05)


def produce_all(
    producer: Producer,
    topic: str,
    keyed_values: Iterable[tuple[str | bytes, bytes]],
    report: DeliveryReport,
) -> None:
    """Queue (key, value) pairs to one topic: `produce` for a batch, without a Python call per
    message in between (the scorer's hot path); a full queue is served as `produce` does."""
    send, on_delivery = producer.produce, report.on_delivery
    for key, value in keyed_values:
        try:
            send(topic, value, key, on_delivery=on_delivery)
        except BufferError:
            produce(producer, topic, value, key, report)


class BrokerUnavailable(RuntimeError):
    """The cluster did not answer within the start-up timeout."""


def wait_for_broker(
    environ: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    interval: float = 2.0,
    stop: threading.Event | None = None,
) -> bool:
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
            admin.list_topics(timeout=interval)  # short, so a SIGTERM is answered within `interval`
            if attempt > 1:
                log.info("Kafka at %s is reachable", config["bootstrap.servers"])
            return True
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"Kafka at {config['bootstrap.servers']} did not answer within {timeout:.0f} s: "
                    "check KAFKA_BOOTSTRAP_SERVERS and that the broker is running"
                ) from exc
            log.warning(
                "waiting for Kafka at %s (attempt %d): %s",
                config["bootstrap.servers"],
                attempt,
                exc,
            )
            stop.wait(interval)
    return False


def startup_exit_code(timeout: float = 120.0, stop: threading.Event | None = None) -> int | None:
    """Wait for the broker as a command starts: None to go on, else the exit code to end with
    (0 when stopped while waiting, 2 with a message when the broker never answered)."""
    try:
        return None if wait_for_broker(timeout=timeout, stop=stop) else 0
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
