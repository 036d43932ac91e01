"""The field rules: how one JSON field of a record is validated, stated once per kind.

Every field a schema names (an id, an event time, a feature, a prediction, a label, a class
probability) has a `FieldRule`: its key and its kind. `KINDS` maps each kind to its two uses,
side by side in one row, so they cannot drift apart:
- the msgspec annotation of the typed decoder, which validates a whole batch in C;
- the Python check that gives the verdict on a record the typed decoder refused, naming one
  reason (`REJECTION_REASONS`) and returning the normalised value (an integer id as a string,
  1.0 as the integer class 1).
The typed decoders accept only what the checks accept (tests/unit/test_schema.py,
tests/unit/test_monitor_decode.py hold that line with generated records).

Also here: the limits and rejection reasons (stable strings: metric labels and DLQ headers), and
the text form of categorical values (`category_text`: 3 -> "3", True -> "true"), so windows,
state and gauges only ever hold strings.

>>> FieldRule("grade", "integer").check(2.0), FieldRule("grade", "integer").annotation is not None
(2, True)
>>> FieldRule("grade", "integer").check(2.5)
Traceback (most recent call last):
...
contract.rules.InvalidRecord: 'grade' must be an integer, got a fractional number
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
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
REJECTION_REASONS = (
    NOT_JSON,
    OVERSIZE,
    NOT_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    NOT_FINITE,
    OUT_OF_RANGE,
)


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


def value_kind(values: Sequence[Any]) -> str | None:
    """string, integer or boolean when every value is of that type, else None."""
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, str) for v in values):
        return "string"
    return None


# -- numeric ranges --------------------------------------------------------------------------------
_FINITE = Meta(
    ge=-sys.float_info.max, le=sys.float_info.max
)  # JSON has no NaN; 1e999 overflows to inf


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
        low = (
            {"gt": self.gt}
            if self.gt is not None
            else {"ge": self.ge if self.ge is not None else -sys.float_info.max}
        )
        high = (
            {"lt": self.lt}
            if self.lt is not None
            else {"le": self.le if self.le is not None else sys.float_info.max}
        )
        return Meta(**low, **high)

    def contains(self, value: float) -> bool:
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def __str__(self) -> str:
        low = (
            f"({self.gt:g}"
            if self.gt is not None
            else f"[{self.ge:g}"
            if self.ge is not None
            else "(-inf"
        )
        high = (
            f"{self.lt:g})"
            if self.lt is not None
            else f"{self.le:g}]"
            if self.le is not None
            else "inf)"
        )
        return f"{low}, {high}"

    def to_yaml(self) -> dict[str, float]:
        return {
            k: v
            for k, v in (("gt", self.gt), ("ge", self.ge), ("lt", self.lt), ("le", self.le))
            if v is not None
        }


UNIT = Bounds(ge=0.0, le=1.0)
EPOCH_SECONDS = Bounds(ge=0.0, lt=MAX_EPOCH_MS / 1000)


# -- the rule and its kinds ----------------------------------------------------------------------
@dataclass(frozen=True)
class FieldRule:
    """How one JSON field is validated: `kind` is a key of KINDS. `annotation` is the typed
    decoder's type; `check` the same rule in Python, raising InvalidRecord with the reason and
    returning the normalised value."""

    key: str  # the field's name in the JSON object
    kind: str
    bounds: Bounds = Bounds()
    classes: tuple[str, ...] = ()  # probabilities: the keys of the object

    @property
    def annotation(self) -> Any:
        return KINDS[self.kind].annotation(self)

    def check(self, value: Any) -> Any:
        return KINDS[self.kind].check(self, value)


@dataclass(frozen=True)
class Kind:
    """One kind of field: (rule -> msgspec annotation, (rule, value) -> normalised value or InvalidRecord)."""

    annotation: Callable[[FieldRule], Any]
    check: Callable[[FieldRule, Any], Any]


def _check_id(rule: FieldRule, value: Any) -> str:
    # Integer ids are accepted and normalised to strings, so joins by id never miss on type.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord(
            WRONG_TYPE, f"'{rule.key}' must be a string, got {type(value).__name__}"
        )
    value = str(value)
    if not 0 < len(value) <= MAX_ID_LENGTH:
        raise InvalidRecord(OUT_OF_RANGE, f"'{rule.key}' must be 1-{MAX_ID_LENGTH} characters")
    return value


def _check_epoch_ms(rule: FieldRule, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(
            WRONG_TYPE, f"'{rule.key}' must be an integer (epoch ms), got {type(value).__name__}"
        )
    if not 0 <= value < MAX_EPOCH_MS:
        raise InvalidRecord(OUT_OF_RANGE, f"'{rule.key}'={value} is not an epoch-ms timestamp")
    return value


def _check_epoch_s(rule: FieldRule, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(
            WRONG_TYPE, f"'{rule.key}' must be a number (epoch seconds), got {type(value).__name__}"
        )
    return number(rule.key, value, EPOCH_SECONDS)


def _check_iso8601(rule: FieldRule, value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise InvalidRecord(
            WRONG_TYPE, f"'{rule.key}' must be an ISO-8601 string, got {type(value).__name__}"
        )
    try:  # msgspec's own parser: exactly what the typed decoder accepts
        return msgspec.convert(value, dt.datetime)
    except msgspec.ValidationError:
        raise InvalidRecord(
            WRONG_TYPE, f"'{rule.key}'={value[:40]!r} is not an ISO-8601 date-time"
        ) from None


def _check_string(rule: FieldRule, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(
            WRONG_TYPE, f"'{rule.key}' must be a string, got {type(value).__name__}"
        )
    if not 0 < len(value) <= MAX_CATEGORY_LENGTH:
        raise InvalidRecord(
            OUT_OF_RANGE, f"'{rule.key}' must be 1-{MAX_CATEGORY_LENGTH} characters"
        )
    return value


def _check_integer(rule: FieldRule, value: Any) -> int:
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
        value = int(value)  # 1.0 is class 1; 1.5 stays invalid
    if isinstance(value, bool) or not isinstance(value, int):
        got = "a fractional number" if isinstance(value, float) else type(value).__name__
        raise InvalidRecord(WRONG_TYPE, f"'{rule.key}' must be an integer, got {got}")
    if not -(2**63) <= value < 2**63:
        raise InvalidRecord(OUT_OF_RANGE, f"'{rule.key}' is too large")
    return value


def _check_boolean(rule: FieldRule, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRecord(
            WRONG_TYPE, f"'{rule.key}' must be true or false, got {type(value).__name__}"
        )
    return value


def _check_probabilities(rule: FieldRule, value: Any) -> Any:
    if not isinstance(value, dict):
        raise InvalidRecord(WRONG_TYPE, f"'{rule.key}' must be an object {{class: probability}}")
    values = []
    for text in rule.classes:
        if text not in value:
            raise InvalidRecord(
                MISSING_FIELD, f"'{rule.key}' has no probability for class {text!r}"
            )
        values.append(number(f"{rule.key}.{text}", value[text], UNIT))
    return probability_struct(rule.classes)(*values)


_PROBABILITY = Annotated[float, UNIT.meta()]

KINDS: dict[str, Kind] = {
    "id": Kind(
        lambda rule: Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)], _check_id
    ),
    "epoch_ms": Kind(lambda rule: Annotated[int, Meta(ge=0, lt=MAX_EPOCH_MS)], _check_epoch_ms),
    "epoch_s": Kind(lambda rule: Annotated[float, EPOCH_SECONDS.meta()], _check_epoch_s),
    "iso8601": Kind(lambda rule: dt.datetime, _check_iso8601),
    "number": Kind(
        lambda rule: Annotated[float, rule.bounds.meta()],
        lambda rule, value: number(rule.key, value, rule.bounds),
    ),
    "string": Kind(
        lambda rule: Annotated[str, Meta(min_length=1, max_length=MAX_CATEGORY_LENGTH)],
        _check_string,
    ),
    # An integral float is that integer (a label 1.0 is class 1): the decoders' getters make it an int.
    "integer": Kind(
        lambda rule: (
            Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
            | Annotated[float, Meta(multiple_of=1, ge=-MAX_EXACT_INTEGER, le=MAX_EXACT_INTEGER)]
        ),
        _check_integer,
    ),
    "boolean": Kind(lambda rule: bool, _check_boolean),
    "probability": Kind(
        lambda rule: _PROBABILITY, lambda rule, value: number(rule.key, value, UNIT)
    ),
    "probabilities": Kind(lambda rule: probability_struct(rule.classes), _check_probabilities),
}


def number(name: str, value: Any, bounds: Bounds) -> float:
    """A finite number within `bounds` as a float; InvalidRecord naming why not."""
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


_PROBABILITY_STRUCTS: dict[tuple[str, ...], type] = {}


def probability_struct(classes: tuple[str, ...]) -> type:
    """A Struct with one probability in [0, 1] per class, keyed by the class's text in JSON
    (attributes p0..pK-1 in `classes` order); one type per class tuple, so decoded records compare."""
    struct = _PROBABILITY_STRUCTS.get(classes)
    if struct is None:
        names = [f"p{i}" for i in range(len(classes))]
        struct = msgspec.defstruct(
            "Probabilities",
            [(n, _PROBABILITY) for n in names],
            rename=dict(zip(names, classes)),
            gc=False,
        )
        _PROBABILITY_STRUCTS[classes] = struct
    return struct
