"""`python -m monitor profile`: a first schema for a model, written from its reference file.

The pure core, `profile(frame, options)`, types every column of the reference (held-out rows
with the target and the model's prediction) and returns a `Profile`; `render(profile, ...)`
writes it as a commented schema file (`contract.schema`'s format). `main` reads the file,
checks that the text loads with `load_schema` and that the reference passes `read_reference`
against it, and only then writes it.

Typing rules (each decision a user may want to revisit is a comment in the file):
- floats are numeric; strings and booleans categorical; integers categorical when they take
  few values (a code: 0/1, a rating, a month), numeric otherwise (a count, an amount);
- numeric features get their observed range as information and no `range`: a range refuses
  values outside it (to the DLQ), so a range drawn from the data would hide the drift that
  pushes values past it;
- strings with too many distinct values (ids, free text) and columns with empty values are
  left out with a note, never binned or filled: a chi-square test over hundreds of one-off
  values, or over what a fill made up, measures nothing;
- the task: a classifier when the target (and the prediction) hold strings, booleans or a handful
  of whole numbers (0.0 and 1.0 included), a regression otherwise;
- a prediction, probability, id, timestamp or target column is never a feature. A classifier's
  probability columns are proba_<class> (what `scorer reference` writes), `--probabilities`, or
  columns named like a probability ("prob" in the name) holding values in [0, 1]: one for a binary
  model (the positive class's, found from the predictions), or one per class (the class in the name);
- the event-time format from the `--ts` column's values (epoch seconds, epoch milliseconds, ISO 8601
  with `T` or a space, with or without an offset), refused with an example when it cannot be told;
- the message layout: our scorer's when the prediction column is `prediction` (what `scorer
  reference` writes), else the reference's own column names as top-level fields (another system's
  log, written like its reference); `--layout` and the field flags change it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contract.artifacts import read_reference, read_table
from contract.schema import (MAX_CATEGORY_LENGTH, PROBABILITY_PREFIX, TASKS, TIMESTAMP_FORMATS, FieldRule, InvalidRecord,
                             SchemaError, category_text, load_schema)

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
    probabilities: tuple[str, ...] = ()  # the reference's probability columns; (): found by name and values
    timestamp_format: str | None = None  # None: inferred from the --ts column's values


@dataclass(frozen=True)
class Column:
    """A feature as profiled: its type, categories or observed range, and notes for the file."""

    name: str
    type: str  # numeric | categorical
    categories: tuple[Any, ...] = ()
    observed: tuple[Any, Any] | None = None
    type_note: str | None = None  # why an integer got its type, and how to change it (above the entry)
    notes: tuple[str, ...] = ()  # what the data says about it (below the entry)


@dataclass(frozen=True)
class Profile:
    task: str
    target: str
    prediction: str
    features: tuple[Column, ...]
    not_features: tuple[tuple[str, str], ...]  # (column, what it is): the id, the event time, probabilities
    left_out: tuple[tuple[str, str], ...]  # (column, why it was left out): a decision the user may revisit
    rows: int
    classes: tuple[Any, ...] = ()
    probabilities: tuple[tuple[Any, str], ...] = ()  # (class, reference column) of the class probabilities
    probability_note: str | None = None  # how the probability columns were found
    task_note: str | None = None  # how the task was inferred (None when --task gave it)
    target_observed: tuple[float, float] | None = None  # regression
    timestamp_format: str = "epoch_ms"
    timestamp_note: str | None = None  # how the format was told (from the --ts column's values, or assumed)

    @property
    def scorer_probabilities(self) -> bool:
        """Every class has a proba_<class> column: what `scorer reference` writes."""
        return bool(self.probabilities) and len(self.probabilities) == len(self.classes) and all(
            column == PROBABILITY_PREFIX + category_text(c) for c, column in self.probabilities)


# -- typing ----------------------------------------------------------------------------------------
def _kind(values: pd.Series) -> str | None:
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


def _empty(values: pd.Series) -> int:
    """Rows without a value (NaN/None, or an empty string, which no category can be)."""
    missing = values.isna()
    if _kind(values) == "string":
        missing |= values.astype(object).map(lambda v: isinstance(v, str) and not v.strip())
    return int(missing.sum())


def _integral(values: pd.Series) -> bool:
    numbers = values.to_numpy(np.float64)
    return bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))


def _natives(values: pd.Series, kind: str) -> list[Any]:
    """The values as Python str, int or bool: what a schema lists."""
    convert = {"string": str, "integer": int, "boolean": bool}[kind]
    return [convert(v) for v in values.tolist()]


def _categorical(name: str, values: pd.Series, kind: str, type_note: str | None = None) -> Column:
    natives = _natives(values, kind)
    counts = Counter(natives)
    categories = tuple(sorted(counts))
    rows, notes = len(natives), []
    rare = [(c, int(counts[c])) for c in categories if counts[c] < RARE_SHARE * rows]
    if rare:
        listed = ", ".join(f"{_scalar(c)} ({n} of {rows} rows)" for c, n in rare[:5])
        notes.append(f"rare in the reference: {listed}" if len(rare) <= 5 else
                     f"rare in the reference: {len(rare)} of {len(categories)} categories each under {RARE_SHARE:.0%} "
                     f"of the rows, e.g. {listed}")
    if len(categories) == 1:
        notes.append("one value in the whole reference: only unseen values can move its drift test")
    return Column(name, "categorical", categories=categories, type_note=type_note, notes=tuple(notes))


def _numeric(name: str, values: pd.Series, kind: str, type_note: str | None = None) -> Column:
    low, high = values.min(), values.max()
    observed = (int(low), int(high)) if kind == "integer" else (float(low), float(high))
    notes = ("constant in the reference: any other value is drift",) if low == high else ()
    return Column(name, "numeric", observed=observed, type_note=type_note, notes=notes)


def _feature(name: str, values: pd.Series, forced: str | None, options: Options) -> Column | str:
    """The feature, or why the column is left out (a str). ProfileError when a forced type cannot apply."""
    rows = len(values)
    empty = _empty(values)
    if empty:
        if forced:
            raise ProfileError(f"--{forced} {name}: the column is empty in {empty} of {rows} rows: fill or drop those rows")
        return f"empty in {empty} of {rows} rows: fill or drop those rows, then profile again to monitor it"
    kind = _kind(values)
    if kind is None:
        if forced:
            raise ProfileError(f"--{forced} {name}: the column holds {values.dtype} values, not numbers, strings or booleans")
        return f"its values ({values.dtype}) are neither numbers, strings nor booleans"
    if kind == "float" and not np.all(np.isfinite(values.to_numpy(np.float64))):
        bad = int((~np.isfinite(values.to_numpy(np.float64))).sum())
        if forced:
            raise ProfileError(f"--{forced} {name}: the column holds infinite values in {bad} of {rows} rows")
        return f"infinite in {bad} of {rows} rows: fix or drop those rows, then profile again to monitor it"
    distinct = int(values.nunique())
    if forced == "numeric":
        if kind not in ("float", "integer"):
            raise ProfileError(f"--numeric {name}: the column holds {kind} values, not numbers")
        return _numeric(name, values, kind)
    if forced == "categorical":
        if kind == "float" and not _integral(values):
            raise ProfileError(f"--categorical {name}: the column holds fractional numbers ({values.iloc[0]!r}, ...); "
                               "categories are strings, integers or booleans")
        if kind == "string" and values.astype(str).str.len().max() > MAX_CATEGORY_LENGTH:
            raise ProfileError(f"--categorical {name}: some values are longer than {MAX_CATEGORY_LENGTH} characters, "
                               "the longest a category can be")
        return _categorical(name, values, "integer" if kind == "float" else kind)
    if kind == "float":
        return _numeric(name, values, kind)
    if kind == "boolean":
        return _categorical(name, values, kind)
    if kind == "integer":
        if distinct <= options.max_integer_categories:
            return _categorical(name, values, kind, (
                f"integer with {distinct} distinct values: categorical; make it numeric if it is a count or a measure "
                f"(type: numeric without categories, or profile again with --numeric {name})"))
        if distinct == rows:  # an id, most likely: its drift test would flag every new id range
            return _numeric(name, values, kind, (
                f"integer with a different value in every row: numeric; if it is an id, not a measure, delete this entry "
                f"(or profile again with --id {name})"))
        return _numeric(name, values, kind, (
            f"integer with {distinct} distinct values: numeric; make it categorical if it is a code "
            f"(or profile again with --categorical {name})"))
    longest = int(values.astype(str).str.len().max())
    if distinct > options.max_categories or distinct > rows / 2:
        return (f"{distinct} distinct strings in {rows} rows: an id or free text, not a category "
                f"(--categorical {name} keeps it, --max-categories raises the limit of {options.max_categories})")
    if longest > MAX_CATEGORY_LENGTH:
        return f"values up to {longest} characters: free text (a category is at most {MAX_CATEGORY_LENGTH})"
    return _categorical(name, values, kind)


def _task(target: pd.Series, prediction: pd.Series, options: Options) -> tuple[str, str | None]:
    """The task and why: a classifier when the target holds strings or booleans, or when the target
    and the prediction both hold a handful of whole numbers (0.0/1.0 included: a class is a class
    however a tool wrote it); a regression otherwise."""
    if options.task:
        return options.task, None
    kind = _kind(target)
    if kind in ("string", "boolean"):
        return "classification", f"the target holds {kind}s"
    if kind not in ("integer", "float"):
        raise ProfileError(f"target {options.target!r}: its values ({target.dtype}) are neither numbers, strings nor booleans")
    limit = options.max_integer_categories

    def few_whole(values: pd.Series) -> bool:
        return _kind(values) in ("integer", "float") and _integral(values) and int(values.nunique()) <= limit

    if few_whole(target) and few_whole(prediction):
        shown = ", ".join(_scalar(v) for v in sorted(set(target.tolist()))[:5])
        what = "an integer" if kind == "integer" else "whole numbers"
        return "classification", (f"the target holds {what} with {int(target.nunique())} distinct values ({shown}) "
                                  f"and so does the prediction: classes (at most {limit}, --max-integer-categories)")
    if kind == "integer":
        return "regression", ("the target is an integer with many values" if not few_whole(target)
                              else "the target holds few whole numbers but the prediction does not")
    if few_whole(target):
        return "regression", "the target holds few whole numbers but the prediction does not"
    return "regression", "the target is a float"


def _classes(frame: pd.DataFrame, options: Options) -> tuple[Any, ...]:
    """The classes seen in the target and the prediction, sorted, all of one kind."""
    kinds, values = set(), []
    for column in (options.target, options.prediction):
        column_values = frame[column]
        kind = _kind(column_values)
        if kind == "float":
            if not _integral(column_values):
                raise ProfileError(f"--task classification: column {column!r} holds fractional numbers "
                                   f"({column_values.iloc[0]!r}, ...), not classes")
            kind = "integer"
        if kind is None:
            raise ProfileError(f"column {column!r}: its values ({column_values.dtype}) are not classes "
                               "(strings, integers or booleans)")
        kinds.add(kind)
        values += _natives(column_values, kind)
    if len(kinds) > 1:
        raise ProfileError(f"the target {options.target!r} and the prediction {options.prediction!r} hold different kinds of "
                           f"classes ({' and '.join(sorted(kinds))}): write both the same way")
    classes = tuple(sorted(set(values)))
    if len(classes) < 2:
        raise ProfileError(f"the target and prediction columns hold one class ({_scalar(classes[0])}): a classifier needs 2")
    if any(isinstance(c, str) and len(c) > MAX_CATEGORY_LENGTH for c in classes):
        raise ProfileError(f"a class is longer than {MAX_CATEGORY_LENGTH} characters")
    return classes


def profile(frame: pd.DataFrame, options: Options) -> Profile:
    """Type every column of a reference frame. ProfileError for input that cannot make a schema."""
    columns = list(map(str, frame.columns))
    frame = frame.set_axis(columns, axis=1)
    for flag, column in (("--target", options.target), ("--prediction", options.prediction)):
        if column not in columns:
            raise ProfileError(f"{flag} {column}: no such column; the file has {', '.join(columns[:20])}")
    if options.target == options.prediction:
        raise ProfileError("--target and --prediction name the same column: the reference needs both the label and "
                           "the model's prediction")
    if options.task is not None and options.task not in TASKS:
        raise ProfileError(f"--task {options.task}: use regression or classification")
    for column in (options.target, options.prediction):
        empty = _empty(frame[column])
        if empty:
            raise ProfileError(f"column {column!r} is empty in {empty} of {len(frame)} rows: drop those rows")
    task, task_note = _task(frame[options.target], frame[options.prediction], options)
    classes: tuple[Any, ...] = ()
    target_observed = None
    if task == "classification":
        classes = _classes(frame, options)
    else:
        for column in (options.target, options.prediction):
            if _kind(frame[column]) not in ("float", "integer"):
                raise ProfileError(f"--task regression: column {column!r} holds {_kind(frame[column]) or frame[column].dtype} "
                                   "values, not numbers (use --task classification for classes)")
        target = frame[options.target].to_numpy(np.float64)
        target_observed = (float(target.min()), float(target.max()))

    for column in options.probabilities:
        if column not in columns:
            raise ProfileError(f"--probabilities {column}: no such column; the file has {', '.join(columns[:20])}")
    if options.probabilities and task != "classification":
        raise ProfileError(f"--probabilities {','.join(options.probabilities)}: only a classifier has probabilities")
    probabilities, probability_note, looks_like = ((), None, ())
    if task == "classification":
        probabilities, probability_note, looks_like = _probabilities(frame, classes, options)
    timestamp_format, timestamp_note = _timestamp_format(frame, options)
    # Columns that are not features; the target and prediction need no note in the file.
    not_features = {options.id: "the record id (--id)", options.ts: "the event time (--ts)",
                    options.target: None, options.prediction: None}
    for cls, column in probabilities:
        not_features[column] = f"the probability of class {_scalar(cls)}"
    for column in looks_like:
        not_features.setdefault(column, "looks like a class probability (name and values in [0, 1]) of no class "
                                "found: --probabilities names the columns")
    if task == "classification":
        not_features |= {c: "a probability column of no known class" for c in columns
                         if c.startswith(PROBABILITY_PREFIX) and c not in not_features}
    forced = {**{c: "categorical" for c in options.categorical}, **{c: "numeric" for c in options.numeric}}
    both = sorted(set(options.categorical) & set(options.numeric))
    if both:
        raise ProfileError(f"{both[0]} is given to both --categorical and --numeric: keep one")
    for column, kind in forced.items():
        if column not in columns:
            raise ProfileError(f"--{kind} {column}: no such column; the file has {', '.join(columns[:20])}")
        if column in not_features:
            what = {options.target: "the target (a model cannot take its label as input)",
                    options.prediction: "the prediction"}.get(column) or not_features[column]
            raise ProfileError(f"--{kind} {column}: that column is {what}, not a feature")

    features, left_out = [], []
    for column in columns:
        if column in not_features:
            continue
        result = _feature(column, frame[column], forced.get(column), options)
        if isinstance(result, str):
            left_out.append((column, result))
        else:
            features.append(result)
    if not features:
        raise ProfileError("no column is left as a feature: " + ("; ".join(f"{c}: {why}" for c, why in left_out)
                                                               or "the file holds only the target, prediction, id and time"))

    return Profile(task=task, target=options.target, prediction=options.prediction, features=tuple(features),
                   not_features=tuple((c, not_features[c]) for c in columns if not_features.get(c)),
                   left_out=tuple(left_out), rows=len(frame), classes=classes, probabilities=probabilities,
                   probability_note=probability_note, task_note=task_note, target_observed=target_observed,
                   timestamp_format=timestamp_format, timestamp_note=timestamp_note)


def _is_probability(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    return _kind(values) == "float" and not numbers.isna().any() and bool(((numbers >= 0) & (numbers <= 1)).all())


def _class_in_name(column: str, classes: tuple[Any, ...]) -> Any | None:
    """The one class whose text ends the column's name after a separator (p_yes, proba_1, yes_prob
    begins it), or None."""
    lower = column.lower()
    found = [c for c in classes if re.search(rf"(^|[^a-z0-9]){re.escape(category_text(c).lower())}([^a-z0-9]|$)", lower)]
    return found[0] if len(found) == 1 else None


def _positive_class(frame: pd.DataFrame, column: str, prediction: str, classes: tuple[Any, ...]) -> tuple[Any, str]:
    """Which class a binary model's one probability column belongs to: the one predicted where it is high."""
    p = pd.to_numeric(frame[column]).to_numpy(np.float64)
    predicted = np.array([category_text(int(v) if isinstance(v, float) and v.is_integer() else v)
                          for v in frame[prediction].tolist()], dtype=object)
    means = [float(p[predicted == category_text(c)].mean()) if (predicted == category_text(c)).any() else math.nan
             for c in classes]
    if any(math.isnan(m) for m in means) or means[0] == means[1]:
        raise ProfileError(f"column {column!r}: cannot tell which class it is the probability of (the model predicts "
                           f"one class only): name it proba_<class>")
    positive = classes[int(np.argmax(means))]
    return positive, (f"{column} is the probability of class {_scalar(positive)} (mean {max(means):.2f} where the "
                      f"prediction is {_scalar(positive)}, {min(means):.2f} elsewhere); the other class's is 1 - p")


def _probabilities(frame: pd.DataFrame, classes: tuple[Any, ...], options: Options
                   ) -> tuple[tuple[tuple[Any, str], ...], str | None, tuple[str, ...]]:
    """((class, column) of the class probabilities, how they were found, columns that look like
    probabilities but fit no class)."""
    columns = [c for c in map(str, frame.columns)
               if c not in (options.target, options.prediction, options.id, options.ts)]
    scorer = {c: PROBABILITY_PREFIX + category_text(c) for c in classes}
    if not options.probabilities and all(column in columns for column in scorer.values()):
        return tuple(scorer.items()), "proba_<class> columns, as `scorer reference` writes them", ()
    given = options.probabilities
    candidates = list(given) or [c for c in columns if "prob" in c.lower() and _is_probability(frame[c])]
    for column in given:
        if not _is_probability(frame[column]):
            raise ProfileError(f"--probabilities {column}: the column holds values outside [0, 1] or not numbers")
    if not candidates:
        return (), None, ()
    how = "--probabilities" if given else "named like a probability, values in [0, 1]"
    if len(candidates) == 1 and len(classes) == 2:
        positive, note = _positive_class(frame, candidates[0], options.prediction, classes)
        return ((positive, candidates[0]),), f"{note} ({how})", ()
    named = {column: _class_in_name(column, classes) for column in candidates}
    found = {cls: column for column, cls in named.items() if cls is not None}
    if len(found) == len(classes) == len(candidates):
        return tuple((c, found[c]) for c in classes), f"one column per class, the class in its name ({how})", ()
    if given:
        raise ProfileError(f"--probabilities {','.join(given)}: give one column (a binary model's positive class) or one "
                           f"per class with the class in its name (classes: {', '.join(map(_scalar, classes))})")
    return (), None, tuple(candidates)


def _timestamp_format(frame: pd.DataFrame, options: Options) -> tuple[str, str | None]:
    """The event-time format (epoch_ms, epoch_s, iso8601) from the --ts column, and how it was told;
    ProfileError with an example value when the values fit none (or not the one --timestamp-format gave)."""
    if options.ts not in frame.columns:
        return options.timestamp_format or "epoch_ms", (None if options.timestamp_format else
                                                        f"the reference has no {options.ts} column: epoch_ms assumed")
    values = frame[options.ts]
    if values.isna().any():
        raise ProfileError(f"--ts {options.ts}: the column is empty in {int(values.isna().sum())} of {len(values)} rows")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        inferred, example = "iso8601", values.iloc[0]
    else:
        inferred, example = _format_of(values.tolist())
    if inferred is None:
        raise ProfileError(f"--ts {options.ts}: cannot tell the time format from its values (e.g. {_shown(example)}): "
                           "write epoch seconds, epoch milliseconds or ISO 8601 date-times, or give "
                           "--timestamp-format")
    if options.timestamp_format and options.timestamp_format != inferred:
        raise ProfileError(f"--timestamp-format {options.timestamp_format}: the {options.ts} column holds {inferred} "
                           f"values (e.g. {_shown(example)})")
    if options.timestamp_format:
        return inferred, None
    return inferred, f"inferred from the {options.ts} column's values, e.g. {_shown(example)}"


def _format_of(values: list[Any]) -> tuple[str | None, Any]:
    """(format, an example value): the one every value fits, else (None, the first value that fits none)."""
    if all(isinstance(v, str) for v in values):
        rule = FieldRule("ts", "iso8601")
        for value in values:
            try:
                rule.check(value.strip())
            except InvalidRecord:
                return None, value
        return "iso8601", values[0]
    numbers = [v for v in values if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)]
    if len(numbers) < len(values):
        return None, next(v for v in values if v not in numbers)
    array = np.asarray(numbers, np.float64)
    if not np.all(np.isfinite(array)):
        return None, numbers[int(np.argmin(np.isfinite(array)))]
    low, high = EPOCH_S_RANGE
    if np.all(array >= high) and np.all(array == np.round(array)) and np.all(array < 2**53):
        return "epoch_ms", numbers[0]
    if np.all((array >= low) & (array < high)):
        return "epoch_s", numbers[0]
    outside = (array < low) | ((array >= high) & (array != np.round(array)))
    return None, numbers[int(np.argmax(outside))] if outside.any() else numbers[0]


def _shown(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


# -- the schema file -------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}  # plain, some YAML reads them as non-strings


def _name(text: str) -> str:
    """A field or column name: plain when YAML reads it back as that string, else quoted."""
    return text if _PLAIN.match(text) and text.lower() not in _YAML_WORDS else json.dumps(text, ensure_ascii=False)


def _scalar(value: Any) -> str:
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


def _flow(key: str, values: tuple[Any, ...], indent: int, width: int = 100) -> list[str]:
    """`key: [a, b, ...]`, wrapped onto indented lines when long."""
    lines, line = [], f"{' ' * indent}{key}: ["
    for i, value in enumerate(values):
        item = _scalar(value) + (", " if i < len(values) - 1 else "]")
        if len(line) + len(item) > width and not line.endswith("["):
            lines.append(line.rstrip())
            line = " " * (indent + 2)
        line += item
    return lines + [line]


def default_name(path: Path) -> str:
    """The file's stem as a model name ([A-Za-z0-9_.:-], at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", path.stem).strip("_")[:64] or "model"


@dataclass(frozen=True)
class MessageLayout:
    """Where the fields sit in the prediction and label messages the schema will describe."""

    layout: str  # scorer | columns
    why: str  # how the layout was chosen, for the file's comment
    id: str
    ts: str
    prediction: str
    features: str | None  # the object holding the features; None: top-level fields
    probabilities: str | None = None  # the object {class: p} (our scorer's)
    probability_fields: tuple[tuple[Any, str], ...] = ()  # (class, top-level field)
    label_target: str | None = None


def message_layout(result: Profile, options: Options, layout: str | None = None, features_field: str | None = None,
                   prediction_field: str | None = None, probabilities_field: str | None = None,
                   label_target_field: str | None = None) -> MessageLayout:
    """Our scorer's layout when the prediction column is `prediction` (what `scorer reference`
    writes: the reference comes from our scorer's model dir), else the reference's own columns as
    top-level fields (another system's log, written like its reference). `layout` forces one; the
    field arguments (None: the layout's default; features_field "": top-level) move single fields."""
    if layout is None:
        layout = "scorer" if result.prediction == SCORER_PREDICTION else "columns"
        why = (f"our scorer's, as the prediction column is {SCORER_PREDICTION!r} (what `scorer reference` writes)"
               if layout == "scorer" else
               f"the reference's column names as top-level fields (the prediction column is {result.prediction!r}, "
               "not our scorer's): another system's log written like its reference")
    else:
        why = ("our scorer's" if layout == "scorer" else "the reference's column names as top-level fields") + \
            f" (--layout {layout})"
    scorer = layout == "scorer"
    features = ("features" if scorer else None) if features_field is None else (features_field or None)
    probabilities, fields = None, ()
    if result.probabilities:
        if scorer and result.scorer_probabilities:
            probabilities = probabilities_field or "probabilities"
        else:
            fields = result.probabilities  # one top-level field per column, named as the column
    return MessageLayout(layout, why, options.id, options.ts, prediction_field or ("prediction" if scorer else result.prediction),
                         features, probabilities, fields, label_target_field)


def render(result: Profile, name: str, source: str, today: dt.date, messages: MessageLayout) -> str:
    """The schema file: a header saying where it came from, then every key, commented where a
    decision was made from the data."""
    lines = [f"# Schema of model {name}, written by `python -m monitor profile` from {source} ({result.rows} rows)",
             f"# on {today.isoformat()}. Every key is documented in the README (\"Schema format\"). Review it: types,",
             "# categories and ranges come from the data, not from the model."]
    if result.task_note:
        lines.append(f"# task: inferred ({result.task_note}); --task changes it.")
    lines.append(f"# messages: laid out as {messages.why}; --layout changes it.")
    if result.timestamp_note:
        lines.append(f"# timestamp_format: {result.timestamp_note}; --timestamp-format changes it.")
    if result.probability_note:
        lines.append(f"# probabilities: {result.probability_note}.")
    if result.left_out:
        lines += ["#", "# Left out:"] + [f"#   {column}: {why}" for column, why in result.left_out]
    if result.not_features:
        lines += ["#", "# Not features:"] + [f"#   {column}: {what}" for column, what in result.not_features]
    lines += [f"name: {_name(name)}", f"task: {result.task}", f"target: {_name(result.target)}"]
    if result.task == "classification":
        lines += _flow("classes", result.classes, 0)
        lines[-1] += "  # from the target and prediction columns"
    elif result.target_observed:
        low, high = result.target_observed
        suggestion = "{ge: 0}" if low >= 0 else "{ge: <lowest possible>, le: <highest possible>}"
        lines.append(f"# target_range: {suggestion}  # optional: labels outside go to the DLQ; observed "
                     f"[{_scalar(low)}, {_scalar(high)}]")
    lines.append(f"prediction: {_name(result.prediction)}  # the reference file's column of predictions")
    if result.probabilities and not result.scorer_probabilities:
        lines.append(f"probabilities: {_mapping(result.probabilities)}  # the reference's column of each class's probability")
    lines.append("features:")
    for feature in result.features:
        if feature.type_note:
            lines.append(f"  # {feature.type_note}")
        lines += [f"  - name: {_name(feature.name)}", f"    type: {feature.type}"]
        if feature.type == "categorical":
            lines += _flow("categories", feature.categories, 4)
        else:
            low, high = feature.observed
            lines.append(f"    observed: [{_scalar(low)}, {_scalar(high)}]  # min and max in the reference (information only)")
            lines.append("    # range: {ge: 0}  # optional, if it can never be negative: values outside go to the DLQ, "
                         "not to the drift test" if low >= 0 else
                         "    # range: {ge: <lowest possible>, le: <highest possible>}  # optional: values outside go to the "
                         "DLQ, not to the drift test, so bound only the impossible")
        lines += [f"    # {note}" for note in feature.notes]
    lines += ["messages:  # where fields sit in prediction messages (the scorer's output or any inference log)",
              f"  id: {_name(messages.id)}",
              f"  timestamp: {_name(messages.ts)}",
              f"  timestamp_format: {result.timestamp_format}  # epoch_ms, epoch_s (numbers) or iso8601 (strings)",
              f"  prediction: {_name(messages.prediction)}"]
    if messages.probabilities:
        lines.append(f"  probabilities: {_name(messages.probabilities)}  # an object {{\"<class>\": probability, ...}}")
    elif messages.probability_fields:
        lines.append(f"  probabilities: {_mapping(messages.probability_fields)}  # a top-level field per class"
                     + (" (the other's is 1 - p)" if len(messages.probability_fields) < len(result.classes) else ""))
    features = _name(messages.features) if messages.features else "null"
    lines += [f"  features: {features}  # the object holding the features; null: top-level fields",
              "labels:  # label messages: {id, timestamp, target}",
              f"  id: {_name(messages.id)}",
              f"  timestamp: {_name(messages.ts)}",
              f"  target: {_name(messages.label_target or result.target)}"]
    return "\n".join(lines) + "\n"


def _mapping(pairs: tuple[tuple[Any, str], ...]) -> str:
    """{class: name, ...} in YAML flow style; classes as the schema lists them."""
    return "{" + ", ".join(f"{_scalar(cls)}: {_name(name)}" for cls, name in pairs) + "}"


# -- command line ----------------------------------------------------------------------------------
def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `profile` subcommand on the monitor's subparsers."""
    parser = subparsers.add_parser(
        "profile", help="write a schema for your model from its reference file",
        description="Write a schema (YAML) from a reference file: held-out rows with the features, the target, the model's "
        "prediction and, for a classifier, optional proba_<class> columns. Floats become numeric features; strings and "
        "booleans categorical; integers categorical when they take few values. Ids, free text and columns with empty values "
        "are left out with a note. Review the file before use.")
    parser.add_argument("reference", type=Path, metavar="REFERENCE", help="CSV or Parquet file")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="SCHEMA.yaml", help="schema file to write")
    parser.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    parser.add_argument("--target", required=True, metavar="COL", help="column of the label (and the label messages' field)")
    parser.add_argument("--prediction", required=True, metavar="COL", help="column of the model's prediction")
    parser.add_argument("--task", choices=TASKS,
                        help="default: classification for a string, boolean or few-valued integer target")
    parser.add_argument("--name", help="model name, the `model` label of every series (default: the file's stem)")
    parser.add_argument("--id", default="id", metavar="FIELD",
                        help="messages' record-id field; a column of that name is not a feature (default: id)")
    parser.add_argument("--ts", default="ts", metavar="FIELD",
                        help="messages' event-time field; a column of that name is not a feature (default: ts)")
    parser.add_argument("--categorical", action="append", type=_names, default=[], metavar="COL,...",
                        help="make these columns categorical (repeatable)")
    parser.add_argument("--numeric", action="append", type=_names, default=[], metavar="COL,...",
                        help="make these columns numeric (repeatable)")
    parser.add_argument("--max-integer-categories", type=int, default=MAX_INTEGER_CATEGORIES, metavar="N",
                        help="an integer column with at most N distinct values is categorical "
                        f"(default: {MAX_INTEGER_CATEGORIES})")
    parser.add_argument("--max-categories", type=int, default=MAX_CATEGORIES, metavar="N",
                        help="a string column with more distinct values (or more than half its rows distinct) is left out "
                        f"(default: {MAX_CATEGORIES})")
    parser.add_argument("--probabilities", type=_names, default=[], metavar="COL[,COL...]",
                        help="a classifier's probability columns: one for a binary model (its positive class's, found "
                        "from the predictions) or one per class with the class in the name (default: proba_<class> "
                        "columns, else columns named like a probability holding values in [0, 1])")
    layout = parser.add_argument_group(
        "message layout", "Default: our scorer's messages when --prediction is `prediction` (what `scorer reference` "
        "writes), else one flat object per prediction with fields named as the reference's columns (another system's "
        "log written like its reference). The flags below move single fields.")
    layout.add_argument("--layout", choices=LAYOUTS, help="scorer: {id, ts, prediction, probabilities: {class: p}, "
                        "features: {...}}; columns: top-level fields named as the reference's columns")
    layout.add_argument("--timestamp-format", choices=TIMESTAMP_FORMATS,
                        help="how messages write the event time (default: inferred from the --ts column's values; "
                        "epoch_ms when the reference has no such column)")
    layout.add_argument("--features-field", metavar="FIELD",
                        help='object holding the features in prediction messages; "" for top-level fields (default: '
                        "the layout's: features, or top-level fields)")
    layout.add_argument("--top-level-features", action="store_true", help="features are top-level fields")
    layout.add_argument("--prediction-field", metavar="FIELD",
                        help="prediction messages' prediction field (default: the layout's: prediction, or the column's name)")
    layout.add_argument("--probabilities-field", metavar="FIELD",
                        help="the scorer layout's class-probability object (default: probabilities); a column of the "
                        "reference here is taken as --probabilities")
    layout.add_argument("--label-target-field", metavar="FIELD", help="label messages' field of the label (default: --target)")
    return parser


def _options(args: argparse.Namespace, columns: list[str]) -> Options:
    probabilities = tuple(args.probabilities)
    if args.probabilities_field in columns and not probabilities:  # a column named where a field was asked for
        probabilities = (args.probabilities_field,)
    return Options(target=args.target, prediction=args.prediction, task=args.task, id=args.id, ts=args.ts,
                   categorical=tuple(c for group in args.categorical for c in group),
                   numeric=tuple(c for group in args.numeric for c in group),
                   max_integer_categories=args.max_integer_categories, max_categories=args.max_categories,
                   probabilities=probabilities, timestamp_format=args.timestamp_format)


def main(args: argparse.Namespace) -> int:
    """Profile args.reference and write args.output; 2 with one line on stderr for bad input."""
    try:
        return _run(args)
    except (ProfileError, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.exists() and not args.force:
        raise ProfileError(f"{output} exists: pass --force to overwrite it, or choose another -o")
    if not output.parent.is_dir():
        raise ProfileError(f"-o {output}: no directory {output.parent}")
    if args.top_level_features and args.features_field not in (None, ""):
        raise ProfileError(f"--top-level-features and --features-field {args.features_field}: give one")
    features_field = "" if args.top_level_features else args.features_field  # "": top level; None: the layout's
    name = args.name if args.name is not None else default_name(args.reference)
    if not _NAME.match(name):
        raise ProfileError(f"--name {name!r}: use 1-64 letters, digits or _.:- (it labels every drift series)")
    for flag in ("max_integer_categories", "max_categories"):
        if getattr(args, flag) < 1:
            raise ProfileError(f"--{flag.replace('_', '-')} must be at least 1")

    frame = read_table(args.reference)
    options = _options(args, list(map(str, frame.columns)))
    result = profile(frame, options)
    if args.probabilities_field and args.probabilities_field not in options.probabilities and not result.probabilities:
        why = ("only a classifier has probabilities" if result.task != "classification" else
               "the reference has no probability columns (proba_<class>, or --probabilities)")
        raise ProfileError(f"--probabilities-field {args.probabilities_field}: {why}")
    probabilities_field = None if args.probabilities_field in options.probabilities else args.probabilities_field
    messages = message_layout(result, options, args.layout, features_field, args.prediction_field, probabilities_field,
                              args.label_target_field)
    text = render(result, name, str(args.reference), dt.date.today(), messages)
    # Check before writing: the text loads as a schema, and the reference passes against it.
    with tempfile.TemporaryDirectory() as scratch:
        draft = Path(scratch) / output.name
        draft.write_text(text)
        try:
            schema = load_schema(draft)
            read_reference(args.reference, schema)
        except SchemaError as exc:
            raise SchemaError(str(exc).replace(str(draft), str(output))) from None
    try:
        with open(output, "w" if args.force else "x") as handle:
            handle.write(text)
    except OSError as exc:
        raise ProfileError(f"cannot write {output}: {exc.strerror or exc}") from None

    for column, why in result.left_out:
        print(f"note: column {column} left out: {why}", file=sys.stderr)
    print(summary(result, name, output))
    return 0


def summary(result: Profile, name: str, output: Path) -> str:
    """The one line printed after writing."""
    numeric = sum(f.type == "numeric" for f in result.features)
    task = "regression"
    if result.task == "classification":
        task = f"classification, {len(result.classes)} classes" + (", probabilities" if result.probabilities else "")
    if result.task_note:
        task += ", inferred"
    left = f"; left out: {', '.join(c for c, _ in result.left_out)}" if result.left_out else ""
    return (f"wrote {output}: model {name} ({task}), {len(result.features)} features ({numeric} numeric, "
            f"{len(result.features) - numeric} categorical) from {result.rows} rows{left}")
