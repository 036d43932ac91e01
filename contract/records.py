"""The record contract shared by every service, and the validation that enforces it.

Features  {"id", "ts", "carat", "cut", "color", "clarity", "depth", "table"}
Labels    {"id", "ts", "price"}
Predictions {"id", "ts", "scored_at", "model_version", "prediction", "features": {...}}

`ts` is event time in epoch milliseconds. Validation never raises on bad input: it returns a
`Rejection` naming one reason, so callers can count it and route the original bytes to the DLQ.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import orjson

NUMERIC_FEATURES = ("carat", "depth", "table")
CATEGORICAL_FEATURES = ("cut", "color", "clarity")
FEATURE_COLUMNS = ("carat", "cut", "color", "clarity", "depth", "table")

# Categories the diamonds data (and so the trained encoder) knows. A value outside these is
# still scored (the encoder ignores it) but counted: a new category is drift, not bad input.
KNOWN_CATEGORIES: dict[str, frozenset[str]] = {
    "cut": frozenset({"Fair", "Good", "Very Good", "Premium", "Ideal"}),
    "color": frozenset({"D", "E", "F", "G", "H", "I", "J"}),
    "clarity": frozenset({"I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"}),
}

# Physically plausible ranges: lower bound exclusive, upper inclusive. The data spans
# carat 0.2-5.01, depth 43-79, table 43-95; the bounds leave room for real drift.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "carat": (0.0, 20.0),
    "depth": (0.0, 100.0),
    "table": (0.0, 100.0),
}
PRICE_RANGE = (0.0, 1e7)

MAX_RECORD_BYTES = 8192
MAX_ID_LENGTH = 128
MAX_CATEGORY_LENGTH = 64

# Rejection reasons: stable strings, used as metric labels and DLQ headers.
NOT_JSON = "not_json"
OVERSIZE = "oversize"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"
REJECTION_REASONS = (NOT_JSON, OVERSIZE, NOT_OBJECT, MISSING_FIELD, WRONG_TYPE, NOT_FINITE, OUT_OF_RANGE)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: `reason` is one of REJECTION_REASONS, `detail` is for humans."""

    reason: str
    detail: str


class FeatureRecord(NamedTuple):
    """A valid feature record (a NamedTuple: the scorer builds thousands per batch)."""

    id: str
    ts: int
    carat: float
    cut: str
    color: str
    clarity: str
    depth: float
    table: float
    price: float | None = None  # present when a published record carries its label

    @property
    def unseen_categories(self) -> tuple[str, ...]:
        """Categorical columns whose value the training data never had."""
        return tuple(c for c in CATEGORICAL_FEATURES if getattr(self, c) not in KNOWN_CATEGORIES[c])

    def features(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in FEATURE_COLUMNS}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, **self.features()}


@dataclass(frozen=True, slots=True)
class LabelRecord:
    id: str
    ts: int
    price: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "price": self.price}


class InvalidRecord(Exception):
    """Raised by parse_json; the decoders turn it into a returned Rejection."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def parse_json(raw: bytes | str, limit: int = MAX_RECORD_BYTES) -> Any:
    """Parse JSON of at most `limit` bytes; raises InvalidRecord for oversize or non-JSON input.

    orjson parses strictly and fast; only what it refuses goes through the standard library,
    which accepts NaN/Infinity literals, so those get the clearer reason `not_finite`.
    """
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


def _field(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj:
        raise InvalidRecord(MISSING_FIELD, f"missing field '{name}'")
    return obj[name]


def _number(obj: Mapping[str, Any], name: str, bounds: tuple[float, float]) -> float:
    value = _field(obj, name)
    # bool is an int subclass in Python; true/false is never a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(WRONG_TYPE, f"'{name}' must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        raise InvalidRecord(OUT_OF_RANGE, f"'{name}' is too large") from None
    if not math.isfinite(value):
        raise InvalidRecord(NOT_FINITE, f"'{name}' is {value}")
    low, high = bounds
    if not low < value <= high:
        raise InvalidRecord(OUT_OF_RANGE, f"'{name}'={value} outside ({low:g}, {high:g}]")
    return value


def _category(obj: Mapping[str, Any], name: str) -> str:
    value = _field(obj, name)
    if not isinstance(value, str):
        raise InvalidRecord(WRONG_TYPE, f"'{name}' must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_CATEGORY_LENGTH:
        raise InvalidRecord(OUT_OF_RANGE, f"'{name}' must be 1-{MAX_CATEGORY_LENGTH} characters")
    return value


def _identity(obj: Mapping[str, Any]) -> tuple[str, int]:
    if not isinstance(obj, dict):
        raise InvalidRecord(NOT_OBJECT, f"record must be a JSON object, got {type(obj).__name__}")
    record_id = _field(obj, "id")
    # Integer ids are accepted and normalised to strings so joins by id never miss on type.
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise InvalidRecord(WRONG_TYPE, f"'id' must be a string, got {type(record_id).__name__}")
    record_id = str(record_id)
    if not record_id or len(record_id) > MAX_ID_LENGTH:
        raise InvalidRecord(OUT_OF_RANGE, f"'id' must be 1-{MAX_ID_LENGTH} characters")
    ts = _field(obj, "ts")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidRecord(WRONG_TYPE, f"'ts' must be an integer (epoch ms), got {type(ts).__name__}")
    if not 0 <= ts < 2**53:
        raise InvalidRecord(OUT_OF_RANGE, f"'ts'={ts} is not an epoch-ms timestamp")
    return record_id, ts


_FAST_NUMBER_TYPES = (float, int)


def _fast_features(obj: Any) -> FeatureRecord | None:
    """The common case (a well-formed record) in few operations; None sends it to the slow path,
    which finds and names the problem."""
    try:
        record_id, ts = obj["id"], obj["ts"]
        carat, depth, table = obj["carat"], obj["depth"], obj["table"]
        cut, color, clarity = obj["cut"], obj["color"], obj["clarity"]
    except (KeyError, TypeError):
        return None
    if (type(record_id) is str and 0 < len(record_id) <= MAX_ID_LENGTH and type(ts) is int and 0 <= ts < 2**53
            and type(carat) in _FAST_NUMBER_TYPES and 0.0 < carat <= 20.0
            and type(depth) in _FAST_NUMBER_TYPES and 0.0 < depth <= 100.0
            and type(table) in _FAST_NUMBER_TYPES and 0.0 < table <= 100.0
            and type(cut) is str and 0 < len(cut) <= MAX_CATEGORY_LENGTH
            and type(color) is str and 0 < len(color) <= MAX_CATEGORY_LENGTH
            and type(clarity) is str and 0 < len(clarity) <= MAX_CATEGORY_LENGTH
            and obj.get("price") is None):
        # Comparisons above are False for NaN, so a NaN never takes this path.
        return FeatureRecord(record_id, ts, float(carat), cut, color, clarity, float(depth), float(table))
    return None


def _features_from(obj: Any) -> FeatureRecord:
    fast = _fast_features(obj) if type(obj) is dict else None
    if fast is not None:
        return fast
    record_id, ts = _identity(obj)
    price = _number(obj, "price", PRICE_RANGE) if obj.get("price") is not None else None
    return FeatureRecord(
        id=record_id,
        ts=ts,
        carat=_number(obj, "carat", NUMERIC_RANGES["carat"]),
        cut=_category(obj, "cut"),
        color=_category(obj, "color"),
        clarity=_category(obj, "clarity"),
        depth=_number(obj, "depth", NUMERIC_RANGES["depth"]),
        table=_number(obj, "table", NUMERIC_RANGES["table"]),
        price=price,
    )


def validate_features(obj: Any) -> FeatureRecord | Rejection:
    """Validate an already-parsed feature record (e.g. from a POST body)."""
    try:
        return _features_from(obj)
    except InvalidRecord as invalid:
        return invalid.rejection


def decode_features(raw: bytes | str) -> FeatureRecord | Rejection:
    """Decode one feature record from the wire. Extra fields are ignored."""
    try:
        return _features_from(parse_json(raw))
    except InvalidRecord as invalid:
        return invalid.rejection


def decode_label(raw: bytes | str) -> LabelRecord | Rejection:
    """Decode one ground-truth label record."""
    try:
        obj = parse_json(raw)
        record_id, ts = _identity(obj)
        return LabelRecord(record_id, ts, _number(obj, "price", PRICE_RANGE))
    except InvalidRecord as invalid:
        return invalid.rejection



def encode(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes for the wire (orjson writes NaN as null: callers pass finite numbers)."""
    return orjson.dumps(obj)


def prediction_message(record: FeatureRecord, prediction: float, model_version: str, scored_at: int) -> dict[str, Any]:
    """The prediction record the scorer publishes, keyed by record id: the contract's definition,
    one record at a time. The scorer builds whole batches in C (`scorer.scoring.finish_batch`),
    tested byte for byte against this."""
    if not math.isfinite(prediction):
        raise ValueError(f"model returned {prediction} for record {record.id}")
    return {
        "id": record.id,
        "ts": record.ts,
        "scored_at": scored_at,
        "model_version": model_version,
        "prediction": prediction,
        "features": record.features(),
    }
