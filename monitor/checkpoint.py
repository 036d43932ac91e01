"""The protocol at-least-once rests on, once for every process of the monitor (`run`, `worker`,
`evaluate`): what was produced is acknowledged, then the state is written, then the offsets are
committed.

Offsets and state always agree:
1. every message a process produced from its input (dead letters of refused records, a worker's
   pane reports) is acknowledged by the broker first: a snapshot whose positions are past a record
   must not be written while that record's output could still be lost;
2. then the state (windows, pending joins, positions) goes to the compacted state topic, keyed by
   what it covers (`<group>`, `<group>/partition/<p>`, `<group>/evaluator`; format in `monitor.state`);
3. then the same positions are committed to the consumer group. The snapshot, not the group, is
   what a restart resumes from; the commit serves lag tools and later assignments, so a commit that
   fails is only logged.
A snapshot that fails is not fatal: the previous one stays in force (a restart replays from its
positions), the next interval tries again with a new producer, what was not acknowledged sent
again, and the topics created again if the broker lost them. Once stopping has begun no further
try is made: the broker may be gone, and a stop must not wait for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from contract.delivery import DeliveryReport, discard, produce, producer_failure, resending_producer
from contract.rules import Rejection
from contract.settings import ensure_topics
from monitor.state import Offsets, create_state_topic, encode_state, write_state

log = logging.getLogger(__name__)

DETAIL_BYTES = 1000  # a dead letter's detail header is cut to this, as the scorer's


class StateMismatch(ValueError):
    """A saved state was written for another window shape or reference."""


def matching(state: Mapping[str, Any], window: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """`state` when it was written for this window shape; StateMismatch saying what to change otherwise
    (its pane ids would mean nothing in these windows)."""
    if state["window"] != dict(window):
        raise StateMismatch(
            f"the state of {what} was written for window {state['window']}, not {dict(window)}: "
            "use the same --window/--step or a new --group"
        )
    return state


class DeadLetters:
    """Refused records on their way to the monitor DLQ: the original bytes and key, with headers
    reason, detail, source_topic, source_partition, source_offset (as the scorer's DLQ). Each is
    held until the broker acknowledges it, so a failed delivery is sent again, not lost."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.held: dict[
            int, tuple[bytes, bytes | None, list[tuple[str, bytes]]]
        ] = {}  # number -> message
        self.numbered = 0  # dead letters ever sent: the next one's number
        self.last_error: str | None = None

    def send(self, producer: Producer, message: Message, rejection: Rejection) -> None:
        headers = [
            ("reason", rejection.reason.encode()),
            ("detail", rejection.detail.encode()[:DETAIL_BYTES]),
            ("source_topic", message.topic().encode()),
            ("source_partition", str(message.partition()).encode()),
            ("source_offset", str(message.offset()).encode()),
        ]
        self.numbered += 1
        self.held[self.numbered] = (message.value() or b"", message.key(), headers)
        self._produce(producer, self.numbered)

    def resend(self, producer: Producer) -> None:
        """Every dead letter not acknowledged yet, through a new producer (the old one was discarded)."""
        for number in list(self.held):
            self._produce(producer, number)

    def _produce(self, producer: Producer, number: int) -> None:
        value, key, headers = self.held[number]
        produce(producer, self.topic, value, key, _Acknowledgement(self, number), headers=headers)


class _Acknowledgement:
    """The delivery callback of one dead letter (contract.delivery.produce calls `on_delivery`)."""

    __slots__ = ("letters", "number")

    def __init__(self, letters: DeadLetters, number: int) -> None:
        self.letters, self.number = letters, number

    def on_delivery(self, error: KafkaError | None, _message: object) -> None:
        if error is None:
            self.letters.held.pop(self.number, None)
        else:
            self.letters.last_error = str(error)


class Checkpoint:
    """The one producer of a monitor process besides its gauges (dead letters, outputs such as pane
    reports, state snapshots) and the protocol that saves: `save(states, consumer, offsets)`.

    `changed` is for the caller (something to save since the last snapshot); `gave_up`: a snapshot
    failed once stopping had begun, so none is tried again. `topics`: what to create again after a
    failure (a replaced broker lost them); the state topic is always among them."""

    def __init__(
        self,
        *,
        state_topic: str,
        dlq_topic: str,
        partitions: int,
        interval: float,
        stop: threading.Event,
        metrics: Any,
        output_topics: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.state_topic, self.partitions, self.interval, self.stop = (
            state_topic,
            partitions,
            interval,
            stop,
        )
        self.output_topics = [(dlq_topic, partitions), *output_topics]
        self.dead_letters = DeadLetters(dlq_topic)
        self.producer = resending_producer()
        self.outputs = DeliveryReport()  # outputs produced since the last snapshot
        self.changed = False
        self.gave_up = False
        # the process's state_writes and state_failures counters and state_bytes gauge (monitor.metrics)
        self.writes, self.failures, self.size = (
            metrics.state_writes,
            metrics.state_failures,
            metrics.state_bytes,
        )

    def dead_letter(self, message: Message, rejection: Rejection) -> None:
        self.dead_letters.send(self.producer, message, rejection)

    def output(self, topic: str, value: bytes, key: str | bytes | None) -> None:
        """A message derived from the input (a pane report): acknowledged before the next snapshot."""
        produce(self.producer, topic, value, key, self.outputs)

    def save(
        self,
        states: Iterable[tuple[str, Mapping[str, Any], Offsets, Mapping[str, Any]]],
        consumer: Consumer | None = None,
        offsets: Offsets | None = None,
    ) -> bool:
        """Outputs and dead letters acknowledged, then each (key, window shape, positions it covers,
        state) written, then `offsets` committed through `consumer`; False if something was not
        delivered (the previous snapshots stay in force; see the module doc)."""
        try:
            # write_state checks its own messages' reports only: the rest is flushed and checked here.
            if self.producer.flush(30) or self.outputs.failed or self.dead_letters.held:
                raise RuntimeError(
                    f"{self.outputs.failed} outputs and {len(self.dead_letters.held)} dead letters not delivered: "
                    f"{self.outputs.last_error or self.dead_letters.last_error or 'flush timed out'}"
                )
            for key, window, positions, state in states:
                value = encode_state(key, window, positions, state)
                write_state(self.producer, self.state_topic, key, value)
                self.writes.inc()
                self.size.set(len(value))
        except (
            RuntimeError,
            KafkaException,
            SystemError,
        ) as exc:  # not acknowledged, or the producer is dead
            if isinstance(exc, SystemError) and producer_failure(exc) is None:
                raise
            self._failed(exc)
            return False
        self.outputs, self.changed = DeliveryReport(), False
        if consumer is not None and offsets:
            # Asynchronous (see scorer.service.commit: a synchronous commit can block through a rebalance).
            try:
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=True,
                )
            except KafkaException as exc:
                log.warning("offset commit failed (the state snapshot is delivered): %s", exc)
        return True

    def _failed(self, exc: Exception) -> None:
        self.failures.inc()
        discard(self.producer)
        if self.stop.is_set():
            self.gave_up = True
            log.warning("last state snapshot not saved: %s", exc)
            return
        log.warning("state snapshot not saved, trying again in %.0f s: %s", self.interval, exc)
        self.producer = resending_producer()
        self.outputs = (
            DeliveryReport()
        )  # the caller reports its outputs again (they replace, never add)
        self.dead_letters.resend(self.producer)
        try:  # a replaced broker lost the topics too; producers do not auto-create them
            create_state_topic(self.state_topic, timeout=10)
            for topic, partitions in self.output_topics:
                ensure_topics([topic], partitions, timeout=10)
        except KafkaException as create_error:
            log.warning("cannot check the state and output topics yet: %s", create_error)

    def close(self) -> None:
        self.producer.flush(10)
