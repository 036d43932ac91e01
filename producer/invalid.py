"""Invalid payloads for the bad-records scenario, generated from the model's schema.

Each one is a valid feature record of the model broken in one way, so that the scorer's decoder
names exactly one reason for it: truncated JSON, a feature dropped, a string where a number goes,
NaN, a value past a feature's range, a record padded past the size limit. A reason the schema
cannot produce is left out (out_of_range without any feature range, not_finite without a numeric
feature); `producer.scenarios.bad_record_mask` picks the records, `bad_payload` cycles the reasons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson

from contract.rules import (
    MAX_RECORD_BYTES,
    MISSING_FIELD,
    NOT_FINITE,
    NOT_JSON,
    OUT_OF_RANGE,
    OVERSIZE,
    WRONG_TYPE,
    Bounds,
)
from contract.schema import Feature, Schema

Record = dict[str, Any]  # a valid feature record, as Schema.feature_record builds it
Breaker = Callable[[Record], bytes]


def _outside(bounds: Bounds) -> float | None:
    """A finite value past the range (below it when it has a lower bound), or None if there is none."""
    low = bounds.gt if bounds.gt is not None else bounds.ge
    high = bounds.lt if bounds.lt is not None else bounds.le
    for bound, direction in ((low, -1.0), (high, 1.0)):
        if bound is not None:
            value = bound + direction * max(1.0, abs(bound))
            if math.isfinite(value):
                return value
    return None


def _wrong_type_value(feature: Feature, value: Any) -> Any:
    """A string where a number (or boolean) goes; a number where a string goes."""
    return 1 if feature.kind == "string" else str(value)


def invalid_payloads(schema: Schema) -> tuple[tuple[str, Breaker], ...]:
    """(reason, record -> payload) for every reason this schema can produce, in the order bad-records
    cycles through them: not_json, missing_field, wrong_type, not_finite, out_of_range, oversize."""
    first = schema.features[0]
    numeric = next((f for f in schema.features if f.numeric), None)
    typed = numeric or first  # the classic case: text where a number goes
    ranged = next(
        ((f, v) for f in schema.features if f.numeric and (v := _outside(f.bounds)) is not None),
        None,
    )
    pad = "pad"  # an extra field (ignored by the decoder) that is none of the record's own
    while pad in (
        *schema.feature_names,
        schema.messages.id,
        schema.messages.timestamp,
        schema.target,
    ):
        pad = "_" + pad

    payloads: list[tuple[str, Breaker]] = [
        (NOT_JSON, lambda record: orjson.dumps(record)[:-1]),  # the closing brace cut off
        (
            MISSING_FIELD,
            lambda record: orjson.dumps({k: v for k, v in record.items() if k != first.name}),
        ),
        (
            WRONG_TYPE,
            lambda record: orjson.dumps(
                {**record, typed.name: _wrong_type_value(typed, record[typed.name])}
            ),
        ),
    ]
    if numeric is not None:
        # orjson writes NaN as null; the standard library writes the NaN literal a broken client would send.
        payloads.append(
            (
                NOT_FINITE,
                lambda record: json.dumps(
                    {**record, numeric.name: math.nan}, separators=(",", ":")
                ).encode(),
            )
        )
    if ranged is not None:
        feature, value = ranged
        payloads.append(
            (OUT_OF_RANGE, lambda record: orjson.dumps({**record, feature.name: value}))
        )
    payloads.append(
        (OVERSIZE, lambda record: orjson.dumps({**record, pad: "x" * MAX_RECORD_BYTES}))
    )
    return tuple(payloads)


def bad_payload(
    payloads: tuple[tuple[str, Breaker], ...], position: int, record: Record
) -> tuple[str, bytes]:
    """(reason the decoder will give, payload) for the record at this stream position."""
    reason, breaker = payloads[position % len(payloads)]
    return reason, breaker(record)
