"""Avro values with Confluent Schema Registry framing, read into today's JSON layout.

A framed value is byte 0 = 0, a 4-byte big-endian schema id, then the Avro body; newer clients may
instead put a schema GUID in the header `__value_schema_id` (byte 0 = 1, 16 bytes) and send the
bare body. `confluent_kafka.schema_registry.avro.AvroDeserializer` reads both, fetching the writer's
schema from the registry by id or GUID (and caching it).

A record decodes to a dict laid out as `messages:` says for JSON (id, timestamp, prediction,
probabilities, features), so it is encoded back to JSON and goes through the schema's own typed
decoder and checks (`monitor.decode.Decoder`): one rule for both formats, the same reasons. That
costs ~1 us a record against ~30 us for the Avro decoding itself. Avro `timestamp-millis` fields,
which the deserializer returns as datetimes, become epoch ms (or RFC 3339 text for iso8601).

The registry comes in as a client (`SchemaRegistryClient.new_client({"url": ...})`, built by the
shell from SCHEMA_REGISTRY_URL and its auth settings; `mock://` gives the library's in-memory
registry, which the tests use: no registry server runs here).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from contract.formats.paired import Headers, header
from contract.rules import Rejection

BAD_MAGIC = "bad_magic"  # reasons
UNKNOWN_SCHEMA = "unknown_schema"
NOT_AVRO = "not_avro"
VALUE_SCHEMA_HEADER = "__value_schema_id"


class AvroReader:
    """Framed Avro values of one topic -> JSON bytes in the schema's layout, or Rejections."""

    def __init__(self, registry: Any, timestamp_format: str = "epoch_ms") -> None:
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        self._deserialize = AvroDeserializer(registry)
        self._iso = timestamp_format == "iso8601"

    def _default(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            return (
                moment.isoformat().replace("+00:00", "Z")
                if self._iso
                else round(moment.timestamp() * 1000)
            )
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        raise TypeError(
            type(value).__name__
        )  # decimal.Decimal, uuid.UUID: orjson's TypeError -> not_avro

    def read(self, value: bytes | None, topic: str, headers: Headers = None) -> bytes | Rejection:
        """One value as JSON bytes, or the Rejection naming why not."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        from confluent_kafka.serialization import (
            MessageField,
            SerializationContext,
            SerializationError,
        )

        if not value:
            return Rejection(NOT_AVRO, "empty value")
        # The library reads a wrong first byte as a GUID prefix and fails with a message about
        # 16-char strings: the framing is checked here so the reason says what is wrong.
        if header(headers, VALUE_SCHEMA_HEADER) is None and value[0] not in (0, 1):
            return Rejection(
                BAD_MAGIC,
                f"first byte {value[0]}: a Schema Registry framed value starts with 0 "
                f"(schema id) or 1 (schema GUID), or names its schema in the {VALUE_SCHEMA_HEADER} header",
            )
        context = SerializationContext(topic, MessageField.VALUE, list(headers or ()))
        try:
            record = self._deserialize(value, context)
        except SchemaRegistryError as exc:
            return Rejection(UNKNOWN_SCHEMA, f"the registry has no schema for this value: {exc}")
        except (
            SerializationError,
            EOFError,
            ValueError,
            TypeError,
            IndexError,
            UnicodeDecodeError,
        ) as exc:
            return Rejection(
                NOT_AVRO, f"not Avro of its schema: {type(exc).__name__} {exc}".strip()
            )
        try:
            return orjson.dumps(
                record, default=self._default, option=orjson.OPT_PASSTHROUGH_DATETIME
            )
        except TypeError as exc:
            return Rejection(NOT_AVRO, f"an Avro value JSON cannot hold: {exc}")

    def read_batch(
        self, values: Sequence[bytes | None], topic: str, headers: Sequence[Headers] | None = None
    ) -> tuple[list[bytes], list[int], list[tuple[int, Rejection]]]:
        """(JSON values, their positions in the batch, (position, rejection) of the others)."""
        out, positions, rejected = [], [], []
        for position, value in enumerate(values):
            result = self.read(value, topic, headers[position] if headers else None)
            if isinstance(result, Rejection):
                rejected.append((position, result))
            else:
                out.append(result)
                positions.append(position)
        return out, positions, rejected
