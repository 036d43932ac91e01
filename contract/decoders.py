"""Typed decoders built from a schema at start-up, and the checks that give the verdict on what they refuse.

    decoders = Decoders(schema)                            once at start-up
    decode_records(values, decoders.prediction, fallback)  a batch in one C pass -> records, [(position, Rejection)]
    verdict(check_prediction, decoders, raw)               one record the typed decoder refused -> record or Rejection

The Structs' fields come from the schema's field rules (`contract.rules`): the typed decoder and
the check apply the same rule, so the fast path and the verdict cannot disagree. Three message
kinds: feature records (producer -> scorer: `{id, ts, <features>}` at top level, optionally the
target), predictions (scorer or any serving system -> monitor: laid out as `messages` says) and
labels (`{id, ts, <target>}`, as `labels` says). Validation never raises on bad input: a refused
record becomes a `Rejection` naming one reason.
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import orjson

from contract.rules import (
    MAX_RECORD_BYTES,
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    OVERSIZE,
    WRONG_TYPE,
    FieldRule,
    InvalidRecord,
    Rejection,
)
from contract.schema import Schema


def _attr(index: int, key: str, taken: set[str]) -> str:
    """A Python attribute name for a JSON key (the key itself when it can be one)."""
    name = (
        key
        if key.isidentifier() and not keyword.iskeyword(key) and key not in taken
        else f"f{index}"
    )
    taken.add(name)
    return name


def _struct(
    name: str, rules: Sequence[FieldRule], extra: Sequence[tuple[str, Any]] = ()
) -> tuple[type, dict[str, str]]:
    """(a msgspec Struct type for these rules, {JSON key: attribute}); extra (key, type) fields are
    optional (default None): a feature record may carry its label."""
    taken: set[str] = set()
    attrs = {rule.key: _attr(i, rule.key, taken) for i, rule in enumerate(rules)}
    fields: list[tuple] = [(attrs[rule.key], rule.annotation) for rule in rules]
    for i, (key, annotation) in enumerate(extra, start=len(rules)):
        attrs[key] = _attr(i, key, taken)
        fields.append((attrs[key], annotation | None, None))
    # gc=False: records hold only strings, numbers and plain Structs, so they need no cycle tracking,
    # and allocating thousands per batch then does not trigger collections.
    struct = msgspec.defstruct(
        name,
        fields,
        rename={a: k for k, a in attrs.items() if a != k},
        gc=False,
        omit_defaults=True,
    )
    return struct, attrs


class Decoders:
    """msgspec Structs and decoders for a schema's three message kinds, built once at start-up.

    A record these refuse is not necessarily invalid (an integer id, say, which the checks
    normalise to a string): `decode_records` sends every refusal to the schema's checks for the
    verdict and its reason. They accept only what the checks accept (tested)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        m = schema.messages
        target = schema.target_rule(schema.label_field)
        # Feature records: id, ts and the features at top level; the target optionally (publish).
        self.record_type, self.record_attrs = _struct(
            "FeatureRecord",
            schema.record_rules,
            [(schema.target, schema.target_rule(schema.target).annotation)],
        )
        self.record = msgspec.json.Decoder(self.record_type)
        self.features_type, self.features_attrs = _struct(
            "Features", [schema.feature_rule(f) for f in schema.features]
        )
        # Predictions as the monitor reads them: scored_at, model_version and unknown fields skipped.
        head = [
            FieldRule(m.id, "id"),
            FieldRule(m.timestamp, schema.messages.timestamp_format),
            schema.prediction_rule(),
        ]
        if m.probabilities:
            head.append(FieldRule(m.probabilities, "probabilities", classes=schema.class_texts))
        head += [FieldRule(field, "probability") for _, field in m.probability_fields]
        if m.features:
            self.prediction_type, self.prediction_attrs = self._nested("Prediction", head)
        else:
            self.prediction_type, self.prediction_attrs = _struct(
                "Prediction", [*head, *(schema.feature_rule(f) for f in schema.features)]
            )
        self.prediction = msgspec.json.Decoder(self.prediction_type)
        label_rules = [
            FieldRule(schema.labels.id, "id"),
            FieldRule(schema.labels.timestamp, schema.messages.timestamp_format),
            target,
        ]
        self.label_type, self.label_attrs = _struct("Label", label_rules)
        self.label = msgspec.json.Decoder(self.label_type)
        self.head_rules, self.label_rules = tuple(head), tuple(label_rules)
        # JSON keys decoded as the integer union (an int, or an integral float the getters turn into one)
        self._integral = {
            "record": {
                r.key
                for r in (*schema.record_rules, schema.target_rule(schema.target))
                if r.kind == "integer"
            },
            "prediction": {r.key for r in head if r.kind == "integer"}
            | (set() if m.features else {f.name for f in schema.features if f.kind == "integer"}),
            "features": {f.name for f in schema.features if f.kind == "integer"},
            "label": {r.key for r in label_rules if r.kind == "integer"},
        }

    def _nested(self, name: str, head: Sequence[FieldRule]) -> tuple[type, dict[str, str]]:
        taken: set[str] = set()
        attrs = {rule.key: _attr(i, rule.key, taken) for i, rule in enumerate(head)}
        key = self.schema.messages.features
        attrs[key] = _attr(len(head), key, taken)
        fields = [(attrs[rule.key], rule.annotation) for rule in head] + [
            (attrs[key], self.features_type)
        ]
        struct = msgspec.defstruct(
            name, fields, rename={a: k for k, a in attrs.items() if a != k}, gc=False
        )
        return struct, attrs

    def getter(self, kind: str, key: str) -> Callable[[Any], Any]:
        """One JSON field of a decoded record (kind: record, prediction, label, features): an attrgetter,
        which for an integer field also makes an integral float (1.0) the integer it is."""
        get = attrgetter(getattr(self, f"{kind}_attrs")[key])
        if key in self._integral[kind]:
            return lambda record: int(get(record))
        return get


# -- validation with reasons (the slow path: the verdict on what the typed decoder refused) -------
def parse_json(raw: bytes | str, limit: int = MAX_RECORD_BYTES) -> Any:
    """Parse JSON of at most `limit` bytes; raises InvalidRecord for oversize or non-JSON input.

    orjson parses strictly and fast; only what it refuses goes through the standard library,
    which accepts NaN/Infinity literals, so those get the clearer reason `not_finite`."""
    if len(raw) > limit:
        raise InvalidRecord(OVERSIZE, f"record is {len(raw)} bytes, limit {limit}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidRecord(NOT_JSON, f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidRecord(NOT_JSON, "not JSON: nested too deeply") from None


def _object(obj: Any, what: str) -> dict:
    if not isinstance(obj, dict):
        raise InvalidRecord(NOT_OBJECT, f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _apply(obj: Mapping[str, Any], rules: Sequence[FieldRule]) -> list[Any]:
    values = []
    for rule in rules:
        if rule.key not in obj:
            raise InvalidRecord(MISSING_FIELD, f"missing field '{rule.key}'")
        values.append(rule.check(obj[rule.key]))
    return values


def check_record(d: Decoders, obj: Any) -> Any:
    """A feature record (the typed decoder's Struct) from a parsed object; raises InvalidRecord."""
    schema = d.schema
    obj = _object(obj, "record")
    values = _apply(obj, schema.record_rules)
    target = obj.get(schema.target)
    if target is not None:
        values.append(schema.target_rule(schema.target).check(target))
    return d.record_type(*values)


def check_prediction(d: Decoders, obj: Any) -> Any:
    """A prediction message (the typed decoder's Struct) from a parsed object; raises InvalidRecord."""
    schema = d.schema
    obj = _object(obj, "prediction")
    if schema.messages.features:
        key = schema.messages.features
        features = obj.get(key)
        if not isinstance(features, dict):
            raise InvalidRecord(
                MISSING_FIELD if features is None else WRONG_TYPE, f"'{key}' must be an object"
            )
        inner = d.features_type(
            *_apply(features, [schema.feature_rule(f) for f in schema.features])
        )
        return d.prediction_type(*_apply(obj, d.head_rules), inner)
    return d.prediction_type(
        *_apply(obj, [*d.head_rules, *(schema.feature_rule(f) for f in schema.features)])
    )


def check_label(d: Decoders, obj: Any) -> Any:
    """A label message (the typed decoder's Struct) from a parsed object; raises InvalidRecord."""
    return d.label_type(*_apply(_object(obj, "label"), d.label_rules))


def verdict(
    check: Callable[[Decoders, Any], Any],
    decoders: Decoders,
    raw: bytes | str | Any,
    parsed: bool = False,
) -> Any:
    """check(decoders, parsed raw) or the Rejection naming why not."""
    try:
        return check(decoders, raw if parsed else parse_json(raw))
    except InvalidRecord as invalid:
        return invalid.rejection


DecodeFailure = (msgspec.ValidationError, msgspec.DecodeError)


def decode_records(
    values: Sequence[bytes], decoder: msgspec.json.Decoder, fallback: Callable[[bytes], Any]
) -> tuple[list, list[tuple[int, Rejection]]]:
    """(records, (position, rejection) of the others) of a batch.

    The whole batch goes through the typed decoder in one C-level pass; only when some value is
    oversize or refused does it go value by value, each refusal to `fallback` (raw -> a record of
    the decoder's type, or the Rejection naming why)."""
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


def epoch_ms(values: Sequence[Any], timestamp_format: str) -> np.ndarray:
    """(n,) int64 epoch milliseconds of decoded timestamps (naive ISO date-times are UTC)."""
    if timestamp_format == "epoch_ms":
        return np.fromiter(values, np.int64, len(values))
    if timestamp_format == "epoch_s":
        return np.round(np.fromiter(values, np.float64, len(values)) * 1000).astype(np.int64)
    utc = dt.UTC
    return np.fromiter(
        (round((v if v.tzinfo else v.replace(tzinfo=utc)).timestamp() * 1000) for v in values),
        np.int64,
        len(values),
    )
