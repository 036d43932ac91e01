"""The inference logs of serving systems, read into the monitor's columns: one module per format.

    json                today's layout: one JSON object per prediction (contract.schema, monitor.decode)
    avro                the same layout in Avro with Schema Registry framing (avro.AvroReader -> JSON)
    oip-v2              MLServer's Kafka mode: OIP JSON requests and responses (oip.OipDecoder)
    kserve-cloudevents  KServe's logger: CloudEvents in Kafka binary mode, v1 or OIP bodies (kserve)
    seldon-v2           Seldon Core 2's model topics: OIP protobuf (seldon.SeldonDecoder)

The schema's `messages:` block names the format and where each value sits (layout.parse_messages).
The paired formats decode a message into rows (paired.RequestRows / ResponseRows), many per message,
column by column; `monitor.pairing.RowJoin` joins requests to responses by id. Pure: the decoders
take value bytes, key, headers and the Kafka timestamp, never a client object, and return a
`Rejection` naming the reason rather than raising on bad input.
"""

from __future__ import annotations

import importlib

from contract.formats.layout import FORMATS, PAIRED, PairedLayout, Source, parse_messages
from contract.formats.paired import PairedDecoder
from contract.formats.rows import RequestColumns, RequestRows, ResponseColumns, ResponseRows
from contract.formats.tensors import SHAPE_MISMATCH, UNKNOWN_DATATYPE
from contract.schema import Schema

# Reasons the formats add to contract.rules' REJECTION_REASONS (metric labels, DLQ headers).
FORMAT_REASONS = (
    SHAPE_MISMATCH,
    UNKNOWN_DATATYPE,
    "batched",
    "unknown_event",
    "not_protobuf",
    "bad_magic",
    "unknown_schema",
    "not_avro",
    "no_request",
    "no_response",
)


# The decoder class of each paired format, imported on first use (seldon-v2 loads tritonclient).
DECODERS = {
    "oip-v2": "contract.formats.oip:OipDecoder",
    "kserve-cloudevents": "contract.formats.kserve:KServeDecoder",
    "seldon-v2": "contract.formats.seldon:SeldonDecoder",
}


def paired_decoder(
    schema: Schema, layout: PairedLayout, timestamp_format: str = "epoch_ms"
) -> PairedDecoder:
    """The decoder of a paired format (imports only that format's dependencies)."""
    if layout.format not in DECODERS:
        raise ValueError(f"{layout.format!r} is not a paired format ({', '.join(PAIRED)})")
    module, _, name = DECODERS[layout.format].partition(":")
    return getattr(importlib.import_module(module), name)(schema, layout, timestamp_format)


__all__ = [
    "DECODERS",
    "FORMATS",
    "FORMAT_REASONS",
    "PAIRED",
    "PairedDecoder",
    "PairedLayout",
    "RequestColumns",
    "RequestRows",
    "ResponseColumns",
    "ResponseRows",
    "Source",
    "paired_decoder",
    "parse_messages",
]
