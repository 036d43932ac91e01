"""Where `monitor run` gets its predictions from: one object per format of the inference log, each
answering the same questions, so the loop never asks which format it has.

    source = prediction_source(schema, topics)       once at start, from the schema's messages.format
    source.topics                                    the topics to read besides the labels
    source.read(messages) -> Read(batch, sent_ms, rejected)
    source.to_dict() / source.load_dict(state)       what it holds between messages, saved with the window

- `JsonPredictions` (format json, the default): one JSON object per prediction on the predictions
  topic (`monitor.decode.Decoder`).
- `AvroPredictions` (avro): the same objects in Avro with Confluent Schema Registry framing, turned
  into JSON by `contract.formats.avro.AvroReader` (registry from SCHEMA_REGISTRY_URL).
- `PairedPredictions` (oip-v2, kserve-cloudevents, seldon-v2): requests and responses on their own
  topics, many rows a message, joined by id (`monitor.pairing.RowJoin`, bounded, expiry sent to the
  DLQ with its reason: nothing leaves silently); the pending halves are saved with the window.
A refused message, row or pending half becomes a dead letter (`Read.rejected`); the loop sends it
to the monitor DLQ and counts it by reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from confluent_kafka import Message

from contract.formats import FORMAT_REASONS
from contract.formats.avro import BAD_MAGIC, NOT_AVRO, UNKNOWN_SCHEMA
from contract.rules import REJECTION_REASONS, Rejection
from contract.schema import Schema
from contract.settings import Topics
from monitor.decode import Decoder
from monitor.windows import PredictionBatch

log = logging.getLogger(__name__)

DEFAULT_PAIR_TTL_MS = 300_000  # a request waits 5 min of the responses' Kafka time for its response


@dataclass
class Read:
    """What a source made of a batch of its messages: the predictions (rows with their input
    partition), the Kafka time each row's message was sent (the gauges' lag), and the dead letters."""

    batch: PredictionBatch | None
    sent_ms: np.ndarray | None = None
    rejected: list[tuple[Any, Rejection]] = field(default_factory=list)  # (message, why)


class Refs:
    """A message known only by its place (topic, partition, offset): a pending half that expired,
    whose bytes were not kept; what the dead-letter writer reads of a message."""

    __slots__ = ("_topic", "_partition", "_offset")

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return b""

    def key(self) -> None:
        return None


def _accepted(column: np.ndarray, rejected: list[tuple[int, Rejection]]) -> np.ndarray:
    """A per-message column without the positions the decoder refused."""
    return np.delete(column, [position for position, _ in rejected]) if rejected else column


def _column(messages: list[Message], get) -> np.ndarray:
    return np.fromiter(map(get, messages), np.int64, len(messages))


class JsonPredictions:
    """One JSON object per prediction on the predictions topic."""

    shareable = (
        True  # workers can split it: predictions and labels co-partitioned, keyed by record id
    )
    reasons = REJECTION_REASONS  # why its messages can be refused (the metric's series, made at 0)

    def __init__(self, schema: Schema, topics: Topics) -> None:
        self.decoder, self.topics = Decoder(schema), (topics.predictions,)
        self.partitions = 1  # partitions the rows come from (the label join's clock waits for each)

    def expect_partitions(self, counts: Mapping[str, int]) -> None:
        """The partition counts of the topics (once they exist, at start)."""
        self.partitions = counts.get(self.topics[0], 1)

    def read(self, messages: list[Message]) -> Read:
        batch, rejected = self.decoder.predictions(
            [value or b"" for value in map(Message.value, messages)]
        )
        return self._read(messages, batch, rejected)

    def _read(
        self, messages: list[Message], batch: PredictionBatch, rejected: list[tuple[int, Rejection]]
    ) -> Read:
        dead = [(messages[position], why) for position, why in rejected]
        if not len(batch):
            return Read(None, None, dead)
        sent = _accepted(_column(messages, lambda m: m.timestamp()[1]), rejected)
        partitions = _accepted(_column(messages, Message.partition), rejected)
        return Read(replace(batch, partitions=partitions), sent, dead)

    def to_dict(self) -> dict[str, Any] | None:
        return None  # nothing held between messages

    def load_dict(self, state: Mapping[str, Any] | None) -> None:
        pass


class AvroPredictions(JsonPredictions):
    """The JSON layout in Avro, framed for a Confluent Schema Registry (SCHEMA_REGISTRY_URL and its
    auth settings SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO, ... from the environment)."""

    reasons = (*REJECTION_REASONS, BAD_MAGIC, UNKNOWN_SCHEMA, NOT_AVRO)

    def __init__(self, schema: Schema, topics: Topics, registry: Any = None) -> None:
        from contract.formats.avro import AvroReader

        super().__init__(schema, topics)
        self.reader = AvroReader(
            registry if registry is not None else registry_client(),
            schema.messages.timestamp_format,
        )

    def read(self, messages: list[Message]) -> Read:
        topic = self.topics[0]
        values, positions, refused = self.reader.read_batch(
            list(map(Message.value, messages)), topic, [m.headers() for m in messages]
        )
        batch, rejected = self.decoder.predictions(values)
        # back to positions among the messages: the reader's refusals, then the decoder's
        rejected = sorted(refused + [(positions[p], why) for p, why in rejected])
        return self._read(messages, batch, rejected)


def registry_client() -> Any:
    """The Schema Registry client from SCHEMA_REGISTRY_URL and SCHEMA_REGISTRY_<KEY> settings
    (basic.auth.user.info, ssl.ca.location, ...), as confluent-kafka names them."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    url = os.environ.get("SCHEMA_REGISTRY_URL")
    if not url:
        raise ValueError(
            "messages.format avro: set SCHEMA_REGISTRY_URL to the Schema Registry's address"
        )
    config = {"url": url}
    for name, value in os.environ.items():
        if name.startswith("SCHEMA_REGISTRY_") and name != "SCHEMA_REGISTRY_URL":
            config[name[len("SCHEMA_REGISTRY_") :].lower().replace("_", ".")] = value
    return SchemaRegistryClient.new_client(config)  # mock:// gives the library's in-memory registry


class PairedPredictions:
    """Requests and responses joined into prediction rows (see the module doc)."""

    # The serving systems' request and response topics are not co-partitioned (MLServer's client
    # hashes keys with murmur2, librdkafka with CRC32): a request and its response meet only in one
    # process, so `monitor worker` cannot split them.
    shareable = False
    partitions = 1  # the joined rows are one stream for the label join
    reasons = (*REJECTION_REASONS, *FORMAT_REASONS)

    def __init__(
        self, schema: Schema, ttl_ms: int = DEFAULT_PAIR_TTL_MS, max_pending_rows: int = 200_000
    ) -> None:
        from contract.formats import paired_decoder
        from monitor.pairing import RowJoin

        layout = schema.paired
        self.decoder = paired_decoder(schema, layout, schema.messages.timestamp_format)
        self.join = RowJoin(layout, ttl_ms=ttl_ms, max_pending_rows=max_pending_rows)
        self.topics = tuple(dict.fromkeys((layout.requests, layout.responses)))
        self.skipped: dict[str, int] = {}  # other models' messages on these topics, by model

    def expect_partitions(self, counts: Mapping[str, int]) -> None:
        """Each side's clock waits for all of its partitions (see monitor.pairing)."""
        layout = self.decoder.layout
        self.join.partitions = {
            "request": counts.get(layout.requests),
            "response": counts.get(layout.responses),
        }

    def read(self, messages: list[Message]) -> Read:
        dead: list[tuple[Any, Rejection]] = []
        sides: dict[tuple[str, int], list[Message]] = {}
        for message in messages:
            side = self.decoder.side(message.topic(), message.headers())
            if side is None:
                dead.append(
                    (
                        message,
                        Rejection(
                            "unknown_event", "neither a request nor a response of this model"
                        ),
                    )
                )
            elif (other := self.decoder.other_model(side, message.headers())) is not None:
                self._skip(other, message.topic())
            else:
                sides.setdefault((side, message.partition()), []).append(message)
        parts = []
        for (side, partition), group in sides.items():
            decode = self.decoder.requests if side == "request" else self.decoder.responses
            decoded = decode([(m.value(), m.key(), m.headers(), m.timestamp()[1]) for m in group])
            rows, refs = [], []
            for message, result in zip(group, decoded):
                if isinstance(result, Rejection):
                    dead.append((message, result))
                    continue
                rows.append(result)
                refs.append((message.topic(), message.partition(), message.offset()))
                for (
                    row,
                    why,
                ) in result.rejected:  # rows the schema's checks refused; the others stay
                    dead.append((message, Rejection(why.reason, f"row {row}: {why.detail}")))
            kwargs = (
                {"requests": rows, "request_refs": refs, "request_partition": partition}
                if side == "request"
                else {"responses": rows, "response_refs": refs, "response_partition": partition}
            )
            paired = self.join.add(**kwargs)
            dead += [(Refs(*ref), why) for ref, why in paired.refused + paired.expired]
            if paired.batch is not None and len(paired.batch):
                parts.append(paired.batch)
        if not parts:
            return Read(None, None, dead)
        batch = parts[0] if len(parts) == 1 else _concatenate(parts)
        # the rows' event time (the request's Kafka time unless the layout names another) as sent time
        return Read(replace(batch, partitions=0), np.asarray(batch.ts, np.int64), dead)

    def _skip(self, model: str, topic: str) -> None:
        if model not in self.skipped:
            log.info(
                "skipping the messages of model %r on %s: this monitor watches %r (messages.model in the "
                "schema, if that is its name on the server)",
                model,
                topic,
                self.decoder.layout.model,
            )
        self.skipped[model] = self.skipped.get(model, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return self.join.to_dict()

    def load_dict(self, state: Mapping[str, Any] | None) -> None:
        if state:
            self.join.load_dict(dict(state))


def _concatenate(parts: list[PredictionBatch]) -> PredictionBatch:
    first = parts[0]

    def joined(get) -> Any:
        return np.concatenate([get(p) for p in parts])

    return PredictionBatch(
        joined(lambda p: p.ids),
        joined(lambda p: p.ts),
        joined(lambda p: p.predictions),
        {c: joined(lambda p, c=c: p.numeric[c]) for c in first.numeric},
        {c: joined(lambda p, c=c: p.categorical[c]) for c in first.categorical},
        {c: joined(lambda p, c=c: p.probabilities[c]) for c in first.probabilities},
    )


def prediction_source(
    schema: Schema, topics: Topics, registry: Any = None
) -> JsonPredictions | PairedPredictions:
    """The schema's format's source (ValueError naming what to set, e.g. SCHEMA_REGISTRY_URL)."""
    if schema.paired is not None:
        return PairedPredictions(schema)
    if schema.format == "avro":
        return AvroPredictions(schema, topics, registry)
    return JsonPredictions(schema, topics)
