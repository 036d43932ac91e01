"""What `monitor profile` decides about a reference, as data: the options it was given, each
column's type, the model's outputs and the event time (see the package doc for the rules).

The helpers here read a column's values the way every rule does: its kind (float, integer,
boolean, string), its empty rows, whether its numbers are whole, and values as a schema lists
them (`scalar` writes one as YAML would read it back)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contract.rules import category_text
from contract.schema import PROBABILITY_PREFIX

MAX_INTEGER_CATEGORIES = 20
MAX_CATEGORIES = 100
LAYOUTS = ("scorer", "columns")
SCORER_PREDICTION = "prediction"  # the prediction column `scorer reference` writes
# Epoch seconds from 1973 to 5138 fall in [1e8, 1e11); epoch milliseconds from 1973 on are >= 1e11.
EPOCH_S_RANGE = (1e8, 1e11)
RARE_SHARE = 0.01  # a category under 1% of the reference rows is pointed out as rare
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProfileError(ValueError):
    """Input that cannot be profiled; the message says what to change."""


@dataclass(frozen=True)
class Options:
    target: str
    prediction: str
    task: str | None = None  # None: inferred from the target
    id: str = "id"
    ts: str = "ts"
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    max_integer_categories: int = MAX_INTEGER_CATEGORIES
    max_categories: int = MAX_CATEGORIES
    probabilities: tuple[
        str, ...
    ] = ()  # the reference's probability columns; (): found by name and values
    timestamp_format: str | None = None  # None: inferred from the --ts column's values


@dataclass(frozen=True)
class Column:
    """A feature as profiled: its type, categories or observed range, and notes for the file."""

    name: str
    type: str  # numeric | categorical
    categories: tuple[Any, ...] = ()
    observed: tuple[Any, Any] | None = None
    type_note: str | None = (
        None  # why an integer got its type, and how to change it (above the entry)
    )
    notes: tuple[str, ...] = ()  # what the data says about it (below the entry)


@dataclass(frozen=True)
class Profile:
    task: str
    target: str
    prediction: str
    features: tuple[Column, ...]
    not_features: tuple[
        tuple[str, str], ...
    ]  # (column, what it is): the id, the event time, probabilities
    left_out: tuple[
        tuple[str, str], ...
    ]  # (column, why it was left out): a decision the user may revisit
    rows: int
    classes: tuple[Any, ...] = ()
    probabilities: tuple[
        tuple[Any, str], ...
    ] = ()  # (class, reference column) of the class probabilities
    probability_note: str | None = None  # how the probability columns were found
    task_note: str | None = None  # how the task was inferred (None when --task gave it)
    target_observed: tuple[float, float] | None = None  # regression
    timestamp_format: str = "epoch_ms"
    timestamp_note: str | None = (
        None  # how the format was told (from the --ts column's values, or assumed)
    )

    @property
    def scorer_probabilities(self) -> bool:
        """Every class has a proba_<class> column: what `scorer reference` writes."""
        return (
            bool(self.probabilities)
            and len(self.probabilities) == len(self.classes)
            and all(
                column == PROBABILITY_PREFIX + category_text(c) for c, column in self.probabilities
            )
        )


# -- reading a column --------------------------------------------------------------------------------
def kind_of(values: pd.Series) -> str | None:
    """float, integer, boolean or string for the non-empty values of a column; None for other types."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if pd.api.types.is_bool_dtype(values.dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(values.dtype):
        return "integer"
    if pd.api.types.is_float_dtype(values.dtype):
        return "float"
    if pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype):
        present = values.dropna().tolist()
        if all(isinstance(v, str) for v in present):
            return "string"
        if all(isinstance(v, (bool, np.bool_)) for v in present):
            return "boolean"
    return None


def empty_rows(values: pd.Series) -> int:
    """Rows without a value (NaN/None, or an empty string, which no category can be)."""
    missing = values.isna()
    if kind_of(values) == "string":
        missing |= values.astype(object).map(lambda v: isinstance(v, str) and not v.strip())
    return int(missing.sum())


def integral(values: pd.Series) -> bool:
    numbers = values.to_numpy(np.float64)
    return bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))


def natives(values: pd.Series, kind: str) -> list[Any]:
    """The values as Python str, int or bool: what a schema lists."""
    convert = {"string": str, "integer": int, "boolean": bool}[kind]
    return [convert(v) for v in values.tolist()]


def scalar(value: Any) -> str:
    """A category, class or bound; strings always quoted, so no, yes and 1.0 stay strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        # PyYAML reads 1e-05 as a string: a float needs a dot in its mantissa.
        return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text
    return json.dumps(str(value), ensure_ascii=False)


def shown(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)
