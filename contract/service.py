"""What every service's shell shares: stopping on signals, and telling records from consumer events."""
from __future__ import annotations

import logging
import signal
import threading

from confluent_kafka import KafkaError, KafkaException, Message

log = logging.getLogger(__name__)


def stop_on_signals(what: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT; the service finishes `what` and stops."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("%s: %s, then stopping", signal.Signals(signum).name, what)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def is_record(message: Message) -> bool:
    """True for a record; False for a benign event; raises on an error the service cannot survive."""
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    if error.fatal() or not error.retriable():
        raise KafkaException(error)
    log.warning("consumer: %s", error)
    return False
