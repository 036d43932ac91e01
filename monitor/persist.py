"""What the monitor keeps across restarts and rebalances: its state snapshots, the consumer positions
they cover, and the dead letters that must be delivered before a snapshot covers them.

Three jobs, one class each (the snapshot format and the state topic's I/O are `monitor.state`):
- `restore`: on start, the group's newest snapshot into the monitor; returns the positions it covers.
- `Rebalance`: partitions assigned -> seek to the monitor's own positions; revoked -> snapshot first.
- `Persister`: every interval, dead letters acknowledged, then the snapshot, then the group's commit.

Offsets and windows always agree: the snapshot holds the positions of exactly the records in its
windows, the group's offsets are committed only after the snapshot is acknowledged, and on restart
the consumer seeks to the snapshot's positions, not the group's. A record refused by the decoder is
"in" the snapshot once its dead letter is on the monitor DLQ: `Persister` waits for every dead
letter's acknowledgement before it writes a snapshot whose positions are past it, so a refused
record is never lost (a snapshot that fails is retried with the dead letters still held).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from contract.delivery import discard, produce, producer_failure, resending_producer
from contract.rules import Rejection
from contract.settings import ensure_topics
from monitor.drift import DriftMonitor
from monitor.metrics import MonitorMetrics
from monitor.state import Offsets, create_state_topic, encode_state, read_latest, write_state

log = logging.getLogger(__name__)

DETAIL_BYTES = 1000  # a dead letter's detail header is cut to this, as the scorer's


class StateMismatch(ValueError):
    """The group's snapshot was written for another window shape or reference."""


def restore(monitor: DriftMonitor, state_topic: str, group: str, window: dict[str, Any]) -> Offsets:
    """Load the group's newest snapshot into `monitor`; the positions it covers ({} when there is none).

    A snapshot of another window shape or reference is refused (StateMismatch): its panes would mean
    nothing in this monitor's windows."""
    state = read_latest(state_topic, group)
    if state is None:
        log.info("no state for group %s in %s: starting with empty windows", group, state_topic)
        return {}
    if state["window"] != window:
        raise StateMismatch(f"the state of group {group} was written for window {state['window']}, "
                            f"not {window}: use the same --window/--step or a new --group")
    try:
        monitor.load_dict(state["monitor"])
    except ValueError as exc:
        raise StateMismatch(f"state of group {group}: {exc}") from None
    positions = dict(state["offsets"])
    counters = monitor.counters
    log.info("restored state of group %s: %d records seen, %d pending joins, offsets %s", group,
             counters["records"], counters["pending"], {f"{t}[{p}]": o for (t, p), o in sorted(positions.items())})
    return positions


class DeadLetters:
    """Refused records on their way to the monitor DLQ: the original bytes and key, with headers
    reason, detail, source_topic, source_partition, source_offset (as the scorer's DLQ). Each is
    held until the broker acknowledges it, so a failed delivery is sent again, not lost."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.held: dict[int, tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = {}  # number -> message
        self.numbered = 0  # dead letters ever sent: the next one's number
        self.last_error: str | None = None

    def send(self, producer: Producer, message: Message, rejection: Rejection) -> None:
        headers = [("reason", rejection.reason.encode()), ("detail", rejection.detail.encode()[:DETAIL_BYTES]),
                   ("source_topic", message.topic().encode()), ("source_partition", str(message.partition()).encode()),
                   ("source_offset", str(message.offset()).encode())]
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


class Persister:
    """The persist job: the one producer for dead letters and snapshots, and what was written.

    `changed`: records were processed since the last snapshot. `gave_up`: a snapshot failed once
    stopping had begun, so no further try is made (the broker may be gone)."""

    def __init__(self, monitor: DriftMonitor, positions: Offsets, *, group: str, window: dict[str, Any],
                 state_topic: str, dlq_topic: str, partitions: int, interval: float, metrics: MonitorMetrics,
                 stop: threading.Event) -> None:
        self.monitor, self.positions = monitor, positions
        self.group, self.window, self.state_topic, self.partitions = group, window, state_topic, partitions
        self.interval, self.metrics, self.stop = interval, metrics, stop
        self.dead_letters = DeadLetters(dlq_topic)
        self.producer = resending_producer()
        self.changed = False
        self.gave_up = False

    def dead_letter(self, message: Message, rejection: Rejection) -> None:
        self.dead_letters.send(self.producer, message, rejection)

    def persist(self, consumer: Consumer) -> bool:
        """Dead letters acknowledged, then the snapshot, then the same offsets committed to the group;
        False if something was not delivered.

        A failed snapshot is not fatal: the previous one stays in force with its offsets (a restart
        would replay from there), and the next interval tries again with a new producer, the dead
        letters still held and, if the broker lost them, re-created topics. Once stopping has begun
        there is no next interval: nothing is prepared for one and no other try is made.
        """
        try:
            # The snapshot's positions are past every record refused so far: their dead letters
            # must be on the DLQ first. The state goes through the same producer, but write_state
            # only checks its own messages' reports, so the dead letters are flushed and checked here.
            self.producer.flush(30)
            if self.dead_letters.held:
                raise RuntimeError(f"{len(self.dead_letters.held)} records refused not delivered to "
                                   f"{self.dead_letters.topic}: {self.dead_letters.last_error or 'flush timed out'}")
            value = encode_state(self.group, self.window, self.positions, self.monitor.to_dict())
            write_state(self.producer, self.state_topic, self.group, value)
        except (RuntimeError, KafkaException, SystemError) as exc:  # not acknowledged, or the producer is dead
            if isinstance(exc, SystemError) and producer_failure(exc) is None:
                raise
            self._failed(exc)
            return False
        self.changed = False
        self.metrics.state_writes.inc()
        self.metrics.state_bytes.set(len(value))
        # Asynchronous (see scorer.service.commit: a synchronous commit can block through a
        # rebalance). The snapshot, not the group, is what a restart resumes from; the committed
        # offsets serve lag tools and later assignments, so a failed commit is only logged.
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.positions.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("offset commit failed (state snapshot is delivered): %s", exc)
        return True

    def _failed(self, exc: Exception) -> None:
        self.metrics.state_failures.inc()
        discard(self.producer)
        if self.stop.is_set():
            self.gave_up = True
            log.warning("last state snapshot not saved: %s", exc)
            return
        log.warning("state snapshot not saved, trying again in %.0f s: %s", self.interval, exc)
        self.producer = resending_producer()
        self.dead_letters.resend(self.producer)
        try:  # a replaced broker lost the topics too; producers do not auto-create them
            create_state_topic(self.state_topic, timeout=10)
            ensure_topics([self.dead_letters.topic], self.partitions, timeout=10)
        except KafkaException as create_error:
            log.warning("cannot check the state and DLQ topics yet: %s", create_error)

    def close(self) -> None:
        self.producer.flush(10)


class Rebalance:
    """The rebalance job: where the consumer resumes when partitions come, a snapshot before they go.

    `closing` is set before consumer.close(): the last snapshot is already written then."""

    def __init__(self, positions: Offsets, persister: Persister) -> None:
        self.positions, self.persister = positions, persister
        self.closing = False

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Resume where the windows are (the restored snapshot's positions, or what this process
        # has read), not at the group's committed offsets, which may lag them (a commit that did
        # not land): those records would be counted twice. The exception is a broker that lost
        # the group (a replaced memory broker: no committed offset at all for a partition we have
        # read), whose logs start again at 0 and are read from their start.
        held = [tp for tp in partitions if (tp.topic, tp.partition) in self.positions]
        committed = {}
        if held:
            try:
                committed = {(tp.topic, tp.partition): tp.offset
                             for tp in consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in held], timeout=10)}
            except KafkaException as exc:
                log.warning("cannot read the group's committed offsets (%s): resuming at the monitor's own positions", exc)
        for tp in held:
            key = (tp.topic, tp.partition)
            if committed.get(key, 0) < 0 and self.positions[key] > 0:
                log.warning("the group has no committed offset for %s[%d] although the monitor read it up to %d: the "
                            "broker lost the group (replaced?); reading that partition from its start",
                            tp.topic, tp.partition, self.positions[key])
                tp.offset = OFFSET_BEGINNING
            else:
                tp.offset = self.positions[key]
        consumer.assign(partitions)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Snapshot and commit before partitions go (not while closing: run() has saved already)."""
        if self.persister.changed and not self.closing:
            self.persister.persist(consumer)
        consumer.unassign()
