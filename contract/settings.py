"""Topic names and Kafka client settings, read from the environment in one place.

Every librdkafka key comes from here: `KAFKA_BOOTSTRAP_SERVERS` gives `bootstrap.servers`, and
any other `KAFKA_<KEY>` maps to the dotted librdkafka key (`KAFKA_SECURITY_PROTOCOL` ->
`security.protocol`, `KAFKA_SASL_MECHANISMS` -> `sasl.mechanisms`), so SASL/SSL clusters need
no code change.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_PARTITIONS = 3

# Env vars that look like KAFKA_* but configure the broker container, not a client.
_NOT_CLIENT_KEYS = frozenset(
    {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS", "KAFKA_LOG4J_OPTS"}
)


@dataclass(frozen=True)
class Topics:
    """Every topic a service reads or writes. Defaults derive from the model's name (the schema's
    `name`: diamonds -> diamonds, diamonds.labels, ...), so two models share a broker without
    sharing a topic; each is overridden by its env var."""

    features: str = "diamonds"
    labels: str = "diamonds.labels"
    predictions: str = "diamonds.predictions"
    dlq: str = "diamonds.dlq"  # records the scorer refused
    monitor_dlq: str = "diamonds.monitor-dlq"  # predictions and labels the monitor refused
    monitor_state: str = "diamonds.monitor-state"  # compacted: the monitor's window snapshots
    monitor_panes: str = (
        "diamonds.monitor-panes"  # monitor workers' closed panes, for the one evaluator
    )

    ENV = {
        "features": "FEATURES_TOPIC",
        "labels": "LABELS_TOPIC",
        "predictions": "PREDICTIONS_TOPIC",
        "dlq": "DLQ_TOPIC",
        "monitor_dlq": "MONITOR_DLQ_TOPIC",
        "monitor_state": "MONITOR_STATE_TOPIC",
        "monitor_panes": "MONITOR_PANES_TOPIC",
    }
    SUFFIX = {
        "features": "",
        "labels": ".labels",
        "predictions": ".predictions",
        "dlq": ".dlq",
        "monitor_dlq": ".monitor-dlq",
        "monitor_state": ".monitor-state",
        "monitor_panes": ".monitor-panes",
    }

    @classmethod
    def for_model(cls, model: str = "diamonds", environ: Mapping[str, str] | None = None) -> Topics:
        """The model's topics: `<model><suffix>` unless the env var names another."""
        env = os.environ if environ is None else environ
        return cls(
            **{role: env.get(var) or f"{model}{cls.SUFFIX[role]}" for role, var in cls.ENV.items()}
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Topics:
        return cls.for_model("diamonds", environ)

    @classmethod
    def help(cls, roles: tuple[str, ...]) -> str:
        """For --help: which env var names each topic, and its default."""
        return "; ".join(
            f"{role.replace('_', ' ')} topic from {cls.ENV[role]} (default <model>{cls.SUFFIX[role]})"
            for role in roles
        )


@dataclass(frozen=True)
class Groups:
    """Consumer group names (the monitor's is also the key of its state snapshots)."""

    scorer: str = "scorer"
    monitor: str = "monitor"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Groups:
        env = os.environ if environ is None else environ
        return cls(
            scorer=env.get("SCORER_GROUP") or cls.scorer,
            monitor=env.get("MONITOR_GROUP") or cls.monitor,
        )


# librdkafka properties that only one kind of client knows (the C / P column of librdkafka's
# CONFIGURATION.md). Passed to the other kind they are ignored with a CONFWARN line at every
# start, so a KAFKA_SESSION_TIMEOUT_MS meant for consumers would warn in every producer.
CONSUMER_ONLY = frozenset(
    {
        "group.id",
        "group.instance.id",
        "group.protocol",
        "group.protocol.type",
        "group.remote.assignor",
        "partition.assignment.strategy",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "coordinator.query.interval.ms",
        "max.poll.interval.ms",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "enable.auto.offset.store",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "fetch.wait.max.ms",
        "fetch.queue.backoff.ms",
        "fetch.message.max.bytes",
        "max.partition.fetch.bytes",
        "fetch.max.bytes",
        "fetch.min.bytes",
        "fetch.error.backoff.ms",
        "isolation.level",
        "enable.partition.eof",
        "check.crcs",
        "auto.offset.reset",
        "consume.callback.max.messages",
        "offset.store.method",
        "auto.commit.enable",
    }
)
PRODUCER_ONLY = frozenset(
    {
        "transactional.id",
        "transaction.timeout.ms",
        "enable.idempotence",
        "enable.gapless.guarantee",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.ms",
        "linger.ms",
        "message.send.max.retries",
        "retries",
        "queue.buffering.backpressure.threshold",
        "compression.codec",
        "compression.type",
        "compression.level",
        "batch.num.messages",
        "batch.size",
        "delivery.report.only.error",
        "sticky.partitioning.linger.ms",
        "request.required.acks",
        "acks",
        "request.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "partitioner",
    }
)
_ROLE_SKIPS = {
    "consumer": PRODUCER_ONLY,
    "producer": CONSUMER_ONLY,
    "admin": CONSUMER_ONLY | PRODUCER_ONLY,
    "any": frozenset(),
}


def client_config(environ: Mapping[str, str] | None = None, role: str = "admin") -> dict[str, str]:
    """librdkafka settings from KAFKA_* env vars for one kind of client (consumer, producer, admin):
    keys only the other kind knows are left out."""
    env = os.environ if environ is None else environ
    skip = _ROLE_SKIPS[role]
    config = {"bootstrap.servers": DEFAULT_BOOTSTRAP}
    for name, value in env.items():
        if name.startswith("KAFKA_") and name not in _NOT_CLIENT_KEYS and len(name) > len("KAFKA_"):
            key = name[len("KAFKA_") :].lower().replace("_", ".")
            if key not in skip:
                config[key] = value
    return config


# Services that re-send a failed batch with a new producer (scorer, monitor) give up on a
# message after 15 s instead of librdkafka's 5 minutes: an idempotent producer can stay stuck
# for good on a broker that lost its producer ids (see docs/operations.md, "Faults"). The command-line
# producers keep the default and so ride out outages of up to 5 minutes.
RESEND_AFTER_MS = 15_000


def producer_config(
    environ: Mapping[str, str] | None = None, message_timeout_ms: int | None = None
) -> dict[str, object]:
    """Durable producer: acks from all replicas, idempotent so retries add no duplicates."""
    return {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        **({"message.timeout.ms": message_timeout_ms} if message_timeout_ms else {}),
        # Topics are created by the services with their partition count and settings; a
        # replaced broker must not get them back auto-created with the broker's defaults.
        "allow.auto.create.topics": False,
        **client_config(environ, "producer"),
    }


# Some brokers (Tansu among them) hold a fetch for the whole fetch.wait.max.ms even when data is
# there, so a record waits up to that long in the broker before a consumer sees it. Measured on
# Tansu at 1,000 records/s (produce -> consumed, bench/latency_bench.py's findings): 50 ms gave
# p50 23 / p99 41 ms, 10 ms gave 12 / 27 ms. A shorter wait costs fetches on an idle topic:
# the broker used 3.3% of a core for one idle consumer at 50 ms, 6.0% at 10 ms (10.6% at 5 ms).
FETCH_WAIT_MS = 50
# The scorer is the latency path (10 ms took ~10 ms off its p50), but at 5,000 records/s its
# fetches every 10 ms helped push Tansu past a core and the soak's scorer fell 250,000 records
# behind: the throughput end wins, it fetches like every other consumer.
SCORER_FETCH_WAIT_MS = FETCH_WAIT_MS


def consumer_config(
    group: str,
    environ: Mapping[str, str] | None = None,
    fetch_wait_ms: int = FETCH_WAIT_MS,
    same_partitions: bool = False,
) -> dict[str, object]:
    """Group consumer that commits only what the caller says is done (at-least-once).

    `fetch_wait_ms`: librdkafka's fetch.wait.max.ms (see FETCH_WAIT_MS); KAFKA_FETCH_WAIT_MAX_MS
    overrides it for every consumer (Tansu's s3:// engine needs 500, see docs/operations.md).
    `same_partitions`: each member gets the same partition numbers of every topic it subscribes
    to (the range assignment), so co-partitioned topics' records of one key meet on one member."""
    return {
        **({"partition.assignment.strategy": "range"} if same_partitions else {}),
        "group.id": group,
        # A new group reads the topic from its start, so nothing produced before the first
        # deployment is skipped.
        "auto.offset.reset": "earliest",
        # Offsets are stored by the service after its outputs are delivered, then committed.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": fetch_wait_ms,
        # When the local queue is over its thresholds (queued.min.messages, ...), librdkafka waits
        # this long before fetching again: 1 s by default, which starved a consumer that spends a
        # few microseconds per record (bench/consumer_bench.py: with 2 us of work per record consume()
        # cost 6.7 us a record, 1.6 us with 10 ms). The thresholds still bound memory; only the pause is shorter.
        "fetch.queue.backoff.ms": 10,
        # A topic that disappears with a replaced broker and is created again is seen within
        # seconds instead of librdkafka's default 5 minutes.
        "topic.metadata.refresh.interval.ms": 5000,
        **client_config(environ, "consumer"),
    }


def reader_config(
    group: str, from_beginning: bool = True, environ: Mapping[str, str] | None = None
) -> dict[str, object]:
    """A consumer that reads and never commits (a tail, the state reader, the evaluator, which
    keeps its position in its own state): a group of its own, no offsets moved.

    'latest' (from_beginning=False) asks the broker for end offsets, which some brokers (Tansu)
    only approximate (see docs/operations.md)."""
    return {
        "enable.auto.commit": False,
        "fetch.wait.max.ms": FETCH_WAIT_MS,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        **client_config(environ, "consumer"),
        "group.id": group,
    }


def acknowledged_producer_config(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """A producer whose messages count once every replica has them (acks=all), without the
    services' idempotence and batching: for a few control messages (a state topic's read barrier)."""
    return {"acks": "all", **client_config(environ, "producer")}


def ensure_topics(
    names: list[str],
    partitions: int = DEFAULT_PARTITIONS,
    environ: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(environ))
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [n for n in dict.fromkeys(names) if n not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions) for n in missing], operation_timeout=timeout
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
            log.info("created topic %s with %d partitions", name, partitions)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def partition_counts(
    names: list[str], environ: Mapping[str, str] | None = None, timeout: float = 30.0
) -> dict[str, int]:
    """{topic: its partition count} (0 for a topic that does not exist)."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(client_config(environ)).list_topics(timeout=timeout).topics
    return {name: len(metadata[name].partitions) if name in metadata else 0 for name in names}
