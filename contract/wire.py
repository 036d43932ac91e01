"""Typed decoders for the hot paths: msgspec Structs that accept only what `records` accepts.

`contract.records` validates one parsed dict at a time and names the reason for a refusal; that is
clear but costs ~4 us a record in Python. These Structs put the same rules (types, ranges, lengths)
into msgspec's C decoder, which builds a record straight from the bytes in ~2 us. A record these
decoders refuse is not necessarily invalid (an integer id, say, which `records` normalises to a
string): callers send every refusal through `records` for the verdict and its reason.

Structs are gc=False: they hold only strings and numbers, so they need no cycle tracking, and
allocating thousands per batch then does not trigger collections.
"""
from __future__ import annotations

import sys
from operator import attrgetter
from typing import Annotated, Any, Callable, Sequence

import msgspec
from msgspec import Meta

from contract.records import (CATEGORICAL_FEATURES, MAX_CATEGORY_LENGTH, MAX_ID_LENGTH, MAX_RECORD_BYTES,
                              NUMERIC_FEATURES, NUMERIC_RANGES, PRICE_RANGE, Rejection)

if NUMERIC_FEATURES != ("carat", "depth", "table") or CATEGORICAL_FEATURES != ("cut", "color", "clarity"):
    raise ImportError("contract.records changed its features: update the Structs in contract.wire")

RecordId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)]
EventTime = Annotated[int, Meta(ge=0, lt=2**53)]  # epoch ms, as records._identity
Category = Annotated[str, Meta(min_length=1, max_length=MAX_CATEGORY_LENGTH)]
Price = Annotated[float, Meta(gt=PRICE_RANGE[0], le=PRICE_RANGE[1])]
# Any finite float: JSON has no NaN or Infinity literal, and an overflowing number (1e999) is out of range.
Finite = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


def _bounded(name: str):
    low, high = NUMERIC_RANGES[name]
    return Annotated[float, Meta(gt=low, le=high)]  # lower bound exclusive, upper inclusive, as records._number


Carat, Depth, Table = _bounded("carat"), _bounded("depth"), _bounded("table")


class Features(msgspec.Struct, gc=False, omit_defaults=True):
    carat: Carat
    cut: Category
    color: Category
    clarity: Category
    depth: Depth
    table: Table
    price: Price | None = None  # a published record may carry its label; records checks it the same way


class FeatureMessage(Features, kw_only=True):
    """A feature record as the producer publishes it: the features, its id and event time."""

    id: RecordId
    ts: EventTime


class PredictionMessage(msgspec.Struct, gc=False):
    """A prediction as the scorer publishes it (records.prediction_message's fields and order)."""

    id: str
    ts: int
    scored_at: int
    model_version: str
    prediction: float
    features: Features


class Prediction(msgspec.Struct, gc=False):
    """A prediction message as the monitor reads it; scored_at and model_version are skipped."""

    id: RecordId
    ts: EventTime
    prediction: Finite
    features: Features


class Label(msgspec.Struct, gc=False):
    id: RecordId
    ts: EventTime
    price: Price


feature_decoder = msgspec.json.Decoder(FeatureMessage)
prediction_decoder = msgspec.json.Decoder(Prediction)
label_decoder = msgspec.json.Decoder(Label)
DecodeFailure = (msgspec.ValidationError, msgspec.DecodeError)
encode = msgspec.json.Encoder().encode


def decode_records(values: Sequence[bytes], decoder: msgspec.json.Decoder,
                   fallback: Callable[[bytes], Any]) -> tuple[list, list[tuple[int, Rejection]]]:
    """(records, (position, rejection) of the others) of a batch.

    The whole batch goes through the typed decoder in one C-level pass; only when some value is
    oversize or refused does it go value by value, each refusal to `fallback` (raw -> a record of
    the decoder's type, or the contract's Rejection naming why)."""
    decode = decoder.decode
    if not values or max(map(len, values)) <= MAX_RECORD_BYTES:
        try:
            return list(map(decode, values)), []
        except DecodeFailure:
            pass
    records, rejections = [], []
    for position, raw in enumerate(values):
        try:
            if len(raw) > MAX_RECORD_BYTES:
                raise msgspec.ValidationError("oversize")
            record = decode(raw)
        except DecodeFailure:
            record = fallback(raw)
            if isinstance(record, Rejection):
                rejections.append((position, record))
                continue
        records.append(record)
    return records, rejections


# Column extraction in C: list(map(field["ts"], records)) reads one field of every record.
field = {name: attrgetter(name) for name in ("id", "ts", "prediction", "features", *FeatureMessage.__struct_fields__)}
