"""One model's schema: its columns, its task, and where each field sits in the messages.

A schema is a YAML file (`contract/schemas/diamonds.yaml` is the shipped example; the README's
"Schema format" documents every key). Every service loads it once at start-up with
`load_schema(path)`, which checks it and raises `SchemaError` naming the file, the key and what
to change. Everything the services agree on about a record derives from it, in this module only:

- the validation rules of every field (type, range, length) as `FieldRule`s. Each rule gives both
  the msgspec annotation of the typed C decoder (`decoders`) and the Python check that names the
  reason for a refusal (`check_*`), so the fast path and the verdict cannot disagree;
- the three message kinds: feature records (producer -> scorer: `{id, ts, <features>}` at top
  level, optionally the target), predictions (scorer or any serving system -> monitor: laid out as
  `messages` says) and labels (`{id, ts, <target>}`, as `labels` says);
- the text form of categorical values (`category_text`): integers and booleans are counted as
  "3" and "true", so windows, state and gauges only ever hold strings.

Validation never raises on bad input: decoders return a `Rejection` naming one reason.
"""
from __future__ import annotations

import datetime as dt
import json
import keyword
import math
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Sequence

import msgspec
import numpy as np
import orjson
import yaml
from msgspec import Meta

# -- limits and rejection reasons (stable strings: metric labels and DLQ headers) ------------------
MAX_RECORD_BYTES = 8192
MAX_ID_LENGTH = 128
MAX_CATEGORY_LENGTH = 64
MAX_EPOCH_MS = 2**53
MAX_EXACT_INTEGER = 2**53  # an integral float beyond this is not an exact integer

NOT_JSON = "not_json"
OVERSIZE = "oversize"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"
REJECTION_REASONS = (NOT_JSON, OVERSIZE, NOT_OBJECT, MISSING_FIELD, WRONG_TYPE, NOT_FINITE, OUT_OF_RANGE)

TASKS = ("regression", "classification")
TIMESTAMP_FORMATS = ("epoch_ms", "epoch_s", "iso8601")
PROBABILITY_PREFIX = "proba_"  # reference-file column of a class's probability: proba_<class>

SCHEMAS = Path(__file__).resolve().parent / "schemas"
DEFAULT_SCHEMA = SCHEMAS / "diamonds.yaml"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: `reason` is one of REJECTION_REASONS, `detail` is for humans."""

    reason: str
    detail: str


class InvalidRecord(Exception):
    """Raised by the checks; decoders turn it into a returned Rejection."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


class SchemaError(ValueError):
    """A schema (or a reference file checked against it) that cannot be used; the message names
    the file, the key and what to change."""


# -- text form of categorical values --------------------------------------------------------------
_BOOL_TEXT = {True: "true", False: "false"}


def category_text(value: Any) -> str:
    """The string a categorical value is counted under: strings as they are, 3 -> "3", True -> "true"."""
    if isinstance(value, bool):
        return _BOOL_TEXT[value]
    return value if isinstance(value, str) else str(value)


def category_texts(values: Sequence[Any], kind: str) -> list[str]:
    """category_text of a column whose values are all of `kind` (string, integer, boolean), mapped in C."""
    if kind == "string":
        return list(values)
    if kind == "boolean":
        return list(map(_BOOL_TEXT.__getitem__, values))
    return list(map(str, values))


def _value_kind(values: Sequence[Any]) -> str | None:
    """string, integer or boolean when every value is of that type, else None."""
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, str) for v in values):
        return "string"
    return None


# -- field rules: one definition, two uses (msgspec annotation, Python check) ---------------------
_FINITE = Meta(ge=-sys.float_info.max, le=sys.float_info.max)  # JSON has no NaN; 1e999 overflows to inf


@dataclass(frozen=True)
class Bounds:
    """A numeric range; any side may be open (None). gt/ge and lt/le as in msgspec.Meta."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def meta(self) -> Meta:
        if self == Bounds():
            return _FINITE
        low = {"gt": self.gt} if self.gt is not None else {"ge": self.ge if self.ge is not None else -sys.float_info.max}
        high = {"lt": self.lt} if self.lt is not None else {"le": self.le if self.le is not None else sys.float_info.max}
        return Meta(**low, **high)

    def contains(self, value: float) -> bool:
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def __str__(self) -> str:
        low = f"({self.gt:g}" if self.gt is not None else f"[{self.ge:g}" if self.ge is not None else "(-inf"
        high = f"{self.lt:g})" if self.lt is not None else f"{self.le:g}]" if self.le is not None else "inf)"
        return f"{low}, {high}"

    def to_yaml(self) -> dict[str, float]:
        return {k: v for k, v in (("gt", self.gt), ("ge", self.ge), ("lt", self.lt), ("le", self.le)) if v is not None}


@dataclass(frozen=True)
class FieldRule:
    """How one JSON field is validated. kind: id | epoch_ms | epoch_s | iso8601 | number | string |
    integer | boolean | probability | probabilities. `annotation` is the typed decoder's type; `check` the same rule in
    Python, raising InvalidRecord with the reason, returning the normalised value."""

    key: str  # the field's name in the JSON object
    kind: str
    bounds: Bounds = Bounds()
    classes: tuple[str, ...] = ()  # probabilities: the keys of the object

    @property
    def annotation(self) -> Any:
        if self.kind == "id":
            return Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)]
        if self.kind == "epoch_ms":
            return Annotated[int, Meta(ge=0, lt=MAX_EPOCH_MS)]
        if self.kind == "epoch_s":
            return Annotated[float, Meta(ge=0, lt=MAX_EPOCH_MS / 1000)]
        if self.kind == "iso8601":
            return dt.datetime
        if self.kind == "number":
            return Annotated[float, self.bounds.meta()]
        if self.kind == "string":
            return Annotated[str, Meta(min_length=1, max_length=MAX_CATEGORY_LENGTH)]
        if self.kind == "integer":
            # An integral float is that integer (a label 1.0 is class 1): the getters make it an int.
            return (Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
                    | Annotated[float, Meta(multiple_of=1, ge=-MAX_EXACT_INTEGER, le=MAX_EXACT_INTEGER)])
        if self.kind == "boolean":
            return bool
        if self.kind == "probability":
            return _PROBABILITY
        if self.kind == "probabilities":
            return _probability_struct(self.classes)
        raise AssertionError(self.kind)

    def check(self, value: Any) -> Any:
        name = self.key
        if self.kind == "id":
            # Integer ids are accepted and normalised to strings, so joins by id never miss on type.
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be a string, got {type(value).__name__}")
            value = str(value)
            if not 0 < len(value) <= MAX_ID_LENGTH:
                raise InvalidRecord(OUT_OF_RANGE, f"'{name}' must be 1-{MAX_ID_LENGTH} characters")
            return value
        if self.kind == "epoch_ms":
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be an integer (epoch ms), got {type(value).__name__}")
            if not 0 <= value < MAX_EPOCH_MS:
                raise InvalidRecord(OUT_OF_RANGE, f"'{name}'={value} is not an epoch-ms timestamp")
            return value
        if self.kind == "epoch_s":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be a number (epoch seconds), got {type(value).__name__}")
            return _number(name, value, Bounds(ge=0.0, lt=MAX_EPOCH_MS / 1000))
        if self.kind == "iso8601":
            if not isinstance(value, str):
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be an ISO-8601 string, got {type(value).__name__}")
            try:  # msgspec's own parser: exactly what the typed decoder accepts
                return msgspec.convert(value, dt.datetime)
            except msgspec.ValidationError:
                raise InvalidRecord(WRONG_TYPE, f"'{name}'={value[:40]!r} is not an ISO-8601 date-time") from None
        if self.kind == "number":
            return _number(name, value, self.bounds)
        if self.kind == "string":
            if not isinstance(value, str):
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be a string, got {type(value).__name__}")
            if not 0 < len(value) <= MAX_CATEGORY_LENGTH:
                raise InvalidRecord(OUT_OF_RANGE, f"'{name}' must be 1-{MAX_CATEGORY_LENGTH} characters")
            return value
        if self.kind == "integer":
            if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
                value = int(value)  # 1.0 is class 1; 1.5 stays invalid
            if isinstance(value, bool) or not isinstance(value, int):
                got = "a fractional number" if isinstance(value, float) else type(value).__name__
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be an integer, got {got}")
            if not -(2**63) <= value < 2**63:
                raise InvalidRecord(OUT_OF_RANGE, f"'{name}' is too large")
            return value
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be true or false, got {type(value).__name__}")
            return value
        if self.kind == "probability":
            return _number(name, value, Bounds(ge=0.0, le=1.0))
        if self.kind == "probabilities":
            if not isinstance(value, dict):
                raise InvalidRecord(WRONG_TYPE, f"'{name}' must be an object {{class: probability}}")
            struct = _probability_struct(self.classes)
            values = []
            for text in self.classes:
                if text not in value:
                    raise InvalidRecord(MISSING_FIELD, f"'{name}' has no probability for class {text!r}")
                values.append(_number(f"{name}.{text}", value[text], Bounds(ge=0.0, le=1.0)))
            return struct(*values)
        raise AssertionError(self.kind)


def _number(name: str, value: Any, bounds: Bounds) -> float:
    # bool is an int subclass in Python; true/false is never a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(WRONG_TYPE, f"'{name}' must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        raise InvalidRecord(OUT_OF_RANGE, f"'{name}' is too large") from None
    if not math.isfinite(value):
        raise InvalidRecord(NOT_FINITE, f"'{name}' is {value}")
    if not bounds.contains(value):
        raise InvalidRecord(OUT_OF_RANGE, f"'{name}'={value:g} outside {bounds}")
    return value


_PROBABILITY = Annotated[float, Meta(ge=0.0, le=1.0)]
_PROBABILITY_STRUCTS: dict[tuple[str, ...], type] = {}


def _probability_struct(classes: tuple[str, ...]) -> type:
    """A Struct with one probability in [0, 1] per class, keyed by the class's text in JSON."""
    struct = _PROBABILITY_STRUCTS.get(classes)
    if struct is None:
        names = [f"p{i}" for i in range(len(classes))]
        struct = msgspec.defstruct("Probabilities", [(n, _PROBABILITY) for n in names],
                                   rename=dict(zip(names, classes)), gc=False)
        _PROBABILITY_STRUCTS[classes] = struct
    return struct


# -- the schema ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """One model input. type: numeric (`bounds`: valid range) or categorical (`categories`: the
    known values, of one kind: string, integer or boolean; other values are valid and counted as
    unseen, because a new category is drift, not bad input)."""

    name: str
    type: str
    bounds: Bounds = Bounds()
    categories: tuple[Any, ...] = ()
    observed: tuple[float, float] | None = None  # numeric: range seen in the reference (information only)

    @property
    def numeric(self) -> bool:
        return self.type == "numeric"

    @property
    def kind(self) -> str:
        """number, or the categories' kind: string, integer, boolean."""
        return "number" if self.numeric else _value_kind(self.categories) or "string"

    @property
    def known(self) -> frozenset[str]:
        return frozenset(map(category_text, self.categories))


@dataclass(frozen=True)
class Layout:
    """Where fields sit in prediction messages (and, for id and timestamp, in feature records).

    Class probabilities come one of two ways: `probabilities`, the field of an object
    {"<class>": p, ...} with every class (what our scorer writes), or `probability_fields`,
    ((class text, field), ...) top-level number fields: every class's, or for a binary model only
    the positive class's (the other's is 1 - p, so it adds no test)."""

    id: str = "id"
    timestamp: str = "ts"
    timestamp_format: str = "epoch_ms"
    prediction: str = "prediction"
    probabilities: str | None = None
    features: str | None = "features"  # the object holding the features; None: top-level fields
    probability_fields: tuple[tuple[str, str], ...] = ()

    @property
    def carries_probabilities(self) -> bool:
        return bool(self.probabilities or self.probability_fields)

    @property
    def head(self) -> tuple[str, ...]:
        """The top-level fields other than the features."""
        return (self.id, self.timestamp, self.prediction, *([self.probabilities] if self.probabilities else []),
                *(f for _, f in self.probability_fields))


@dataclass(frozen=True)
class LabelLayout:
    id: str = "id"
    timestamp: str = "ts"
    target: str = ""  # default: the schema's target


@dataclass(frozen=True)
class Schema:
    """A model's columns, task and message layout; see the module doc and the README."""

    name: str
    task: str
    target: str
    features: tuple[Feature, ...]
    prediction: str = "prediction"  # reference-file column of the model's prediction
    classes: tuple[Any, ...] = ()  # classification: the classes the model predicts
    target_bounds: Bounds = Bounds()  # regression: valid label range
    messages: Layout = Layout()
    labels: LabelLayout = LabelLayout()
    source: str = "<schema>"  # the file it came from, for messages
    reference_probabilities: tuple[tuple[str, str], ...] = ()  # (class text, reference column); () = proba_<class>

    # -- columns ---------------------------------------------------------------------------------
    @property
    def classification(self) -> bool:
        return self.task == "classification"

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.numeric)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if not f.numeric)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"{self.source}: no feature {name!r} (features: {', '.join(self.feature_names)})")

    @property
    def class_kind(self) -> str:
        return _value_kind(self.classes) or "string"

    @property
    def class_texts(self) -> tuple[str, ...]:
        return tuple(map(category_text, self.classes))

    @property
    def probability_classes(self) -> tuple[str, ...]:
        """The class texts whose probabilities the messages carry (every class, or a binary model's
        positive class alone), in the schema's class order."""
        if self.messages.probabilities:
            return self.class_texts
        given = dict(self.messages.probability_fields)
        return tuple(t for t in self.class_texts if t in given)

    @property
    def probability_columns(self) -> tuple[str, ...]:
        """Reference-file columns of `probability_classes`: the schema's `probabilities` mapping, else proba_<class>."""
        named = dict(self.reference_probabilities)
        return tuple(named.get(text, PROBABILITY_PREFIX + text) for text in self.probability_classes)

    @property
    def label_field(self) -> str:
        return self.labels.target or self.target

    # -- field rules -----------------------------------------------------------------------------
    def _feature_rule(self, feature: Feature) -> FieldRule:
        return FieldRule(feature.name, feature.kind, feature.bounds)

    def _target_rule(self, key: str) -> FieldRule:
        if self.classification:
            return FieldRule(key, self.class_kind)
        return FieldRule(key, "number", self.target_bounds)

    def _prediction_rule(self) -> FieldRule:
        if self.classification:
            return FieldRule(self.messages.prediction, self.class_kind)
        return FieldRule(self.messages.prediction, "number")  # any finite number: the model said it

    @property
    def _timestamp_kind(self) -> str:
        return self.messages.timestamp_format

    @cached_property
    def record_rules(self) -> tuple[FieldRule, ...]:
        """Feature records: id, timestamp, the features (top level)."""
        return (FieldRule(self.messages.id, "id"), FieldRule(self.messages.timestamp, self._timestamp_kind),
                *map(self._feature_rule, self.features))

    @cached_property
    def decoders(self) -> "Decoders":
        return Decoders(self)

    # -- encoding --------------------------------------------------------------------------------
    def timestamp_value(self, epoch_ms: int) -> int | float | str:
        """An event time as the messages carry it."""
        if self.messages.timestamp_format == "epoch_ms":
            return int(epoch_ms)
        if self.messages.timestamp_format == "epoch_s":
            return int(epoch_ms) // 1000 if int(epoch_ms) % 1000 == 0 else int(epoch_ms) / 1000
        return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def feature_record(self, record_id: str, epoch_ms: int, features: Mapping[str, Any]) -> dict[str, Any]:
        """A feature record as the producer publishes it."""
        return {self.messages.id: record_id, self.messages.timestamp: self.timestamp_value(epoch_ms),
                **{name: features[name] for name in self.feature_names}}

    def label_record(self, record_id: str, epoch_ms: int, target: Any) -> dict[str, Any]:
        return {self.labels.id: record_id, self.labels.timestamp: self.timestamp_value(epoch_ms), self.label_field: target}

    def to_yaml(self) -> dict[str, Any]:
        """The schema as the YAML file's mapping (load_schema(dump) gives an equal schema)."""
        out: dict[str, Any] = {"name": self.name, "task": self.task, "target": self.target}
        if self.classification:
            out["classes"] = list(self.classes)
        elif self.target_bounds != Bounds():
            out["target_range"] = self.target_bounds.to_yaml()
        out["prediction"] = self.prediction
        features = []
        for f in self.features:
            entry: dict[str, Any] = {"name": f.name, "type": f.type}
            if f.numeric and f.bounds != Bounds():
                entry["range"] = f.bounds.to_yaml()
            if not f.numeric:
                entry["categories"] = list(f.categories)
            features.append(entry)
        out["features"] = features
        if self.reference_probabilities:
            out["probabilities"] = {self._class_of(t): c for t, c in self.reference_probabilities}
        m = self.messages
        probabilities = m.probabilities or ({self._class_of(t): f for t, f in m.probability_fields} or None)
        out["messages"] = {"id": m.id, "timestamp": m.timestamp, "timestamp_format": m.timestamp_format,
                           "prediction": m.prediction, **({"probabilities": probabilities} if probabilities else {}),
                           "features": m.features}
        out["labels"] = {"id": self.labels.id, "timestamp": self.labels.timestamp, "target": self.label_field}
        return out

    def _class_of(self, text: str) -> Any:
        """The schema's class whose text is `text` (1 for "1")."""
        return dict(zip(self.class_texts, self.classes))[text]


# -- typed decoders built from the schema at start-up ---------------------------------------------
def _attr(index: int, key: str, taken: set[str]) -> str:
    """A Python attribute name for a JSON key (the key itself when it can be one)."""
    name = key if key.isidentifier() and not keyword.iskeyword(key) and key not in taken else f"f{index}"
    taken.add(name)
    return name


def _struct(name: str, rules: Sequence[FieldRule], extra: Sequence[tuple[str, Any]] = ()) -> tuple[type, dict[str, str]]:
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
    struct = msgspec.defstruct(name, fields, rename={a: k for k, a in attrs.items() if a != k}, gc=False,
                               omit_defaults=True)
    return struct, attrs


class Decoders:
    """msgspec Structs and decoders for a schema's three message kinds, built once at start-up.

    A record these refuse is not necessarily invalid (an integer id, say, which the checks
    normalise to a string): `decode_records` sends every refusal to the schema's checks for the
    verdict and its reason. They accept only what the checks accept (tested)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        m = schema.messages
        target = schema._target_rule(schema.label_field)
        # Feature records: id, ts and the features at top level; the target optionally (publish).
        self.record_type, self.record_attrs = _struct("FeatureRecord", schema.record_rules,
                                                      [(schema.target, schema._target_rule(schema.target).annotation)])
        self.record = msgspec.json.Decoder(self.record_type)
        self.features_type, self.features_attrs = _struct("Features", [schema._feature_rule(f) for f in schema.features])
        # Predictions as the monitor reads them: scored_at, model_version and unknown fields skipped.
        head = [FieldRule(m.id, "id"), FieldRule(m.timestamp, schema._timestamp_kind), schema._prediction_rule()]
        if m.probabilities:
            head.append(FieldRule(m.probabilities, "probabilities", classes=schema.class_texts))
        head += [FieldRule(field, "probability") for _, field in m.probability_fields]
        if m.features:
            self.prediction_type, self.prediction_attrs = self._nested("Prediction", head)
        else:
            self.prediction_type, self.prediction_attrs = _struct("Prediction", [*head, *(schema._feature_rule(f) for f in schema.features)])
        self.prediction = msgspec.json.Decoder(self.prediction_type)
        label_rules = [FieldRule(schema.labels.id, "id"), FieldRule(schema.labels.timestamp, schema._timestamp_kind), target]
        self.label_type, self.label_attrs = _struct("Label", label_rules)
        self.label = msgspec.json.Decoder(self.label_type)
        self.head_rules, self.label_rules = tuple(head), tuple(label_rules)
        # JSON keys decoded as the integer union (an int, or an integral float the getters turn into one)
        self._integral = {
            "record": {r.key for r in (*schema.record_rules, schema._target_rule(schema.target)) if r.kind == "integer"},
            "prediction": {r.key for r in head if r.kind == "integer"} | (
                set() if m.features else {f.name for f in schema.features if f.kind == "integer"}),
            "features": {f.name for f in schema.features if f.kind == "integer"},
            "label": {r.key for r in label_rules if r.kind == "integer"},
        }

    def _nested(self, name: str, head: Sequence[FieldRule]) -> tuple[type, dict[str, str]]:
        taken: set[str] = set()
        attrs = {rule.key: _attr(i, rule.key, taken) for i, rule in enumerate(head)}
        key = self.schema.messages.features
        attrs[key] = _attr(len(head), key, taken)
        fields = [(attrs[rule.key], rule.annotation) for rule in head] + [(attrs[key], self.features_type)]
        struct = msgspec.defstruct(name, fields, rename={a: k for k, a in attrs.items() if a != k}, gc=False)
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


def check_record(schema: Schema, obj: Any) -> Any:
    """A feature record (the typed decoder's Struct) from a parsed object; raises InvalidRecord."""
    d = schema.decoders
    obj = _object(obj, "record")
    values = _apply(obj, schema.record_rules)
    target = obj.get(schema.target)
    if target is not None:
        values.append(schema._target_rule(schema.target).check(target))
    return d.record_type(*values)


def check_prediction(schema: Schema, obj: Any) -> Any:
    d = schema.decoders
    obj = _object(obj, "prediction")
    if schema.messages.features:
        key = schema.messages.features
        features = obj.get(key)
        if not isinstance(features, dict):
            raise InvalidRecord(MISSING_FIELD if features is None else WRONG_TYPE, f"'{key}' must be an object")
        inner = d.features_type(*_apply(features, [schema._feature_rule(f) for f in schema.features]))
        return d.prediction_type(*_apply(obj, d.head_rules), inner)
    return d.prediction_type(*_apply(obj, [*d.head_rules, *(schema._feature_rule(f) for f in schema.features)]))


def check_label(schema: Schema, obj: Any) -> Any:
    return schema.decoders.label_type(*_apply(_object(obj, "label"), schema.decoders.label_rules))


def verdict(check: Callable[[Schema, Any], Any], schema: Schema, raw: bytes | str | Any, parsed: bool = False) -> Any:
    """check(schema, parsed raw) or the Rejection naming why not."""
    try:
        return check(schema, raw if parsed else parse_json(raw))
    except InvalidRecord as invalid:
        return invalid.rejection


DecodeFailure = (msgspec.ValidationError, msgspec.DecodeError)


def decode_records(values: Sequence[bytes], decoder: msgspec.json.Decoder,
                   fallback: Callable[[bytes], Any]) -> tuple[list, list[tuple[int, Rejection]]]:
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
    utc = dt.timezone.utc
    return np.fromiter((round((v if v.tzinfo else v.replace(tzinfo=utc)).timestamp() * 1000) for v in values),
                       np.int64, len(values))


# -- loading and checking a schema file ------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans (only true/false: `no`, `yes`, `on` stay strings, so a class or category
    named no is not silently False) and refusal of a key given twice."""


_Loader.yaml_implicit_resolvers = {k: [(tag, regex) for tag, regex in v if tag != "tag:yaml.org,2002:bool"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise SchemaError(f"key {key!r} is given twice (line {key_node.start_mark.line + 1}): keep one")
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

_TOP_KEYS = {"name", "task", "target", "target_range", "classes", "prediction", "probabilities", "features", "messages",
             "labels"}
_FEATURE_KEYS = {"name", "type", "range", "categories", "observed"}
_MESSAGE_KEYS = {"id", "timestamp", "timestamp_format", "prediction", "probabilities", "features"}
_LABEL_KEYS = {"id", "timestamp", "target"}
_RANGE_KEYS = {"gt", "ge", "lt", "le"}
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a Prometheus label value and a file name


def load_schema(path: str | Path) -> Schema:
    """Read and check a schema file; SchemaError naming the file, the key and what to change."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SchemaError(f"cannot read schema {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SchemaError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}"
                          f"{' (line %d)' % (exc.problem_mark.line + 1) if getattr(exc, 'problem_mark', None) else ''}") from None
    return parse_schema(raw, str(path))


def parse_schema(raw: Any, source: str = "<schema>") -> Schema:
    """A Schema from the YAML file's mapping (see load_schema)."""

    def fail(key: str, message: str) -> SchemaError:
        return SchemaError(f"{source}: {key}: {message}")

    if not isinstance(raw, dict):
        raise SchemaError(f"{source}: a schema is a mapping with keys name, task, target, features, ... (see the README)")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key; the keys are {', '.join(sorted(_TOP_KEYS))}")
    for key in ("name", "task", "target", "features"):
        if key not in raw:
            raise fail(key, "missing: every schema names its model, task, target and features")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", f"{name!r} must be 1-64 letters, digits or _.:- (it labels every drift series)")
    task = raw["task"]
    if task not in TASKS:
        raise fail("task", f"{task!r} is not a task: use regression or classification")
    target = raw["target"]
    if not isinstance(target, str) or not target:
        raise fail("target", "must be a column name")
    prediction = raw.get("prediction", "prediction")
    if not isinstance(prediction, str) or not prediction:
        raise fail("prediction", "must be the reference file's column of predictions")

    classes: tuple = ()
    if task == "classification":
        if "classes" not in raw:
            raise fail("classes", "missing: list the classes the model predicts (strings, integers or booleans)")
        classes = _values(raw["classes"], fail, "classes")
        if len(classes) < 2:
            raise fail("classes", "a classifier predicts at least 2 classes")
        if "target_range" in raw:
            raise fail("target_range", "only for regression: a classifier's labels are its classes")
    elif "classes" in raw:
        raise fail("classes", "only for classification (task: classification)")
    target_bounds = _bounds(raw.get("target_range"), fail, "target_range")

    features_raw = raw["features"]
    if not isinstance(features_raw, list) or not features_raw:
        raise fail("features", "must be a non-empty list of {name, type, ...}")
    features: list[Feature] = []
    for i, item in enumerate(features_raw):
        where = f"features[{i}]"
        if not isinstance(item, dict):
            raise fail(where, "must be a mapping {name, type, ...}")
        unknown = set(item) - _FEATURE_KEYS
        if unknown:
            raise fail(f"{where}.{sorted(unknown)[0]}", f"unknown key; a feature has {', '.join(sorted(_FEATURE_KEYS))}")
        fname = item.get("name")
        if not isinstance(fname, str) or not fname:
            raise fail(f"{where}.name", "every feature needs a name (its column and field)")
        where = f"features[{i}] ({fname})"
        if fname in {f.name for f in features}:
            raise fail(where, f"feature {fname!r} is listed twice: keep one")
        if fname == target:
            raise fail(where, f"the target {target!r} is among the features: a model cannot take its label as input")
        if fname == prediction or fname.startswith(PROBABILITY_PREFIX) and task == "classification":
            raise fail(where, f"{fname!r} is the reference's prediction or probability column: rename the feature")
        ftype = item.get("type")
        if ftype == "numeric":
            if "categories" in item:
                raise fail(f"{where}.categories", "only categorical features have categories")
            bounds = _bounds(item.get("range"), fail, f"{where}.range")
            observed = item.get("observed")
            features.append(Feature(fname, "numeric", bounds,
                                    observed=tuple(map(float, observed)) if isinstance(observed, list) and len(observed) == 2 else None))
        elif ftype == "categorical":
            if "range" in item:
                raise fail(f"{where}.range", "only numeric features have a range")
            if "categories" not in item:
                raise fail(f"{where}.categories", "missing: list the values the model knows")
            features.append(Feature(fname, "categorical", categories=_values(item["categories"], fail, f"{where}.categories")))
        else:
            raise fail(f"{where}.type", f"{ftype!r} is not a feature type: use numeric or categorical")

    messages = _section(raw.get("messages"), _MESSAGE_KEYS, fail, "messages")
    fmt = messages.get("timestamp_format", "epoch_ms")
    if fmt not in TIMESTAMP_FORMATS:
        raise fail("messages.timestamp_format", f"{fmt!r}: use epoch_ms, epoch_s or iso8601")
    probabilities = messages.get("probabilities")
    if probabilities is not None and task != "classification":
        raise fail("messages.probabilities", "only a classifier's messages carry class probabilities")
    probability_fields: tuple[tuple[str, str], ...] = ()
    if isinstance(probabilities, dict):
        probability_fields = _class_fields(probabilities, classes, fail, "messages.probabilities", "field")
    layout = Layout(
        id=_field(messages, "id", "id", fail), timestamp=_field(messages, "timestamp", "ts", fail), timestamp_format=fmt,
        prediction=_field(messages, "prediction", "prediction", fail),
        probabilities=None if probability_fields else _field(messages, "probabilities", None, fail),
        features=_field(messages, "features", "features", fail, nullable=True), probability_fields=probability_fields)
    reference_probabilities: tuple[tuple[str, str], ...] = ()
    if "probabilities" in raw:
        if not layout.carries_probabilities:
            raise fail("probabilities", "the reference's probability columns are only read when the messages carry "
                       "probabilities: set messages.probabilities too, or remove this key")
        if not isinstance(raw["probabilities"], dict):
            raise fail("probabilities", "must map each class to its reference column, e.g. {1: y_pred_proba}")
        reference_probabilities = _class_fields(raw["probabilities"], classes, fail, "probabilities", "column")
        carried = set(layout.probability_fields and dict(layout.probability_fields)) or set(map(category_text, classes))
        if set(dict(reference_probabilities)) != carried:
            raise fail("probabilities", f"name a reference column for each class whose probability the messages "
                       f"carry: {', '.join(t for t in map(category_text, classes) if t in carried)}")
    labels_raw = _section(raw.get("labels"), _LABEL_KEYS, fail, "labels")
    labels = LabelLayout(id=_field(labels_raw, "id", layout.id, fail, "labels"),
                         timestamp=_field(labels_raw, "timestamp", layout.timestamp, fail, "labels"),
                         target=_field(labels_raw, "target", target, fail, "labels"))
    head = list(layout.head)
    if len(set(head)) != len(head):
        raise fail("messages", f"id, timestamp, prediction and probabilities must be different fields, got {head}")
    record_keys = [layout.id, layout.timestamp]
    clash = next((f.name for f in features if f.name in record_keys), None)
    if clash:
        raise fail("features", f"feature {clash!r} has the name of the id or timestamp field: rename one")
    if layout.features is None:
        clash = next((f.name for f in features if f.name in head), None)
        if clash:
            raise fail("messages.features", f"top-level feature {clash!r} clashes with a message field: nest the features "
                       "(messages.features: features) or rename the field")
    elif layout.features in head:
        raise fail("messages.features", f"{layout.features!r} is already the id, timestamp or prediction field")
    if len({labels.id, labels.timestamp, labels.target}) != 3:
        raise fail("labels", "id, timestamp and target must be different fields")
    probability_columns = [c for _, c in reference_probabilities]
    clash = next((c for c in probability_columns if c in (target, prediction, *(f.name for f in features))), None)
    if clash:
        raise fail("probabilities", f"{clash!r} is the target, the prediction or a feature, not a probability column")
    return Schema(name=name, task=task, target=target, features=tuple(features), prediction=prediction,
                  classes=classes, target_bounds=target_bounds, messages=layout, labels=labels, source=source,
                  reference_probabilities=reference_probabilities)


def _class_fields(raw: dict, classes: tuple, fail: Callable[[str, str], SchemaError], key: str,
                  what: str) -> tuple[tuple[str, str], ...]:
    """{class: name} of probability fields or columns as ((class text, name), ...) in class order:
    every class, or a binary model's positive class alone (the other's probability is 1 - p)."""
    texts = tuple(map(category_text, classes))
    given: dict[str, str] = {}
    for cls, name in raw.items():
        text = category_text(cls)
        if text not in texts:
            raise fail(f"{key}.{text}", f"not one of the classes ({', '.join(texts)})")
        if not isinstance(name, str) or not name:
            raise fail(f"{key}.{text}", f"must be a {what} name")
        given[text] = name
    if len(set(given.values())) != len(given):
        raise fail(key, f"each class needs its own {what}")
    if len(given) != len(texts) and not (len(texts) == 2 and len(given) == 1):
        raise fail(key, f"name a {what} for every class ({', '.join(texts)}); only a binary model may name one, "
                   "its positive class, whose probability p makes the other's 1 - p")
    return tuple((t, given[t]) for t in texts if t in given)


def _values(raw: Any, fail: Callable[[str, str], SchemaError], key: str) -> tuple:
    if not isinstance(raw, list) or not raw:
        raise fail(key, "must be a non-empty list (an empty list would make every value unseen)")
    kind = _value_kind(raw)
    if kind is None:
        raise fail(key, "values must be all strings, all integers or all booleans (quote numbers meant as text)")
    texts = [category_text(v) for v in raw]
    if len(set(texts)) != len(texts):
        repeated = next(t for t in texts if texts.count(t) > 1)
        raise fail(key, f"{repeated!r} is listed twice")
    if kind == "string" and any(not 0 < len(t) <= MAX_CATEGORY_LENGTH for t in texts):
        raise fail(key, f"values must be 1-{MAX_CATEGORY_LENGTH} characters")
    return tuple(raw)


def _bounds(raw: Any, fail: Callable[[str, str], SchemaError], key: str) -> Bounds:
    if raw is None:
        return Bounds()
    if not isinstance(raw, dict) or not raw or set(raw) - _RANGE_KEYS:
        raise fail(key, "must be a mapping of gt, ge (lower bound: greater than / at least) and lt, le (upper)")
    if "gt" in raw and "ge" in raw or "lt" in raw and "le" in raw:
        raise fail(key, "give one lower bound (gt or ge) and one upper bound (lt or le)")
    for side, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail(f"{key}.{side}", f"{value!r} must be a finite number")
    bounds = Bounds(**{k: float(v) for k, v in raw.items()})
    low = bounds.gt if bounds.gt is not None else bounds.ge
    high = bounds.lt if bounds.lt is not None else bounds.le
    if low is not None and high is not None and not low < high:
        raise fail(key, f"the lower bound {low:g} must be below the upper bound {high:g}")
    return bounds


def _section(raw: Any, keys: set[str], fail: Callable[[str, str], SchemaError], name: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail(name, f"must be a mapping of {', '.join(sorted(keys))}")
    unknown = set(raw) - keys
    if unknown:
        raise fail(f"{name}.{sorted(unknown)[0]}", f"unknown key; {name} has {', '.join(sorted(keys))}")
    return raw


def _field(section: dict, key: str, default: str | None, fail: Callable[[str, str], SchemaError], name: str = "messages",
           nullable: bool = False) -> str | None:
    if key not in section:
        return default
    value = section[key]
    if value is None and (nullable or default is None):
        return None
    if not isinstance(value, str) or not value:
        raise fail(f"{name}.{key}", "must be a field name" + (" (or null for top-level features)" if nullable else ""))
    return value
