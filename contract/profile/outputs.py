"""The model's side of a reference: the task, the classes, the probability columns and the
event-time format, each inferred with the reason written into the schema file's comments."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from contract.profile.model import (
    EPOCH_S_RANGE,
    Options,
    ProfileError,
    integral,
    kind_of,
    natives,
    scalar,
    shown,
)
from contract.rules import MAX_CATEGORY_LENGTH, FieldRule, InvalidRecord, category_text
from contract.schema import PROBABILITY_PREFIX


def task_of(target: pd.Series, prediction: pd.Series, options: Options) -> tuple[str, str | None]:
    """The task and why: a classifier when the target holds strings or booleans, or when the target
    and the prediction both hold a handful of whole numbers (0.0/1.0 included: a class is a class
    however a tool wrote it); a regression otherwise."""
    if options.task:
        return options.task, None
    kind = kind_of(target)
    if kind in ("string", "boolean"):
        return "classification", f"the target holds {kind}s"
    if kind not in ("integer", "float"):
        raise ProfileError(
            f"target {options.target!r}: its values ({target.dtype}) are neither numbers, strings nor booleans"
        )
    limit = options.max_integer_categories

    def few_whole(values: pd.Series) -> bool:
        return (
            kind_of(values) in ("integer", "float")
            and integral(values)
            and int(values.nunique()) <= limit
        )

    if few_whole(target) and few_whole(prediction):
        shown = ", ".join(scalar(v) for v in sorted(set(target.tolist()))[:5])
        what = "an integer" if kind == "integer" else "whole numbers"
        return "classification", (
            f"the target holds {what} with {int(target.nunique())} distinct values ({shown}) "
            f"and so does the prediction: classes (at most {limit}, --max-integer-categories)"
        )
    if kind == "integer":
        return "regression", (
            "the target is an integer with many values"
            if not few_whole(target)
            else "the target holds few whole numbers but the prediction does not"
        )
    if few_whole(target):
        return "regression", "the target holds few whole numbers but the prediction does not"
    return "regression", "the target is a float"


def classes_of(frame: pd.DataFrame, options: Options) -> tuple[Any, ...]:
    """The classes seen in the target and the prediction, sorted, all of one kind."""
    kinds, values = set(), []
    for column in (options.target, options.prediction):
        column_values = frame[column]
        kind = kind_of(column_values)
        if kind == "float":
            if not integral(column_values):
                raise ProfileError(
                    f"--task classification: column {column!r} holds fractional numbers "
                    f"({column_values.iloc[0]!r}, ...), not classes"
                )
            kind = "integer"
        if kind is None:
            raise ProfileError(
                f"column {column!r}: its values ({column_values.dtype}) are not classes "
                "(strings, integers or booleans)"
            )
        kinds.add(kind)
        values += natives(column_values, kind)
    if len(kinds) > 1:
        raise ProfileError(
            f"the target {options.target!r} and the prediction {options.prediction!r} hold different kinds of "
            f"classes ({' and '.join(sorted(kinds))}): write both the same way"
        )
    classes = tuple(sorted(set(values)))
    if len(classes) < 2:
        raise ProfileError(
            f"the target and prediction columns hold one class ({scalar(classes[0])}): a classifier needs 2"
        )
    if any(isinstance(c, str) and len(c) > MAX_CATEGORY_LENGTH for c in classes):
        raise ProfileError(f"a class is longer than {MAX_CATEGORY_LENGTH} characters")
    return classes


def is_probability(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    return (
        kind_of(values) == "float"
        and not numbers.isna().any()
        and bool(((numbers >= 0) & (numbers <= 1)).all())
    )


def class_in_name(column: str, classes: tuple[Any, ...]) -> Any | None:
    """The one class whose text ends the column's name after a separator (p_yes, proba_1, yes_prob
    begins it), or None."""
    lower = column.lower()
    found = [
        c
        for c in classes
        if re.search(rf"(^|[^a-z0-9]){re.escape(category_text(c).lower())}([^a-z0-9]|$)", lower)
    ]
    return found[0] if len(found) == 1 else None


def positive_class(
    frame: pd.DataFrame, column: str, prediction: str, classes: tuple[Any, ...]
) -> tuple[Any, str]:
    """Which class a binary model's one probability column belongs to: the one predicted where it is high."""
    p = pd.to_numeric(frame[column]).to_numpy(np.float64)
    predicted = np.array(
        [
            category_text(int(v) if isinstance(v, float) and v.is_integer() else v)
            for v in frame[prediction].tolist()
        ],
        dtype=object,
    )
    means = [
        float(p[predicted == category_text(c)].mean())
        if (predicted == category_text(c)).any()
        else math.nan
        for c in classes
    ]
    if any(math.isnan(m) for m in means) or means[0] == means[1]:
        raise ProfileError(
            f"column {column!r}: cannot tell which class it is the probability of (the model predicts "
            f"one class only): name it proba_<class>"
        )
    positive = classes[int(np.argmax(means))]
    return positive, (
        f"{column} is the probability of class {scalar(positive)} (mean {max(means):.2f} where the "
        f"prediction is {scalar(positive)}, {min(means):.2f} elsewhere); the other class's is 1 - p"
    )


def probabilities_of(
    frame: pd.DataFrame, classes: tuple[Any, ...], options: Options
) -> tuple[tuple[tuple[Any, str], ...], str | None, tuple[str, ...]]:
    """((class, column) of the class probabilities, how they were found, columns that look like
    probabilities but fit no class)."""
    columns = [
        c
        for c in map(str, frame.columns)
        if c not in (options.target, options.prediction, options.id, options.ts)
    ]
    scorer = {c: PROBABILITY_PREFIX + category_text(c) for c in classes}
    if not options.probabilities and all(column in columns for column in scorer.values()):
        return tuple(scorer.items()), "proba_<class> columns, as `scorer reference` writes them", ()
    given = options.probabilities
    candidates = list(given) or [
        c for c in columns if "prob" in c.lower() and is_probability(frame[c])
    ]
    for column in given:
        if not is_probability(frame[column]):
            raise ProfileError(
                f"--probabilities {column}: the column holds values outside [0, 1] or not numbers"
            )
    if not candidates:
        return (), None, ()
    how = "--probabilities" if given else "named like a probability, values in [0, 1]"
    if len(candidates) == 1 and len(classes) == 2:
        positive, note = positive_class(frame, candidates[0], options.prediction, classes)
        return ((positive, candidates[0]),), f"{note} ({how})", ()
    named = {column: class_in_name(column, classes) for column in candidates}
    found = {cls: column for column, cls in named.items() if cls is not None}
    if len(found) == len(classes) == len(candidates):
        return (
            tuple((c, found[c]) for c in classes),
            f"one column per class, the class in its name ({how})",
            (),
        )
    if given:
        raise ProfileError(
            f"--probabilities {','.join(given)}: give one column (a binary model's positive class) or one "
            f"per class with the class in its name (classes: {', '.join(map(scalar, classes))})"
        )
    return (), None, tuple(candidates)


def timestamp_format_of(frame: pd.DataFrame, options: Options) -> tuple[str, str | None]:
    """The event-time format (epoch_ms, epoch_s, iso8601) from the --ts column, and how it was told;
    ProfileError with an example value when the values fit none (or not the one --timestamp-format gave)."""
    if options.ts not in frame.columns:
        return options.timestamp_format or "epoch_ms", (
            None
            if options.timestamp_format
            else f"the reference has no {options.ts} column: epoch_ms assumed"
        )
    values = frame[options.ts]
    if values.isna().any():
        raise ProfileError(
            f"--ts {options.ts}: the column is empty in {int(values.isna().sum())} of {len(values)} rows"
        )
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        inferred, example = "iso8601", values.iloc[0]
    else:
        inferred, example = format_of(values.tolist())
    if inferred is None:
        raise ProfileError(
            f"--ts {options.ts}: cannot tell the time format from its values (e.g. {shown(example)}): "
            "write epoch seconds, epoch milliseconds or ISO 8601 date-times, or give "
            "--timestamp-format"
        )
    if options.timestamp_format and options.timestamp_format != inferred:
        raise ProfileError(
            f"--timestamp-format {options.timestamp_format}: the {options.ts} column holds {inferred} "
            f"values (e.g. {shown(example)})"
        )
    if options.timestamp_format:
        return inferred, None
    return inferred, f"inferred from the {options.ts} column's values, e.g. {shown(example)}"


def format_of(values: list[Any]) -> tuple[str | None, Any]:
    """(format, an example value): the one every value fits, else (None, the first value that fits none)."""
    if all(isinstance(v, str) for v in values):
        rule = FieldRule("ts", "iso8601")
        for value in values:
            try:
                rule.check(value.strip())
            except InvalidRecord:
                return None, value
        return "iso8601", values[0]
    numbers = [
        v
        for v in values
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    ]
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
